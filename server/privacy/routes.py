"""`GET /v1/me/export` and `DELETE /v1/me` (Bearer device token).

An export holds a database connection and a snapshot for as long as it streams: one at a
time per user, a few per hour (`EXPORTS_BURST`, `EXPORTS_PER_S`), and at most
`EXPORTS_AT_ONCE` in this process, so that exports can never take the pool from phones.
"""

import logging
import math
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError

from server.accounts import auth
from server.core import db, openapi, refusals
from server.privacy import erasure, export

router = APIRouter()
log = logging.getLogger(__name__)
Device = Annotated[auth.Device, Depends(auth.current_device)]

EXPORTS_BURST = 3
EXPORTS_PER_S = 1 / 600
EXPORTS_AT_ONCE = 2
BUSY_RETRY_MS = 10_000
EXPORT_HEADERS = {"Content-Disposition": 'attachment; filename="guardian-export.zip"', "Cache-Control": "no-store",
                  "X-Content-Type-Options": "nosniff"}


class Exports:
    """This process's exports under way, by user, and each user's bucket of exports."""

    def __init__(self, limiter):
        self.limiter = limiter
        self.running: set[uuid.UUID] = set()

    def admit(self, user_id: uuid.UUID) -> None:
        """Raises refusals.RateLimited unless this user may start an export now."""
        if user_id in self.running:
            raise refusals.RateLimited("an export of yours is already being sent", retry_after_ms=BUSY_RETRY_MS)
        if len(self.running) >= EXPORTS_AT_ONCE:
            raise refusals.RateLimited("too many exports under way; retry later", retry_after_ms=BUSY_RETRY_MS)
        if not self.limiter.take(user_id):
            wait_s = math.ceil(self.limiter.retry_after_s(user_id))
            raise refusals.RateLimited(f"too many exports; retry in {wait_s} s", retry_after_ms=1000 * wait_s)
        self.running.add(user_id)


@router.get("/v1/me/export", response_class=StreamingResponse, responses={
    200: {"description": "a zip archive of everything held about the user", "content": {export.MEDIA_TYPE: {}}},
    **openapi.refusals(401, 429, 503)})
async def export_mine(request: Request, device: Device) -> StreamingResponse:
    """Everything held about the user: profile, settings, devices, trips, alerts and notes, history."""
    services = request.app.state.services
    exports: Exports = services.exports
    exports.admit(device.user_id)

    async def pieces():
        try:
            async for piece in export.archive(engine=services.engine, user_id=device.user_id):
                yield piece
        except db.STORAGE_ERRORS as error:
            # The archive is cut short: without its central directory no reader takes it for whole.
            log.error("export cut short, storage unavailable: %s", db.describe(error))
        finally:
            exports.running.discard(device.user_id)

    return StreamingResponse(pieces(), media_type=export.MEDIA_TYPE, headers=EXPORT_HEADERS)


@router.delete("/v1/me", status_code=204, responses={
    204: {"description": "the account is erased (again: nothing to do); the token no longer works"},
    **openapi.refusals(401, 409, 503)})
async def erase_me(request: Request, device: Device) -> Response:
    """Erase the account. Its alerts stay as the law-enforcement record (see the README); refused
    (409) while one of them is not over."""
    services = request.app.state.services
    try:
        async with services.engine.begin() as connection:
            erased = await erasure.erase(connection=connection, user_id=device.user_id)
            if erased is not None:
                # Before the commit: a Redis that cannot forget the user leaves the account whole (503).
                await erasure.drop_hot_copy(redis=services.redis, user_id=device.user_id)
    except RedisError as error:
        log.error("erasure not done, Redis unavailable: %s", db.describe(error))
        raise refusals.Unavailable("not erased; retry") from None
    if erased is not None:
        log.info("account erased; %d alert(s) kept as the record", erased.kept_alerts)
        try:
            await erasure.forget_live(redis=services.redis, fanout=services.fanout, trip_feed=services.trip_feed,
                                      erased=erased)
        except RedisError as error:
            # Committed: the tables are empty, watchers see it at their recheck, phones' tokens fail.
            log.warning("erased account's live state not all told: %s", db.describe(error))
    return Response(status_code=204)
