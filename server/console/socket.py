"""The console socket `/v1/console`: a snapshot of open alerts, then live events.

Authenticated (session cookie or Bearer) and Origin-checked before accept. The
console is registered with the hub before the snapshot is read, so nothing that
happens in between is missed: an event queued meanwhile is sent unless the snapshot
already holds that state of its alert or a newer one (each Alert carries its
`updated_at`). Each console has a bounded mailbox: one that does not keep up is
disconnected, never slowing the others.

Every location a console is shown is audited first, the row committed before the
frame is sent (DESIGN rule 8): one row per alert in a snapshot and per Alert frame
(`alert_opened`, `alert_updated`); the `alert_location` stream gets one row per alert
per console at its first move and again at the first after each
`LOCATION_AUDIT_INTERVAL_S` (context `location`: the row covers that alert's moves sent
to that console in the interval that follows it), so a moving user does not cost a
commit per fix per console.

A snapshot larger than `SNAPSHOT_FRAME_BYTES` is split (an addition to the contract):
the `snapshot` frame holds the first alerts and `"more": true`, and `snapshot_more`
frames (`alerts`, `more`) follow until one says `"more": false`; no frame exceeds the
1 MiB that common websocket clients accept by default.
"""

from typing import TYPE_CHECKING
import asyncio
import logging
import time
from datetime import datetime

import msgspec
from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from notifier.hub import RESYNC, ConsoleSubscriber, Event, Mailbox
from server.accounts import staff
from server.alerts import service as alerts
from server.alerts import view as alertview
from server.core import db, errors, fields, jsontext, refusals, wire

if TYPE_CHECKING:  # the lifespan's bag of services is built above every domain
    from server.services import Services

log = logging.getLogger(__name__)

LOCATION_AUDIT_INTERVAL_S = 30.0
# Well below 1 MiB, and above the largest single Alert (alertview bounds its notes).
SNAPSHOT_FRAME_BYTES = 896 * 1024


class ConsoleFrame(msgspec.Struct):
    type: str
    alert_id: str
    outcome: str | None = None
    text: str | None = None


_decoder = msgspec.json.Decoder(ConsoleFrame)
MAX_TEXT = 2000


def decode(text: str) -> ConsoleFrame:
    """A console frame, or refusals.Refusal with the contract's code. A dispatcher types what is
    stored, so text its column cannot hold is refused (`invalid_field`), not cleaned."""
    try:
        try:
            frame = _decoder.decode(text)
        except RecursionError:
            frame = _decoder.decode(jsontext.shallow(text))
    except msgspec.ValidationError as error:
        raise refusals.InvalidField(str(error), field=jsontext.field_of(error)) from None
    except msgspec.DecodeError as error:
        raise refusals.BadJson(f"not valid JSON: {error}") from None
    for name in ("type", "alert_id", "outcome", "text"):
        value = getattr(frame, name)
        if value is not None and fields.unstorable(value):
            raise refusals.InvalidField(f"{name} must not contain NUL", field=name)
    return frame


def snapshot_frames(alerts_shown: list[dict], *, max_bytes: int = SNAPSHOT_FRAME_BYTES) -> list[str]:
    """The snapshot as one frame, or as `snapshot` then `snapshot_more` frames of at most
    `max_bytes` each. An alert is never split: each must fit in a frame of its own, as every
    Alert does (alertview bounds the notes it shows)."""
    encoded = [wire.encode(alert) for alert in alerts_shown]
    pages: list[list[str]] = [[]]
    size = 0
    overhead = 64  # the frame's own keys
    for text in encoded:
        if pages[-1] and size + len(text.encode()) + 1 + overhead > max_bytes:
            pages.append([])
            size = 0
        pages[-1].append(text)
        size += len(text.encode()) + 1
    frames = []
    for index, page in enumerate(pages):
        kind = "snapshot" if index == 0 else "snapshot_more"
        more = "true" if index < len(pages) - 1 else "false"
        more_field = f',"more":{more}' if len(pages) > 1 else ""
        frames.append(f'{{"type":"{kind}","alerts":[{",".join(page)}]{more_field}}}')
    return frames


