"""The user's own positions over HTTP: the last location and the history (Bearer device token)."""

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from server.accounts import auth
from server.core import db, openapi, refusals, wire
from server.positions import history, track

router = APIRouter()

MAX_TRACK_POINTS = 10_000
DEFAULT_TRACK_SPAN = timedelta(hours=24)
# Longer than any epoch ms within 9999 (so never past int()'s digit limit either).
EPOCH_MS_TEXT = re.compile(r"[0-9]{1,18}")


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
