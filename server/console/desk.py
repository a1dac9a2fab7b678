"""HTTP for staff: console login and logout, the precinct outlines, officers' position and push token,
and the web console's page and assets."""

import math
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from server.accounts import staff
from server.alerts import jurisdictions
from server.core import db, fields, openapi, ratelimit, refusals, wire
from server.positions import hotstate
from server.accounts.me import PushToken

router = APIRouter()
WEB = Path(__file__).parent.parent / "web"
LEAFLET = WEB / "node_modules" / "leaflet" / "dist"


class Login(BaseModel):
    username: fields.text(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)


class Position(BaseModel):
    # Strict: the document says number, so "25.0" (a string) is refused, not read as one.
    lat: float = Field(ge=-85.05112878, le=85.05112878, strict=True)
    lon: float = Field(ge=-180, le=180, strict=True)


Member = Annotated[staff.Staff, Depends(staff.current_staff)]


@router.post("/v1/console/login", responses=openapi.refusals(400, 401, 413, 422, 429))
async def login(body: Login, request: Request) -> JSONResponse:
    """A session for a right password. At most `login_*_burst` attempts at once per client address
    and per username (then `login_*_per_minute`), counted before any hash is verified: a known
    username and a made-up one are limited alike, so the answers tell nothing of which exist."""
    services = request.app.state.services
    _limit_login(services, address=ratelimit.client_key(request.client.host if request.client else None),
                 username=body.username)
    ttl_s = services.settings.console_session_ttl_s
    token = await staff.login(engine=services.engine, username=body.username, password=body.password, ttl_s=ttl_s)
    if token is None:
        raise refusals.Unauthorized("wrong username or password")
    response = JSONResponse({"token": token, "expires_in_s": ttl_s})
    response.set_cookie(staff.SESSION_COOKIE, token, max_age=int(ttl_s), httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
    return response


def _limit_login(services, *, address: str, username: str) -> None:
    """Spend one attempt from both buckets, or neither: a refusal by one does not drain the other."""
    by_address, by_username = services.logins_by_address, services.logins_by_username
    wait_s = max(by_address.retry_after_s(address), by_username.retry_after_s(username))
    if wait_s > 0:
        raise refusals.RateLimited("too many login attempts; wait", retry_after_ms=math.ceil(1000 * wait_s))
    by_address.take(address)
    by_username.take(username)


@router.post("/v1/console/logout", status_code=204)
async def logout(request: Request) -> Response:
    token = staff.session_token(request.headers, request.cookies)
    if token:
        await staff.logout(engine=request.app.state.services.engine, token=token)
    response = Response(status_code=204)
    response.delete_cookie(staff.SESSION_COOKIE, path="/")
    return response


@router.get("/v1/console/me", responses=openapi.refusals(401))
async def me(member: Member, request: Request) -> dict:
    return {"username": member.username, "role": member.role, "precinct_id": member.precinct_id,
            "tile_url": request.app.state.services.settings.tile_url}


@router.get("/v1/console/precincts", response_class=Response,
            responses={200: openapi.GEOJSON, **openapi.refusals(401)})
async def precinct_outlines(member: Member, request: Request) -> Response:
    async with db.autocommit(request.app.state.services.engine) as connection:
        outlines = await jurisdictions.outlines(connection=connection)
    return Response(wire.encode(outlines), media_type="application/geo+json")


def _officer(member: staff.Staff) -> staff.Staff:
    if member.role != "officer":
        raise refusals.Forbidden("only officers report a position")
    return member


@router.post("/v1/officer/location", status_code=204, responses=openapi.refusals(400, 401, 403, 422, 503))
async def officer_location(body: Position, member: Member, request: Request) -> None:
    """An officer's phone reports where it is: the push channel wakes officers near an SOS. Stored
    in PostgreSQL first, so a Redis that loses it gets it back from there."""
    _officer(member)
    services = request.app.state.services
    try:
        await hotstate.place_officer(engine=services.engine, redis=services.redis, staff_id=member.staff_id,
                                     lat=body.lat, lon=body.lon)
    except (RedisError, *db.STORAGE_ERRORS) as error:
        raise refusals.Unavailable(f"position not recorded ({type(error).__name__}); resend") from None


@router.post("/v1/officer/push-token", status_code=204, responses=openapi.refusals(400, 401, 403, 422))
async def officer_push_token(body: PushToken, member: Member, request: Request) -> None:
    _officer(member)
    await staff.set_fcm_token(engine=request.app.state.services.engine, staff_id=member.staff_id,
                              fcm_token=body.fcm_token)


@router.get("/console", include_in_schema=False)
async def console_page() -> HTMLResponse:
    return HTMLResponse((WEB / "console.html").read_text(), headers={"Cache-Control": "no-store"})


@router.get("/console/assets/{name}", include_in_schema=False)
async def console_asset(name: str) -> FileResponse:
    return _file(WEB, name)


@router.get("/console/leaflet/{name:path}", include_in_schema=False)
async def leaflet_asset(name: str) -> FileResponse:
    return _file(LEAFLET, name)


def _file(root: Path, name: str) -> FileResponse:
    path = (root / name).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        raise refusals.NotFound("no such asset")
    return FileResponse(path)
