"""Share links over HTTP: made and revoked by the trip's owner (Bearer device token), and the
watcher page `/share/{token}` with its assets.

The page's path holds the token: it never appears in a log line (uvicorn's access log is
off; our lines name the route), the page asks browsers to send no Referer and to keep no
copy, and its policy allows scripts, styles and connections from this origin only (no
inline script: everything a user typed reaches the page as text, set with textContent).
"""

import math
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request, Response
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, Field

from server.accounts import auth
from server.core import db, openapi, refusals, wire
from server.sharing import links

router = APIRouter()
Device = Annotated[auth.Device, Depends(auth.current_device)]
WEB = Path(__file__).parent.parent / "web"
ASSETS = {"share.js", "share.css", "usertext.js"}
# Share links a device may make: a few at once (one per family member), then one a minute.
SHARES_BURST = 10
SHARES_PER_S = 1 / 60
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex",
    "Cache-Control": "no-store",
}
GONE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Guardian: {title}</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/share/assets/share.css">
</head><body class="gone"><main><h1>{title}</h1><p>{text}</p></main></body></html>
"""


class ShareRequest(BaseModel):
    # Strict: 60.5, "60" or true are not a number of seconds.
    expires_in_s: int | None = Field(default=None, strict=True)


@router.post("/v1/trips/{trip_id}/shares", status_code=201,
             responses=openapi.refusals(400, 401, 404, 409, 413, 422, 429))
async def create_share(trip_id: uuid.UUID, request: Request, device: Device,
                       body: Annotated[ShareRequest | None, Body()] = None) -> dict:
    """A link for watchers to follow the trip live, valid until `expires_at` (by default the trip's
    expected end plus `share_after_end_s`, at most `share_max_s`). The token is shown only here."""
    services = request.app.state.services
    limiter = services.share_creations
    if not limiter.take(device.device_id):
        wait_s = math.ceil(limiter.retry_after_s(device.device_id))
        raise refusals.RateLimited(f"too many share links; retry in {wait_s} s", retry_after_ms=1000 * wait_s)
    created = await links.create(engine=services.engine, settings=services.settings, user_id=device.user_id,
                                 trip_id=trip_id, expires_in_s=None if body is None else body.expires_in_s,
                                 now=datetime.now(UTC))
    # Not `url_for`: the page is the alerts process's route, and this may be a phones process.
    return {"token": created.token, "url": f"{str(request.base_url).rstrip('/')}/share/{created.token}",
            "expires_at": wire.format_time(created.share.expires_at)}


@router.delete("/v1/shares/{token}", status_code=204, responses=openapi.refusals(401, 404, 422))
async def revoke_share(token: str, request: Request, device: Device) -> Response:
    """Revoke a link to one of the user's trips: its watchers are closed at once."""
    services = request.app.state.services
    share = await links.revoke(engine=services.engine, user_id=device.user_id, token=token)
    await services.trip_feed.revoked(share)
    return Response(status_code=204)


@router.get("/share/{token}", include_in_schema=False, name="share_page")
async def share_page(token: str, request: Request) -> HTMLResponse:
    """The watcher page: 404 for an unknown link, 410 for an expired or revoked one."""
    async with db.autocommit(request.app.state.services.engine) as connection:
        share = await links.find(connection=connection, token=token)
    if share is None:
        return _gone(404, "No such link", "This link does not lead to any trip.")
    if not share.live(datetime.now(UTC)):
        return _gone(410, "This link has expired", "The trip is no longer shared through this link.")
    return HTMLResponse((WEB / "share.html").read_text(), headers=PAGE_HEADERS)


def _gone(status: int, title: str, text: str) -> HTMLResponse:
    return HTMLResponse(GONE.format(title=title, text=text), status_code=status, headers=PAGE_HEADERS)


@router.get("/share/assets/{name}", include_in_schema=False)
async def share_asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise refusals.NotFound("no such asset")
    return FileResponse(WEB / name, headers={"X-Content-Type-Options": "nosniff"})
