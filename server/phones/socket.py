"""The phone socket `/v1/phone`: authenticate, welcome, then pings in and acks out.

The reader (this endpoint's task) decodes and judges frames and queues pings
for the group commit. It never waits for a commit, nor for room in a full ingest
queue (such a frame is refused `rate_limited` at once, with `retry_after_ms`), so an SOS is
read at once; until then that socket's pings are dropped unread and answered with one
`error` (`server.phones.shedding`), so refusing costs little of what it protects.
What goes back to the phone (errors, acks) is drained by a short-lived writer task
started only when there is something to send, so a slow phone delays only itself
and an idle phone costs no task.

The ack is cumulative over the device's ledger in this process (shared with its
`POST /v1/pings` requests) and is re-sent whenever a stored ping settles, a
duplicate included. A ping PostgreSQL refused at flush time gets its `error`
before the ack that passes it. When storage loses pings of the stream (a flush
failed twice), the writer closes with 1011 after the frames already due, and the
phone resends from the welcome's `acked_seq`.
"""

from typing import TYPE_CHECKING
import asyncio
import logging
import math
import time
import uuid
from collections import deque

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from notifier.hub import PHONE_FRAME, Event
from server.accounts import auth
from server.alerts import service as alerts
from server.trips import frames as trip_frames
from server.trips import service as trip_service
from server.core import db, errors, refusals, wire
from server.positions import history
from server.alerts.view import UNFINISHED
from server.phones.intake import Intake, open_intake
from server.phones.ledger import Ledger
from server.phones import shedding
from server.core.tasks import cancel_and_wait

if TYPE_CHECKING:  # the lifespan's bag of services is built above every domain
    from server.services import Services

log = logging.getLogger(__name__)

# The phone frame (`Fanout.publish_to_phone`) an erasure sends to every process: never sent on,
# it closes the user's sockets.
ACCOUNT_ERASED = "account_erased"
# Likewise, the phone frame a new socket of a device sends to every process when it takes over:
# the device's older socket closes wherever it is (another worker, another phones process).
SOCKET_TAKEN_OVER = "socket_taken_over"
# Frames waiting for a phone that does not read; past this it is dropped.
MAX_OUTBOX_FRAMES = 1000


