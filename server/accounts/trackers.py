"""Tracker devices a user registers for an app that has no token of ours (Traccar Client over
the OsmAnd protocol): `POST /v1/devices`, `GET /v1/devices`, `DELETE /v1/devices/{device_id}`,
with the user's Bearer device token, like `/v1/me`.

An OsmAnd device id is the device's only credential and travels in every request, usually
in the URL: it is no secret, and whoever knows it can post fixes as the device (and raise an
SOS). Hence ids shorter than `osmand_min_id_length` are refused: a long random id cannot be
guessed, though it can still be read wherever the URLs are logged (see the README).
"""

import re
import uuid
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncEngine

from server.accounts import auth
from server.core import db, openapi, refusals, wire
from server.core.tables import retired_trackers, trackers

router = APIRouter()

MAX_ID_LENGTH = 128
# What Traccar Client lets its user type as an id, without what would need escaping in a URL.
EXTERNAL_ID = "^[A-Za-z0-9._~-]+$"

Device = Annotated[auth.Device, Depends(auth.current_device)]


class NewTracker(BaseModel):
    protocol: Literal["osmand"]
    external_id: Annotated[str, Field(max_length=MAX_ID_LENGTH, pattern=EXTERNAL_ID, description=(
        "Traccar Client's device identifier: letters, digits and . _ ~ -, at least the server's "
        "osmand_min_id_length (16 by default): a long random one, since it is the device's only credential"))]


def _shown(row) -> dict:
    return {"device_id": str(row.device_id), "protocol": row.protocol, "external_id": row.external_id,
            "created_at": wire.format_time(row.created_at)}


async def find(*, engine: AsyncEngine, protocol: str, external_id: str) -> auth.Device | None:
    """The tracker registered under this external id, as the device its fixes are stored under."""
    if len(external_id) > MAX_ID_LENGTH or not re.fullmatch(EXTERNAL_ID, external_id):
        return None  # never registered; and text PostgreSQL cannot hold (NUL) never reaches it
    async with db.autocommit(engine) as connection:
        row = (await connection.execute(
            sa.select(trackers.c.device_id, trackers.c.user_id)
            .where(trackers.c.protocol == protocol, trackers.c.external_id == external_id))).first()
    return None if row is None else auth.Device(row.device_id, row.user_id)


TRACKER = {"description": "the tracker", "content": {"application/json": {"schema": {
    "type": "object", "required": ["device_id", "protocol", "external_id", "created_at"], "properties": {
        "device_id": {"type": "string", "format": "uuid"}, "protocol": {"const": "osmand"},
        "external_id": {"type": "string"}, "created_at": {"type": "string", "format": "date-time"}}}}}}


@router.post("/v1/devices", status_code=201, responses={201: TRACKER, **openapi.refusals(400, 401, 409, 422, 503)})
async def register(body: NewTracker, request: Request, device: Device) -> dict:
    """Register a tracker app's device id for the user: its fixes and alarms become theirs."""
    settings = request.app.state.services.settings
    minimum = settings.osmand_min_id_length
    if len(body.external_id) < minimum:
        raise refusals.InvalidField(f"an OsmAnd device id holds at least {minimum} characters: "
                                    "anyone who knows it can post as the device, so choose a long random one",
                                    field="external_id")
    retired = sa.exists().where(
        retired_trackers.c.protocol == body.protocol,
        retired_trackers.c.external_id_sha256 == sa.func.sha256(sa.func.convert_to(body.external_id, "UTF8")))
    statement = (pg.insert(trackers)
                 .from_select(["device_id", "user_id", "protocol", "external_id"],
                              sa.select(sa.literal(uuid.uuid4(), pg.UUID(as_uuid=True)),
                                        sa.literal(device.user_id, pg.UUID(as_uuid=True)),
                                        sa.literal(body.protocol), sa.literal(body.external_id)).where(~retired))
                 .on_conflict_do_nothing(constraint="trackers_protocol_external_id")
                 .returning(*trackers.c))
    async with request.app.state.services.engine.begin() as connection:
        row = (await connection.execute(statement)).first()
    if row is None:
        # Taken, or retired: a removed device's phone may still be posting with it.
        raise refusals.Conflict("this device id is registered, or was and was removed: choose a new one",
                                field="external_id")
    return _shown(row)


@router.get("/v1/devices", responses={200: {"description": "the user's trackers", "content": {"application/json": {
    "schema": {"type": "object", "required": ["devices"], "properties": {"devices": {"type": "array"}}}}}},
    **openapi.refusals(401, 503)})
async def list_trackers(request: Request, device: Device) -> dict:
    async with db.autocommit(request.app.state.services.engine) as connection:
        rows = await connection.execute(sa.select(trackers).where(trackers.c.user_id == device.user_id)
                                        .order_by(trackers.c.created_at, trackers.c.device_id))
    return {"devices": [_shown(row) for row in rows]}


@router.delete("/v1/devices/{device_id}", status_code=204, response_class=Response, responses={
    204: {"description": "removed: its id posts nothing more (its fixes stay in the history)"},
    **openapi.refusals(401, 404, 422, 503)})
async def remove(device_id: str, request: Request, device: Device) -> Response:
    try:
        tracker_id = uuid.UUID(device_id)
    except ValueError:
        raise refusals.NotFound("no such device of yours") from None
    async with request.app.state.services.engine.begin() as connection:
        removed = await connection.scalar(sa.delete(trackers).where(
            trackers.c.device_id == tracker_id, trackers.c.user_id == device.user_id).returning(trackers.c.device_id))
    if removed is None:
        raise refusals.NotFound("no such device of yours")
    return Response(status_code=204)
