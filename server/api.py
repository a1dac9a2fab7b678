"""HTTP endpoints for accounts and positions."""

import asyncio
import math
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from server import auth, db, fields, history, openapi, ratelimit, refusals, track, wire
from server.intake import open_intake
from server.tables import devices, users

router = APIRouter()

MAX_TRACK_POINTS = 10_000
DEFAULT_TRACK_SPAN = timedelta(hours=24)
COMMIT_WAIT_S = 10.0
# Longer than any epoch ms within 9999 (so never past int()'s digit limit either).
EPOCH_MS_TEXT = re.compile(r"[0-9]{1,18}")


class NewUser(BaseModel):
    name: fields.text(min_length=1, max_length=100)
    phone: fields.Phone


@router.post("/v1/users", status_code=201, responses=openapi.refusals(400, 422, 429, 503))
async def create_user(body: NewUser, request: Request) -> dict:
    """A new account and its device token, at most `register_burst` at once per client address
    (then `register_per_hour`): without a bound, fresh devices multiply every per-device limit."""
    services = request.app.state.services
    address = ratelimit.client_key(request.client.host if request.client else None)
    if not services.registrations.take(address):
        wait_ms = math.ceil(1000 * services.registrations.retry_after_s(address))
        raise refusals.RateLimited("too many new accounts from this address", retry_after_ms=wait_ms)
    token = auth.new_token()
    user_id, device_id = uuid.uuid4(), uuid.uuid4()
    async with services.engine.begin() as connection:
        await connection.execute(users.insert().values(user_id=user_id, name=body.name, phone=body.phone))
        await connection.execute(
            devices.insert().values(device_id=device_id, user_id=user_id, token_sha256=auth.digest(token))
        )
    return {"user_id": str(user_id), "device_token": token}


@router.post("/v1/pings", responses={200: openapi.ACK, **openapi.refusals(400, 401, 413, 422, 429, 503)},
             openapi_extra=openapi.PINGS_BODY)
async def post_pings(request: Request, device: Annotated[auth.Device, Depends(auth.current_device)]) -> dict:
    """A batch over HTTP, answered once every ping in it is committed or refused.

    The answer's `seq` is the device's cumulative ack, as on its socket: every ping of this
    device with seq <= `seq` is committed in PostgreSQL or was answered with an error (in
    `errors`, or earlier on the device's socket or in another answer). The request enters
    the device's ledger in this process, shared with its socket: it waits for the socket's
    older pings still in flight, and when storage loses them it fails with them (503:
    resend the batch). Like every cumulative ack it counts the pings the device sent, in
    seq order: a phone posts its unacknowledged pings oldest first, and `seq` knows of
    none still in flight on another server process. A ping PostgreSQL refuses at flush
    time is in `errors`, not stored.
    """
    services = request.app.state.services
    raw_pings = wire.decode_batch(await request.body())  # at most max_frame_bytes (server/bodysize.py)
    changed = asyncio.Event()
    refused_at_flush: list[refusals.Refusal] = []
    intake = None
    try:
        async with db.autocommit(services.engine) as connection:
            intake = await open_intake(connection=connection, services=services, device=device, acked_seq=-1,
                                       on_change=changed.set, on_refused=refused_at_flush.append)
        refused = intake.take(raw_pings)
        last, ledger = intake.last_entry, intake.ledger
        try:
            async with asyncio.timeout(COMMIT_WAIT_S):
                # Settled in arrival order: once this request's last ping is, so is all before it.
                while last is not None and not last.settled and not ledger.failed:
                    changed.clear()
                    await changed.wait()
        except TimeoutError:
            raise refusals.Unavailable("storage is slow; resend the batch") from None
        if last is not None and not last.settled:  # the ledger failed: storage lost it
            raise refusals.Unavailable("storage unavailable; resend the batch")
        ledger.advance()  # over the settled prefix, this request's last ping included
        return {"type": "ack", "seq": ledger.acked_seq,
                "errors": [refusal.frame() for refusal in (*refused, *refused_at_flush)]}
    finally:
        if intake is not None:
            intake.close()


def _time_param(value: str | None, default: datetime, name: str) -> datetime:
    """Epoch ms (ASCII digits: `str.isdigit` also takes '²') or RFC 3339; refused as `invalid_field`."""
    if value is None:
        return default
    return wire.parse_time(int(value) if EPOCH_MS_TEXT.fullmatch(value) else value, field=name)


@router.get("/v1/me/location", responses=openapi.refusals(401, 404))
async def my_location(request: Request, device: Annotated[auth.Device, Depends(auth.current_device)]) -> dict:
    async with db.autocommit(request.app.state.services.engine) as connection:
        last = await history.last_location(connection=connection, user_id=device.user_id)
    if last is None:
        raise refusals.NotFound("no location reported yet")
    fix = last.fix
    return {"lat": fix.lat, "lon": fix.lon, "acc": fix.accuracy_m, "ts": wire.format_time(fix.ts),
            "speed": fix.speed_mps, "heading": fix.heading_deg, "battery": fix.battery_pct,
            "received_at": wire.format_time(last.received_at)}


@router.get("/v1/me/track", response_class=Response, responses={200: openapi.TRACK, **openapi.refusals(401, 422)})
async def my_track(
    request: Request,
    device: Annotated[auth.Device, Depends(auth.current_device)],
    since: Annotated[str | None, Query(alias="from")] = None,
    until: Annotated[str | None, Query(alias="to")] = None,
    format: Literal["geojson", "gpx"] = "geojson",
) -> Response:
    """Fixes with device time in [from, to] (epoch ms or RFC 3339; default: the last 24 h)."""
    now = datetime.now(UTC)
    until_ts = _time_param(until, now + DEFAULT_TRACK_SPAN, "to")
    since_ts = _time_param(since, now - DEFAULT_TRACK_SPAN, "from")
    if since_ts > until_ts:
        raise refusals.InvalidField("from must not be after to", field="from")
    async with db.autocommit(request.app.state.services.engine) as connection:
        fixes = await history.track(connection=connection, user_id=device.user_id, since=since_ts,
                                    until=until_ts, limit=MAX_TRACK_POINTS)
    if format == "gpx":
        return Response(track.gpx(fixes, name=f"Guardian track {device.user_id}"),
                        media_type="application/gpx+xml")
    return Response(wire.encode(track.geojson(fixes)), media_type="application/geo+json")
