"""The console socket `/v1/console`: a snapshot of open alerts, then live events.

Authenticated (session cookie or Bearer) and Origin-checked before accept. The
console is registered with the hub before the snapshot is read, so nothing that
happens in between is missed (it may arrive twice; consoles key alerts by id).
Each console has a bounded mailbox: one that does not keep up is disconnected,
never slowing the others. Every alert a console is shown is audited first.
"""

import asyncio
import logging

import msgspec
from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from notifier.hub import RESYNC, ConsoleSubscriber, Event, Mailbox
from server import alerts, alertview, errors, fields, jsontext, staff, wire
from server.ingest import STORAGE_ERRORS, describe
from server.services import Services

log = logging.getLogger(__name__)


class ConsoleFrame(msgspec.Struct):
    type: str
    alert_id: str
    outcome: str | None = None
    text: str | None = None


_decoder = msgspec.json.Decoder(ConsoleFrame)
MAX_TEXT = 2000


def decode(text: str) -> ConsoleFrame:
    """A console frame, or FrameError with the contract's code. A dispatcher types what is
    stored, so text its column cannot hold is refused (`invalid_field`), not cleaned."""
    try:
        try:
            frame = _decoder.decode(text)
        except RecursionError:
            frame = _decoder.decode(jsontext.shallow(text))
    except msgspec.ValidationError as error:
        raise wire.FrameError("invalid_field", str(error), field=jsontext.field_of(error)) from None
    except msgspec.DecodeError as error:
        raise wire.FrameError("bad_json", f"not valid JSON: {error}") from None
    for name in ("type", "alert_id", "outcome", "text"):
        value = getattr(frame, name)
        if value is not None and fields.unstorable(value):
            raise wire.FrameError("invalid_field", f"{name} must not contain NUL", field=name)
    return frame


class ConsoleSession:
    def __init__(self, websocket: WebSocket, services: Services, member: staff.Staff):
        self._ws = websocket
        self._services = services
        self._member = member
        self._subscriber = ConsoleSubscriber(all_precincts=member.all_precincts, precinct_id=member.precinct_id,
                                             mailbox=Mailbox(services.settings.console_queue_frames))

    async def run(self) -> None:
        hub = self._services.fanout.hub
        hub.add_console(self._subscriber)
        try:
            await self._ws.accept()
            try:
                await self._send_snapshot()
            except STORAGE_ERRORS as error:
                log.error("console snapshot failed: %s", describe(error))
                await self._ws.close(errors.CLOSE_UNAVAILABLE, "storage unavailable; reconnect")
                return
            reader = asyncio.create_task(self._read(), name="console-reader")
            writer = asyncio.create_task(self._write(), name="console-writer")
            slow = asyncio.create_task(self._subscriber.mailbox.overflowed.wait(), name="console-slow")
            done, pending = await asyncio.wait({reader, writer, slow}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                error = task.exception()
                if error is not None and not isinstance(error, WebSocketDisconnect | OSError):
                    log.error("console of %s ended by %s", self._member.username, describe(error))
            if slow in done:
                log.warning("console of %s too slow; disconnected", self._member.username)
                await self._close(errors.CLOSE_TRY_AGAIN, "too slow; reconnect for a snapshot")
        finally:
            hub.remove_console(self._subscriber)

    async def _close(self, code: int, reason: str) -> None:
        try:
            await self._ws.close(code, reason)
        except (RuntimeError, OSError, WebSocketDisconnect):
            pass

    async def _send_snapshot(self) -> None:
        async with self._services.engine.begin() as connection:
            views = await alertview.load(connection=connection, viewer=self._member, unfinished_only=True,
                                         track_points=self._services.settings.alert_track_points)
            await alertview.audit(connection=connection, viewer=self._member, views=views, context="snapshot")
        self._subscriber.known_alerts.update(view.alert["alert_id"] for view in views)
        await self._ws.send_text(wire.encode({"type": "snapshot", "alerts": [view.alert for view in views]}))

    async def _write(self) -> None:
        audited = set(self._subscriber.known_alerts)
        in_snapshot = set(audited)
        while True:
            event: Event = await self._subscriber.mailbox.get()
            if event is RESYNC:
                await self._send_snapshot()
                audited.update(self._subscriber.known_alerts)
                continue
            if event.type == "alert_opened" and event.alert_id in in_snapshot:
                continue  # opened while the snapshot was read: the snapshot already holds it
            if event.type != "alert_location" and event.alert_id not in audited:
                # Queued, not awaited: the dispatcher's screen never waits for the audit log (it is
                # group-committed within milliseconds, and retried if PostgreSQL is away).
                audited.add(event.alert_id)
                self._audit(event)
            await self._ws.send_text(event.text or wire.encode(event.frame))

    def _audit(self, event: Event) -> None:
        self._services.audit_log.add(
            alertview.audit_rows(viewer=self._member, shown=[(event.alert_id, event.user_id)], context="live"))

    async def _read(self) -> None:
        while True:
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            try:
                await self._handle(message.get("text"))
            except wire.FrameError as refusal:
                await self._ws.send_text(wire.encode(refusal.frame()))
            except STORAGE_ERRORS as error:
                log.error("console action failed: %s", describe(error))
                await self._ws.send_text(wire.encode(
                    {"type": "error", "code": "unavailable", "message": "storage unavailable; try again"}))

    async def _handle(self, text: str | None) -> None:
        if text is None:
            raise wire.FrameError("bad_json", "frames must be JSON text")
        frame = decode(text)
        services, member = self._services, self._member
        common = {"engine": services.engine, "settings": services.settings, "member": member,
                  "alert_id": frame.alert_id}
        if frame.type == "ack":
            await alerts.acknowledge(**common)
        elif frame.type == "resolve":
            outcome = (frame.outcome or "").strip()
            if not outcome or len(outcome) > MAX_TEXT:
                raise wire.FrameError("invalid_field", "resolve needs an outcome", field="outcome")
            await alerts.resolve(**common, outcome=outcome)
        elif frame.type == "note":
            text = (frame.text or "").strip()
            if not text or len(text) > MAX_TEXT:
                raise wire.FrameError("invalid_field", f"a note is 1 to {MAX_TEXT} characters", field="text")
            await alerts.add_note(**common, text=text)
        else:
            raise wire.FrameError("unknown_type", f"unknown frame type {frame.type!r}", field="type")
        services.relay.kick()
        await self._ws.send_text(wire.encode({"type": "done", "action": frame.type, "alert_id": frame.alert_id}))


async def endpoint(websocket: WebSocket) -> None:
    """Refuses (HTTP 403, before accept) a bad Origin, no session, or an officer."""
    services: Services = websocket.app.state.services
    if websocket.headers.get("origin") not in services.settings.console_origins:
        await websocket.close(errors.CLOSE_POLICY, "origin not allowed")
        return
    member = await staff.staff_for(engine=services.engine,
                                   token=staff.session_token(websocket.headers, websocket.cookies))
    if member is None or member.role == "officer":
        await websocket.close(errors.CLOSE_POLICY, "a dispatcher's session is required")
        return
    await ConsoleSession(websocket, services, member).run()
