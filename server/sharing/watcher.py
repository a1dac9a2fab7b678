"""The watcher's socket `/v1/share/{token}`: the trip first, then its moves and its status.

The socket is accepted before the link is judged, so that a browser learns why it is
closed: an unknown, revoked or expired link closes with 1008 (a refusal before accept
reaches a page as 1006, indistinguishable from a lost network). The watcher is
registered with the hub before the trip is read, so nothing in between is missed; an
event the read already holds is skipped. Each watcher has a bounded mailbox: one that
does not keep up is closed (1013), never slowing the others.

Rule 8 is kept here, whatever the feed relays: a fix is sent only if its device time
lies within the trip (from its start, to its end once heard) and before the link
expires, and is newer than the last one sent. At the expiry the socket closes (1008);
a revocation closes it at once in any process (`share_revoked`), and every
`RECHECK_S` the link and the trip are read again, in case a pub/sub message was lost.
"""

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from notifier.hub import Event, Mailbox
from server.core import db, errors, wire
from server.sharing import links, view
from server.sharing.feed import status_event
from server.trips import service

if TYPE_CHECKING:  # the lifespan's bag of services is built above every domain
    from server.services import Services

log = logging.getLogger(__name__)

MAILBOX_FRAMES = 500
RECHECK_S = 30.0
EXPIRED = "this link has expired"


class Closing(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


class WatcherSession:
    def __init__(self, websocket: WebSocket, services: "Services", share: links.Share):
        self._ws = websocket
        self._services = services
        self._share = share
        self._mailbox = Mailbox(MAILBOX_FRAMES)
        self._status = ""
        self._shown_at: datetime | None = None  # the trip's updated_at the watcher was last told
        self._started_at: datetime | None = None
        self._ended_at: datetime | None = None
        self._last_ts: datetime | None = None

    async def run(self) -> None:
        hub, trip_id = self._services.fanout.hub, str(self._share.trip_id)
        hub.add_watcher(trip_id, self._mailbox.offer)
        try:
            try:
                await self._send_trip()
            except db.STORAGE_ERRORS as error:
                log.error("watcher's trip not read: %s", db.describe(error))
                raise Closing(errors.CLOSE_UNAVAILABLE, "storage unavailable; reconnect") from None
            tasks = {asyncio.create_task(self._read(), name="watcher-reader"),
                     asyncio.create_task(self._write(), name="watcher-writer"),
                     asyncio.create_task(self._guard(), name="watcher-guard"),
                     asyncio.create_task(self._mailbox.overflowed.wait(), name="watcher-slow")}
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                error = task.exception()
                if isinstance(error, Closing):
                    raise error
                if error is not None and not isinstance(error, WebSocketDisconnect | OSError | RuntimeError):
                    log.error("watcher socket ended by %s", db.describe(error))
                if task.get_name() == "watcher-slow":
                    raise Closing(errors.CLOSE_TRY_AGAIN, "too slow; reconnect")
        except Closing as closing:
            await close(self._ws, closing.code, closing.reason)
        finally:
            hub.remove_watcher(trip_id, self._mailbox.offer)

    async def _send_trip(self) -> None:
        async with db.autocommit(self._services.engine) as connection:
            trip = await service.by_id(connection=connection, trip_id=self._share.trip_id)
            fixes = await view.track(connection=connection, trip=trip, share=self._share)
        self._services.trip_feed.note(trip)
        self._status, self._shown_at = view.watch_status(trip), trip.updated_at
        self._started_at, self._ended_at = trip.started_at, trip.ended_at
        if fixes:
            self._last_ts = datetime.fromisoformat(fixes[-1]["ts"])
        await self._ws.send_text(wire.encode(view.trip_frame(trip, self._share, fixes)))

    async def _write(self) -> None:
        while True:
            text = self._frame_for(await self._mailbox.get())
            if text is not None:
                await self._ws.send_text(text)

    def _frame_for(self, event: Event) -> str | None:
        """What the watcher is sent of a trip event, if anything. Raises Closing for its link's revocation."""
        if event.type == "trip_location":
            ts = datetime.fromisoformat(event.frame["ts"])
            if (ts < self._started_at or ts > self._share.expires_at
                    or (self._ended_at is not None and ts > self._ended_at)
                    or (self._last_ts is not None and ts <= self._last_ts)):
                return None
            self._last_ts = ts
            return event.text or wire.encode(event.frame)
        if event.type == "trip_status":
            updated_at = datetime.fromisoformat(event.frame["updated_at"])
            if self._shown_at is not None and updated_at <= self._shown_at:
                return None  # the trip as read (or told) is this state or a newer one
            self._shown_at = updated_at
            if event.frame["ended_at"] is not None:
                self._ended_at = datetime.fromisoformat(event.frame["ended_at"])
            return self._tell(event.frame["status"])
        if event.type == "trip_alert":
            return self._tell("alert")
        if event.type == "share_revoked" and event.frame.get("share_id") == str(self._share.share_id):
            raise Closing(errors.CLOSE_POLICY, "this link was revoked")
        return None

    def _tell(self, status: str) -> str | None:
        if status == self._status or self._status in view.FINAL:
            return None  # told already; and an ended trip stays ended
        self._status = status
        return wire.encode({"type": "trip_status", "status": status})

    async def _guard(self) -> None:
        """Closes at the expiry; reads the link and the trip again every RECHECK_S."""
        loop = asyncio.get_running_loop()
        next_check = loop.time() + RECHECK_S
        while True:
            left_s = (self._share.expires_at - datetime.now(UTC)).total_seconds()
            if left_s <= 0:
                raise Closing(errors.CLOSE_POLICY, EXPIRED)
            await asyncio.sleep(min(left_s, max(0.0, next_check - loop.time())))
            if loop.time() < next_check:
                continue
            next_check = loop.time() + RECHECK_S
            try:
                async with db.autocommit(self._services.engine) as connection:
                    share = await links.current(connection=connection, share_id=self._share.share_id)
                    trip = await service.by_id(connection=connection, trip_id=self._share.trip_id)
            except db.STORAGE_ERRORS as error:
                log.warning("watcher's link not rechecked: %s", db.describe(error))
                continue
            if share is None or share.revoked_at is not None:
                raise Closing(errors.CLOSE_POLICY, "this link was revoked")
            self._mailbox.offer(status_event(trip))

    async def _read(self) -> None:
        """A watcher sends nothing that matters; this only notices it leave."""
        while (await self._ws.receive())["type"] != "websocket.disconnect":
            pass


async def close(websocket: WebSocket, code: int, reason: str) -> None:
    try:
        await websocket.close(code, reason)
    except (RuntimeError, OSError, WebSocketDisconnect):
        pass


async def endpoint(websocket: WebSocket, token: str) -> None:
    """The route's path holds the token: logs name the route, never the path."""
    services: "Services" = websocket.app.state.services
    await websocket.accept()
    try:
        async with db.autocommit(services.engine) as connection:
            share = await links.find(connection=connection, token=token)
    except db.STORAGE_ERRORS as error:
        log.error("/v1/share/{token}: link not read, storage unavailable (%s)", db.describe(error))
        await close(websocket, errors.CLOSE_UNAVAILABLE, "storage unavailable; reconnect")
        return
    if share is None:
        await close(websocket, errors.CLOSE_POLICY, "no such link")
        return
    if not share.live(datetime.now(UTC)):
        await close(websocket, errors.CLOSE_POLICY, EXPIRED if share.revoked_at is None else "this link was revoked")
        return
    await WatcherSession(websocket, services, share).run()
