"""Dispatchers, the command centre and officers: accounts, passwords (argon2) and sessions."""

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.accounts import auth
from server.core import db, refusals
from server.core.tables import staff, staff_sessions

ROLES = ("dispatcher", "command", "officer")
SESSION_COOKIE = "guardian_session"
_hasher = PasswordHasher()
# Verified against when the username is unknown, so both answers take as long.
_DUMMY_HASH = _hasher.hash("not a password")


@dataclass(frozen=True, slots=True)
class Staff:
    staff_id: uuid.UUID
    username: str
    role: str
    precinct_id: str | None

    @property
    def all_precincts(self) -> bool:
        return self.role == "command"


async def add(*, connection: AsyncConnection, username: str, password: str, role: str,
              precinct_id: str | None) -> uuid.UUID:
    """Create an account. The command centre has no precinct; everyone else has one."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if (role == "command") != (precinct_id is None):
        raise ValueError("the command centre sees all precincts; dispatchers and officers need one")
    if len(password) < 12:
        raise ValueError("a password needs at least 12 characters")
    staff_id = uuid.uuid4()
    await connection.execute(staff.insert().values(staff_id=staff_id, username=username, role=role,
                                                   precinct_id=precinct_id, password_hash=_hasher.hash(password)))
    return staff_id


async def login(*, engine: AsyncEngine, username: str, password: str, ttl_s: float) -> str | None:
    """A new session token for a right password, else None."""
    async with db.autocommit(engine) as connection:
        row = (await connection.execute(
            sa.select(staff.c.staff_id, staff.c.password_hash).where(staff.c.username == username))).first()
    stored = row.password_hash if row is not None else _DUMMY_HASH
    try:
        # argon2 is deliberately slow (tens of ms): off the event loop.
        await asyncio.to_thread(_hasher.verify, stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    token = auth.new_token()
    async with engine.begin() as connection:
        await connection.execute(staff_sessions.insert().values(
            token_sha256=auth.digest(token), staff_id=row.staff_id,
            expires_at=datetime.now(UTC) + timedelta(seconds=ttl_s)))
        await connection.execute(sa.delete(staff_sessions).where(staff_sessions.c.expires_at < sa.func.now()))
    return token


async def logout(*, engine: AsyncEngine, token: str) -> None:
    async with engine.begin() as connection:
        await connection.execute(sa.delete(staff_sessions).where(staff_sessions.c.token_sha256 == auth.digest(token)))


async def staff_for(*, engine: AsyncEngine, token: str | None) -> Staff | None:
    """The account behind an unexpired session token, or None."""
    if not token or len(token) > 256:
        return None
    async with db.autocommit(engine) as connection:
        row = (await connection.execute(
            sa.select(staff.c.staff_id, staff.c.username, staff.c.role, staff.c.precinct_id)
            .select_from(staff_sessions.join(staff))
            .where(staff_sessions.c.token_sha256 == auth.digest(token), staff_sessions.c.expires_at > sa.func.now())
        )).first()
    return None if row is None else Staff(row.staff_id, row.username, row.role, row.precinct_id)


def session_token(headers, cookies) -> str | None:
    """A staff token from `Authorization: Bearer` or the console's session cookie."""
    return auth.bearer(headers.get("authorization")) or cookies.get(SESSION_COOKIE)


async def current_staff(request: Request) -> Staff:
    """FastAPI dependency: the logged-in staff member, else 401."""
    member = await staff_for(engine=request.app.state.services.engine,
                             token=session_token(request.headers, request.cookies))
    if member is None:
        raise refusals.Unauthorized("log in first (POST /v1/console/login)")
    return member


async def set_fcm_token(*, engine: AsyncEngine, staff_id: uuid.UUID, fcm_token: str) -> None:
    async with engine.begin() as connection:
        await connection.execute(staff.update().where(staff.c.staff_id == staff_id).values(fcm_token=fcm_token))
