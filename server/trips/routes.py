"""Trips over HTTP (Bearer device token): check in (JSON, or multipart with a route file),
end, list, read, and the logged route as GeoJSON or GPX."""

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.datastructures import UploadFile

from geo import route
from geo.rules import Reason
from server.accounts import auth
from server.core import db, openapi, refusals, wire
from server.positions import track as exports
from server.trips import checkin, frames, routefile, service

router = APIRouter()
Device = Annotated[auth.Device, Depends(auth.current_device)]
# A display track keeps no point closer than this to the line through its neighbours.
MAX_SIMPLIFY_M = 1000.0


async def _read_checkin(request: Request) -> tuple[wire.TripFields, list[tuple[float, float]] | None]:
    """JSON (`application/json`), or multipart: a `trip` part holding that JSON and a `route`
    part holding a GPX or GeoJSON file."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        return wire.decode_trip(await request.body()), None
    async with request.form(max_files=1, max_fields=1, max_part_size=routefile.MAX_ROUTE_BYTES) as form:
        trip_part, route_part = form.get("trip"), form.get("route")
        if trip_part is None:
            raise refusals.InvalidField("a multipart check-in needs a `trip` part (JSON)", field="trip")
        body = await trip_part.read() if isinstance(trip_part, UploadFile) else trip_part.encode()
        fields = wire.decode_trip(body)
        if route_part is None:
            return fields, None
        if not isinstance(route_part, UploadFile):
            raise refusals.InvalidField("`route` must be a file part (GPX or GeoJSON)", field="planned_route")
        vertices = routefile.read_route(await route_part.read(routefile.MAX_ROUTE_BYTES + 1))
    if isinstance(vertices, Reason):
        raise checkin.refusal_of(vertices)
    return fields, vertices


@router.post("/v1/trips", status_code=201, openapi_extra=openapi.TRIP_BODY,
             responses=openapi.refusals(400, 401, 409, 413, 422))
async def start_trip(request: Request, device: Device) -> dict:
    """Check in a taxi ride, a hike or a walk: answered like `trip_start` on the socket."""
    services = request.app.state.services
    fields, uploaded = await _read_checkin(request)
    judged = checkin.judge(fields, now=datetime.now(UTC), uploaded_route=uploaded)
    trip = await service.start(engine=services.engine, settings=services.settings, user_id=device.user_id,
                               checkin=judged, listener=services.trip_listener)
    return {**frames.started(trip), "trip": trip.frame()}


@router.post("/v1/trips/{trip_id}/end", responses=openapi.refusals(401, 404, 409, 422))
async def end_trip(trip_id: uuid.UUID, request: Request, device: Device) -> dict:
    services = request.app.state.services
    trip = await service.end(engine=services.engine, user_id=device.user_id, trip_id=trip_id,
                             listener=services.trip_listener)
    return frames.ended(trip)


@router.get("/v1/trips", responses=openapi.refusals(401))
async def list_trips(request: Request, device: Device) -> dict:
    """The user's trips, newest first (at most 50)."""
    async with db.autocommit(request.app.state.services.engine) as connection:
        found = await service.recent(connection=connection, user_id=device.user_id)
    return {"trips": [trip.frame() for trip in found]}


@router.get("/v1/trips/{trip_id}", responses=openapi.refusals(401, 404, 422))
async def get_trip(trip_id: uuid.UUID, request: Request, device: Device) -> dict:
    async with db.autocommit(request.app.state.services.engine) as connection:
        trip = await service.get(connection=connection, user_id=device.user_id, trip_id=trip_id)
    return trip.frame()


@router.get("/v1/trips/{trip_id}/track", response_class=Response,
            responses={200: openapi.TRACK, **openapi.refusals(401, 404, 422)})
async def trip_track(
    trip_id: uuid.UUID, request: Request, device: Device,
    format: Literal["geojson", "gpx"] = "geojson",
    simplify_m: Annotated[float | None, Query(ge=0, le=MAX_SIMPLIFY_M, allow_inf_nan=False)] = None,
) -> Response:
    """The route logged during the trip (its fixes from check-in to end). `simplify_m`: for
    display, drop points that lie within that many metres of the line through the rest."""
    async with db.autocommit(request.app.state.services.engine) as connection:
        trip = await service.get(connection=connection, user_id=device.user_id, trip_id=trip_id)
        fixes = await service.track(connection=connection, trip=trip)
    if simplify_m and len(fixes) > 2:
        kept = set(route.simplify([(stored.fix.lat, stored.fix.lon) for stored in fixes], simplify_m))
        fixes = [stored for index, stored in enumerate(fixes)
                 if index in (0, len(fixes) - 1) or (stored.fix.lat, stored.fix.lon) in kept]
    if format == "gpx":
        return Response(exports.gpx(fixes, name=f"Guardian {trip.kind} {trip.trip_id}"),
                        media_type="application/gpx+xml")
    return Response(wire.encode(exports.geojson(fixes)), media_type="application/geo+json")