class PhoneSession:
    def __init__(self, websocket: WebSocket, services: "Services"):
        self._ws = websocket
        self._services = services
        self._outbox: deque[str] = deque()
        self._writer: asyncio.Task | None = None
        self._acked_progress = 0
        self._closing = False
        self.ledger: Ledger | None = None
        self._device: auth.Device | None = None
        self._session_id = uuid.uuid4().hex
        # Which of two sockets of a device is the newer (`SOCKET_TAKEN_OVER`): when each began to
        # listen for the other (set in `_serve`), the session id breaking a tie. Two that open at
        # once in two processes then agree on which one stays, rather than each closing the other.
        self._opened = (0, self._session_id)
        # alert id → the status this phone was last told, and whether it was told to report fast.
        self._told: dict[str, str] = {}
        self._fast: set[str] = set()
        # trip id → the status this phone was last told of it (in an answer to its own frame or live).
        self._trips_told: dict[str, str] = {}
        self._trip_tasks: set[asyncio.Task] = set()
        self._shed = shedding.ShedWindow()

    async def run(self) -> None:
        await self._ws.accept()
        intake = None
        try:
            try:
                device = await self._authenticate()
            except refusals.RateLimited as refusal:  # the phone sends an SOS over `POST /v1/sos` meanwhile
                await self._ws.close(errors.CLOSE_TRY_AGAIN, refusal.message)
                return
            if device is None:
                await self._ws.close(errors.CLOSE_POLICY, "unauthorized")
                return
            async with db.autocommit(self._services.engine) as connection:
                acked_seq = await history.acked_seq(connection=connection, device_id=device.device_id)
                intake = await open_intake(connection=connection, services=self._services, device=device,
                                           acked_seq=acked_seq, on_change=self._kick, on_refused=self._refused,
                                           in_alert=self._in_alert)
        except db.STORAGE_ERRORS as error:
            if intake is not None:  # the connection failed on its way back to the pool
                intake.close()
            log.error("phone session cannot start, storage unavailable: %s", db.describe(error))
            await self._ws.close(errors.CLOSE_UNAVAILABLE, "storage unavailable; retry later")
            return
        try:
            await self._serve(device, acked_seq, intake)
        finally:
            intake.close()

    async def _serve(self, device: auth.Device, acked_seq: int, intake: Intake) -> None:
        self._device = device
        self._user_key = str(device.user_id)  # asked of every frame while shedding
        await self._ws.send_text(
            wire.encode({"type": "welcome", "user_id": str(device.user_id), "acked_seq": acked_seq})
        )
        # One socket per device token in this process: a phone reconnecting over a half-dead
        # link takes over at once, and a leaked token cannot pile up sockets.
        sockets = self._services.phone_sockets
        previous, sockets[device.device_id] = sockets.get(device.device_id), self
        if previous is not None:
            await previous.close_replaced()
        # Only now may the writer run (an ack never precedes the welcome); the ledger may be
        # shared with a request of this device, so what it owes this socket starts here.
        self.ledger = intake.ledger
        self._acked_progress = self.ledger.progress
        hub = self._services.fanout.hub
        hub.add_phone(str(device.user_id), self._on_event)
        # Listening first, then dated and announced: of two sockets opening at once anywhere, the
        # one dated later announces later, so the earlier one hears it (or announced before the
        # later one listened, which then hears the earlier one's older date and stays).
        self._opened = (time.time_ns(), self._session_id)
        self._services.fanout.publish_soon_to_phone(
            user_id=str(device.user_id),
            frame={"type": SOCKET_TAKEN_OVER, "device_id": str(device.device_id), "socket": self._session_id,
                   "opened_ns": self._opened[0]})
        for alert_id in self._services.fanout.phone_alerts(str(device.user_id)):
            self._report_fast(alert_id)
        # A question asked while the phone was away (an overdue trip's `are_you_safe`) is asked again.
        for frame in await trip_frames.on_connect(services=self._services, user_id=device.user_id):
            self._send(wire.encode(frame))
        try:
            await self._read(intake)
        finally:
            if sockets.get(device.device_id) is self:
                del sockets[device.device_id]
            hub.remove_phone(str(device.user_id), self._on_event)
            self._closing = True
            await cancel_and_wait(self._writer, *self._trip_tasks)

    async def close_replaced(self) -> None:
        """A newer socket of this device took over: close this one with a code that says so
        (the phone must not reconnect it); its reader then sees the disconnect and ends."""
        try:
            await self._ws.close(errors.CLOSE_REPLACED, "replaced by a newer socket of this device")
        except (WebSocketDisconnect, RuntimeError, OSError) as error:
            log.debug("replaced phone socket was already closing: %s", type(error).__name__)

    async def _authenticate(self) -> auth.Device | None:
        """Bearer header on the upgrade, else a `hello` frame within the hello timeout.

        Raises RateLimited, before any database work, when the token connected more often than
        its bucket allows (`phone_connect_burst`, then `phone_connects_per_s`)."""
        token = auth.bearer(self._ws.headers.get("authorization"))
        if token is None:
            try:
                async with asyncio.timeout(self._services.settings.hello_timeout_s):
                    message = await self._ws.receive()
            except TimeoutError:
                return None
            try:
                frame = wire.decode_frame(message.get("text") or "")  # binary or a disconnect: no hello
            except refusals.Refusal:
                return None
            if not isinstance(frame, wire.Hello) or not frame.token:
                return None
            token = frame.token
        # Before the lookup, so a reconnect storm on one token costs the others no query; by the
        # digest, so the buckets never hold a token.
        key, connects = auth.digest(token), self._services.phone_connects
        if not connects.take(key):
            wait_s = math.ceil(connects.retry_after_s(key))
            raise refusals.RateLimited(f"too many connects of this device token; retry in {wait_s} s",
                                        retry_after_ms=1000 * wait_s)
        return await auth.device_for(engine=self._services.engine, token=token)

    async def _read(self, intake: Intake) -> None:
        max_errors = self._services.settings.max_consecutive_errors
        consecutive_errors = 0
        # After a failed ledger the writer closes with 1011 (after the frames before it) and
        # the reader sees the disconnect.
        loop = asyncio.get_running_loop()
        while True:
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if self._shed.is_open(loop.time()) and self._drop_unread(message, intake):
                continue
            self._answer_shed(intake)  # before any frame is taken, so no ack passes them unanswered
            try:
                frame = self._decode(message)
                if isinstance(frame, wire.Sos | wire.SosCancel):
                    await self._alert_frame(frame, intake)
                    consecutive_errors = 0
                    continue
                if isinstance(frame, wire.TRIP_FRAMES):
                    await self._trip_frame(frame)
                    consecutive_errors = 0
                    continue
                self._take(intake, frame)
            except refusals.Refusal as refusal:
                self._send(wire.encode(refusal.frame()))
                if isinstance(refusal, refusals.RateLimited):
                    if refusal.retry_after_ms is not None:  # its next pings until then are shed unread
                        self._shed.open(loop.time(), refusal.retry_after_ms)
                        loop.call_later(refusal.retry_after_ms / 1000, self._answer_shed, intake)
                    continue  # not garbage: the phone resends later (a full server sheds this way)
                consecutive_errors += 1
                if consecutive_errors >= max_errors:
                    await self._ws.close(errors.CLOSE_POLICY, "too many refused frames")
                    return
                continue
            consecutive_errors = 0

    def _drop_unread(self, message: dict, intake: Intake) -> bool:
        """Within a shed window: drop a frame that can only be a ping, unless its user is in an
        alert (never shed). The range dropped is answered by `_answer_shed`. A window opened for
        a full queue ends once the queue has room: a phone that does not wait must not lose
        pings the server could store."""
        text = message.get("text")
        seq = None if text is None else shedding.ping_seq(text)
        if seq is None or self._in_alert():
            return False
        if intake.refused_for_room and intake.has_room():
            self._shed.close()
            return False
        self._shed.drop(seq)
        return True

    def _answer_shed(self, intake: Intake) -> None:
        """One `rate_limited` error for the pings dropped unread since the last one (then the
        ledger may pass them): at the window's end, or before the next frame is taken."""
        if self._shed.first_seq is None or self._closing or self.ledger is None or self.ledger.failed:
            return
        count, self._shed.dropped = self._shed.dropped, 0
        self._send(wire.encode(intake.shed(self._shed.take_range(), count).frame()))

    @staticmethod
    def _decode(message: dict):
        text = message.get("text")
        if text is None:
            # An SOS is never refused for its form (DESIGN rule 3), not even sent as binary.
            sos = wire.salvage_sos(message.get("bytes") or b"")
            if sos is not None:
                return sos
            raise refusals.BadJson("frames must be JSON text, not binary")
        return wire.decode_frame(text)

    def _take(self, intake: Intake, frame) -> None:
        if self.ledger.failed and isinstance(frame, wire.Ping | wire.Batch):
            return  # the writer is closing with 1011: the phone resends these from acked_seq
        if isinstance(frame, wire.Ping):
            refused = intake.take((frame,))
        elif isinstance(frame, wire.Batch):
            refused = intake.take(frame.pings)
        else:
            raise refusals.Conflict("already authenticated", field="type")
        for refusal in refused:
            self._send(wire.encode(refusal.frame()))

    async def _alert_frame(self, frame: wire.Sos | wire.SosCancel, intake: Intake) -> None:
        """An SOS or a cancel: its own transaction, not queued behind the pings (DESIGN rule 3).

        Raises refusals.Refusal for a refusal; a storage failure is answered `unavailable`, never
        with a false `sos_ack`, and the phone retries with the same sos_id."""
        services = self._services
        try:
            if isinstance(frame, wire.Sos):
                raised = await alerts.raise_alert(engine=services.alert_engine, settings=services.settings,
                                                  device=self._device, sos=frame, last_fix=intake.previous,
                                                  relay=services.relay)
            else:
                alert_id = await alerts.cancel(engine=services.alert_engine, settings=services.settings,
                                               user_id=self._device.user_id, alert_id=frame.alert_id, pin=frame.pin,
                                               relay=services.relay)
        except refusals.Refusal:
            raise
        except Exception as error:
            # Storage, or a defect: either way the phone must hear that this SOS (or cancel) is
            # not done, so that it retries with the same frame, and the socket stays open. A
            # defect is logged with its traceback (which quotes no frame: no coordinate, no PIN).
            if isinstance(error, db.STORAGE_ERRORS):
                log.error("SOS frame not committed, storage unavailable: %s", db.describe(error))
            else:
                log.exception("SOS frame failed before its answer; the phone retries")
            refusal = {"type": "error", "code": "unavailable", "message": "not stored; retry with the same frame"}
            if isinstance(frame, wire.Sos):
                refusal["sos_id"] = frame.sos_id
            self._send(wire.encode(refusal))
            return
        if isinstance(frame, wire.Sos):
            self._told[str(raised.alert_id)] = raised.phone_status
            self._send(wire.encode(raised.frame()))
            if raised.phone_status in UNFINISHED:
                self._report_fast(str(raised.alert_id))
            if raised.created and raised.trip_marked:
                self._tell_trip()
        else:
            # Both PINs get these same frames, at once and in this order, and nothing about this
            # alert after them (DESIGN, duress): whoever holds the phone cannot tell which was used.
            self._told[str(alert_id)] = "cancelled"
            self._send(wire.encode({"type": "alert_status", "alert_id": str(alert_id), "status": "cancelled"}))
            self._report_slow(str(alert_id))
            self._tell_trip()  # a trip the alert marked goes on (either PIN)

    def _tell_trip(self) -> None:
        """An alert frame changed the user's trip (marked `alert`, or back to `active`): the phone
        and the watchers hear it from the trip listener, after the alert frame's own answer."""
        task = asyncio.create_task(self._read_and_tell_trip(), name="phone-trip-change")
        self._trip_tasks.add(task)
        task.add_done_callback(self._trip_tasks.discard)

    async def _read_and_tell_trip(self) -> None:
        try:
            async with db.autocommit(self._services.engine) as connection:
                trip = await trip_service.unfinished(connection=connection, user_id=self._device.user_id)
        except db.STORAGE_ERRORS as error:  # the watchers read it at their next recheck
            log.warning("trip change not told: %s", db.describe(error))
            return
        if trip is not None and self._services.trip_listener is not None:
            self._services.trip_listener.changed(trip)

    async def _trip_frame(self, frame) -> None:
        """A trip frame: answered on its own transaction, not queued behind the pings. Raises
        refusals.Refusal; a storage failure is answered `unavailable` (resend the frame)."""
        try:
            answer = await trip_frames.answer(frame, services=self._services, device=self._device)
        except db.STORAGE_ERRORS as error:
            log.error("trip frame not committed, storage unavailable: %s", db.describe(error))
            raise refusals.Unavailable("not stored; resend the frame") from None
        if "trip_id" in answer and "status" in answer:
            self._trips_told[answer["trip_id"]] = answer["status"]
        self._send(wire.encode(answer))

    def _in_alert(self) -> bool:
        """Whether this user has an unfinished alert (after a duress cancel too, though the phone was
        told otherwise): its pings are never shed. From the fan-out, which hears every process's
        alerts, or this phone's own SOS that the fan-out may not have heard of yet."""
        return self._services.fanout.in_alert(self._user_key) or bool(self._fast)

    def _report_fast(self, alert_id: str) -> None:
        if alert_id not in self._fast:
            self._fast.add(alert_id)
            self._send(wire.encode({"type": "report_interval",
                                    "interval_s": self._services.settings.sos_report_interval_s,
                                    "alert_id": alert_id}))

    def _report_slow(self, alert_id: str) -> None:
        if alert_id in self._fast:
            self._fast.discard(alert_id)
            self._send(wire.encode({"type": "report_interval", "interval_s": None, "alert_id": alert_id}))

    def _on_event(self, event: Event) -> None:
        """What the dispatchers did to this user's alert (from the hub), as the phone may hear it:
        by its phone status, which a duress cancel leaves at `cancelled` whatever follows.
        `cancelled` itself is only ever told in answer to the phone's own cancel."""
        if event.type == "alert_location" or self._closing:
            return
        if event.type == PHONE_FRAME:
            if event.frame.get("type") == ACCOUNT_ERASED:
                self._close_erased()
                return
            if event.frame.get("type") == SOCKET_TAKEN_OVER:
                other = (event.frame.get("opened_ns", 0), event.frame.get("socket", ""))
                if event.frame.get("device_id") == str(self._device.device_id) and other > self._opened:
                    self._close_taken_over()
                return
            self._send(event.text)
            return
        if event.trip_id is not None:
            # A change of the user's trip that this phone did not ask for (its own frames were
            # answered before the event left): told once per status.
            frame = event.frame["phone"]
            if self._trips_told.get(event.trip_id) != frame["status"]:
                self._trips_told[event.trip_id] = frame["status"]
                self._send(wire.encode(frame))
            return
        alert = event.frame["alert"]
        status = event.phone_status
        if status is not None and status != "cancelled" and self._told.get(event.alert_id) != status:
            self._told[event.alert_id] = status
            frame = {"type": "alert_status", "alert_id": event.alert_id, "status": status}
            by = alert.get("resolved_by") if status == "resolved" else alert.get("acknowledged_by")
            if by and status in ("acknowledged", "resolved"):
                frame["by"] = by
            self._send(wire.encode(frame))
        if status in UNFINISHED:
            self._report_fast(event.alert_id)
        else:
            self._report_slow(event.alert_id)

    def _close_erased(self) -> None:
        """The account was erased (`privacy.erasure`, in any process): its token is gone, so is
        this socket (1008, as a bad token); the reader then sees the disconnect and ends."""
        self._closing = True
        task = asyncio.create_task(self._ws.close(errors.CLOSE_POLICY, "the account was erased"),
                                   name="phone-erased")
        self._trip_tasks.add(task)
        task.add_done_callback(self._trip_tasks.discard)

    def _close_taken_over(self) -> None:
        """A newer socket of this device opened in another process (`SOCKET_TAKEN_OVER`)."""
        self._closing = True
        task = asyncio.create_task(self.close_replaced(), name="phone-taken-over")
        self._trip_tasks.add(task)
        task.add_done_callback(self._trip_tasks.discard)

    def _refused(self, refusal: refusals.Refusal) -> None:
        """A queued ping that PostgreSQL refused: its error goes out before the ack passing it."""
        self._send(wire.encode(refusal.frame()))

    def _send(self, text: str) -> None:
        self._outbox.append(text)
        self._kick()

    def _kick(self) -> None:
        """Something to send (a frame, a moved ack, a failed ledger): make sure a writer runs."""
        if self._closing or self.ledger is None or (self._writer is not None and not self._writer.done()):
            return
        self._writer = asyncio.create_task(self._drain(), name="phone-writer")

    async def _drain(self) -> None:
        try:
            while True:
                if len(self._outbox) > MAX_OUTBOX_FRAMES:
                    await self._ws.close(errors.CLOSE_POLICY, "not reading its frames")
                    return
                if self._outbox:
                    await self._ws.send_text(self._outbox.popleft())
                elif self.ledger.progress != self._acked_progress:
                    # Due even if the seq did not move: a duplicate or a resent ping was stored.
                    self._acked_progress = self.ledger.progress
                    await self._ws.send_text(wire.ack(self.ledger.acked_seq))
                elif self.ledger.failed:
                    await self._ws.close(errors.CLOSE_UNAVAILABLE, "storage unavailable; resend from acked_seq")
                    return
                else:
                    return
        except (WebSocketDisconnect, RuntimeError, OSError) as error:
            # The phone went away mid-send; the reader sees the disconnect and ends the session.
            if self._ws.client_state != WebSocketState.DISCONNECTED:
                log.debug("phone writer stopped: %s", type(error).__name__)


async def endpoint(websocket: WebSocket) -> None:
    await PhoneSession(websocket, websocket.app.state.services).run()
