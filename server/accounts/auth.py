"""Device tokens: issued once, stored only as a hash, presented as `Bearer`."""

import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine

from server.core import db, refusals
from server.core.tables import devices

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Device:
    device_id: uuid.UUID
    user_id: uuid.UUID


def new_token() -> str:
    return secrets.token_urlsafe(32)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer ...` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def device_for(*, engine: AsyncEngine, token: str | None) -> Device | None:
    """The device a token belongs to, or None. Query strings are never consulted."""
    if not token or len(token) > 256:
        return None
    async with db.autocommit(engine) as connection:
        row = (
            await connection.execute(
                sa.select(devices.c.device_id, devices.c.user_id).where(devices.c.token_sha256 == digest(token))
            )
        ).first()
    return None if row is None else Device(row.device_id, row.user_id)


async def _device_of(request: Request, engine: AsyncEngine) -> Device:
    token = bearer(request.headers.get("authorization"))
    try:
        device = await device_for(engine=engine, token=token)
    except db.STORAGE_ERRORS as error:
        # Unknown is not unauthorized: the phone must retry, not forget its token.
        log.error("device token not checked, storage unavailable: %s", db.describe(error))
        raise refusals.Unavailable("storage unavailable; retry") from None
    if device is None:
        raise refusals.Unauthorized("a valid device token is required (Authorization: Bearer)")
    return device


async def current_device(request: Request) -> Device:
    """FastAPI dependency: the device behind the request's bearer token, else 401 (503 while
    PostgreSQL cannot answer)."""
    return await _device_of(request, request.app.state.services.engine)


async def alerting_device(request: Request) -> Device:
    """`current_device` on the alert path's own pool: a reconnect storm of phones or a burst
    of HTTP pings holding the main pool never makes an SOS wait for a connection (issue 9 #10)."""
    return await _device_of(request, request.app.state.services.alert_engine)