class ConsoleSession:
    def __init__(self, websocket: WebSocket, services: "Services", member: staff.Staff):
        self._ws = websocket
        self._services = services
        self._member = member
        self._subscriber = ConsoleSubscriber(all_precincts=member.all_precincts, precinct_id=member.precinct_id,
                                             mailbox=Mailbox(services.settings.console_queue_frames))
        # alert id → the state (updated_at) of it this console was last sent: older events are skipped.
        self._shown: dict[str, datetime] = {}
        # alert id → when its moves were last audited for this console (monotonic seconds).
        self._moves_audited: dict[str, float] = {}

    async def run(self) -> None:
        hub = self._services.fanout.hub
        hub.add_console(self._subscriber)
        try:
            await self._ws.accept()
            try:
                await self._send_snapshot()
            except db.STORAGE_ERRORS as error:
                log.error("console snapshot failed: %s", db.describe(error))
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
                    log.error("console of %s ended by %s", self._member.username, db.describe(error))
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
        """Read, audit (in the read's transaction, so committed before anything is sent) and send
        every unfinished alert this console may see."""
        subscriber = self._subscriber
        known_before, ended_before = set(subscriber.known_alerts), set(subscriber.ended_alerts)
        async with self._services.engine.begin() as connection:
            views = await alertview.load(connection=connection, viewer=self._member, unfinished_only=True,
                                         track_points=self._services.settings.alert_track_points)
            await alertview.audit(connection=connection, viewer=self._member, views=views, context="snapshot")
        # The hub kept adding and ending alerts while the query ran: what it heard then may be newer
        # than the query, and an alert heard to end stays ended whatever the query saw.
        in_snapshot = {view.alert["alert_id"] for view in views}
        heard = subscriber.known_alerts - known_before
        subscriber.known_alerts = (in_snapshot | heard) - (subscriber.ended_alerts - ended_before)
        for view in views:
            self._shown[view.alert["alert_id"]] = alertview.updated_at(view.alert)
        for frame in snapshot_frames([view.alert for view in views]):
            await self._ws.send_text(frame)

    async def _write(self) -> None:
        while True:
            event: Event = await self._subscriber.mailbox.get()
            if event is RESYNC:
                await self._send_snapshot()
                continue
            if event.type == "alert_location":
                if event.alert_id not in self._subscriber.known_alerts:
                    continue  # the alert ended after this move was queued
                await self._audit_moves(event)
            else:
                state = alertview.updated_at(event.frame["alert"])
                shown = self._shown.get(event.alert_id)
                if shown is not None and state <= shown:
                    continue  # this console holds this state of the alert, or a newer one (its snapshot)
                self._shown[event.alert_id] = state
                await self._audit(event, context="live")
            await self._ws.send_text(event.text or wire.encode(event.frame))

    async def _audit_moves(self, event: Event) -> None:
        now = time.monotonic()
        if now - self._moves_audited.get(event.alert_id, -LOCATION_AUDIT_INTERVAL_S) >= LOCATION_AUDIT_INTERVAL_S:
            await self._audit(event, context="location")
            self._moves_audited[event.alert_id] = now

    async def _audit(self, event: Event, *, context: str) -> None:
        """Returns once the row is committed: the frame it audits is sent after."""
        await self._services.audit_log.record(
            alertview.audit_rows(viewer=self._member, shown=[(event.alert_id, event.user_id)], context=context))

    async def _read(self) -> None:
        while True:
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            try:
                await self._handle(message.get("text"))
            except refusals.Refusal as refusal:
                await self._ws.send_text(wire.encode(refusal.frame()))
            except db.STORAGE_ERRORS as error:
                log.error("console action failed: %s", db.describe(error))
                await self._ws.send_text(wire.encode(
                    {"type": "error", "code": "unavailable", "message": "storage unavailable; try again"}))

    async def _handle(self, text: str | None) -> None:
        if text is None:
            raise refusals.BadJson("frames must be JSON text")
        frame = decode(text)
        services, member = self._services, self._member
        common = {"engine": services.engine, "settings": services.settings, "member": member,
                  "alert_id": frame.alert_id, "relay": services.relay}
        if frame.type == "ack":
            await alerts.acknowledge(**common)
        elif frame.type == "resolve":
            outcome = (frame.outcome or "").strip()
            if not outcome or len(outcome) > MAX_TEXT:
                raise refusals.InvalidField("resolve needs an outcome", field="outcome")
            await alerts.resolve(**common, outcome=outcome)
        elif frame.type == "note":
            text = (frame.text or "").strip()
            if not text or len(text) > MAX_TEXT:
                raise refusals.InvalidField(f"a note is 1 to {MAX_TEXT} characters", field="text")
            await alerts.add_note(**common, text=text)
        else:
            raise refusals.UnknownType(f"unknown frame type {frame.type!r}", field="type")
        await self._ws.send_text(wire.encode({"type": "done", "action": frame.type, "alert_id": frame.alert_id}))


async def endpoint(websocket: WebSocket) -> None:
    """Refuses (HTTP 403, before accept) a bad Origin, no session, or an officer."""
    services: "Services" = websocket.app.state.services
    if websocket.headers.get("origin") not in services.settings.console_origins:
        await websocket.close(errors.CLOSE_POLICY, "origin not allowed")
        return
    member = await staff.staff_for(engine=services.engine,
                                   token=staff.session_token(websocket.headers, websocket.cookies))
    if member is None or member.role == "officer":
        await websocket.close(errors.CLOSE_POLICY, "a dispatcher's session is required")
        return
    await ConsoleSession(websocket, services, member).run()
