"""The phone socket `/v1/phone`: authenticate, welcome, then pings in and acks out.

The reader (this endpoint's task) decodes and judges frames and queues pings
for the group commit; it never waits for a commit. What goes back to the phone
(errors, acks) is drained by a short-lived writer task started only when there
is something to send, so a slow phone delays only itself and an idle phone
costs no task.
"""

import asyncio
import logging
from collections import deque

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from server import auth, errors, history, wire
from server.ingest import STORAGE_ERRORS, describe
from server.intake import Intake, open_intake
from server.ledger import Ledger
from server.services import Services

log = logging.getLogger(__name__)

# Frames waiting for a phone that does not read; past this it is dropped.
MAX_OUTBOX_FRAMES = 1000


class PhoneSession:
    def __init__(self, websocket: WebSocket, services: Services):
        self._ws = websocket
        self._services = services
        self._outbox: deque[str] = deque()
        self._writer: asyncio.Task | None = None
        self._sent_ack = -1
        self._closing = False
        self.ledger: Ledger | None = None

    async def run(self) -> None:
        await self._ws.accept()
        try:
            device = await self._authenticate()
            if device is None:
                await self._ws.close(errors.CLOSE_POLICY, "unauthorized")
                return
            async with self._services.engine.connect() as connection:
                acked_seq = await history.acked_seq(connection=connection, device_id=device.device_id)
                self.ledger = Ledger(acked_seq, self._kick)
                intake = await open_intake(connection=connection, services=self._services, device=device,
                                           ledger=self.ledger)
        except STORAGE_ERRORS as error:
            log.error("phone session cannot start, storage unavailable: %s", describe(error))
            await self._ws.close(errors.CLOSE_UNAVAILABLE, "storage unavailable; retry later")
            return
        self._sent_ack = acked_seq
        await self._ws.send_text(
            wire.encode({"type": "welcome", "user_id": str(device.user_id), "acked_seq": acked_seq})
        )
        try:
            await self._read(intake)
        finally:
            self._closing = True
            if self._writer is not None and not self._writer.done():
                self._writer.cancel()
                await asyncio.gather(self._writer, return_exceptions=True)

    async def _authenticate(self) -> auth.Device | None:
        """Bearer header on the upgrade, else a `hello` frame within the hello timeout."""
        engine = self._services.engine
        token = auth.bearer(self._ws.headers.get("authorization"))
        if token is not None:
            return await auth.device_for(engine=engine, token=token)
        try:
            async with asyncio.timeout(self._services.settings.hello_timeout_s):
                message = await self._ws.receive()
        except TimeoutError:
            return None
        text = message.get("text")
        if text is None:
            return None
        try:
            frame = wire.decode_frame(text)
        except wire.FrameError:
            return None
        return await auth.device_for(engine=engine, token=frame.token) if isinstance(frame, wire.Hello) else None

    async def _read(self, intake: Intake) -> None:
        ingest = self._services.ingest
        max_errors = self._services.settings.max_consecutive_errors
        consecutive_errors = 0
        while not self.ledger.failed:
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            try:
                items = self._handle(intake, message)
            except wire.FrameError as refusal:
                self._send(wire.encode(refusal.frame()))
                consecutive_errors += 1
                if consecutive_errors >= max_errors:
                    await self._ws.close(errors.CLOSE_POLICY, "too many refused frames")
                    return
                continue
            consecutive_errors = 0
            if items:
                await ingest.submit(items)

    def _handle(self, intake: Intake, message: dict) -> list:
        text = message.get("text")
        if text is None:
            raise wire.FrameError("bad_json", "frames must be JSON text, not binary")
        frame = wire.decode_frame(text)
        if isinstance(frame, wire.Ping):
            items, refusals = intake.take((frame,))
        elif isinstance(frame, wire.Batch):
            items, refusals = intake.take(frame.pings)
        else:
            raise wire.FrameError("conflict", "already authenticated", field="type")
        for refusal in refusals:
            self._send(wire.encode(refusal.frame()))
        return items

    def _send(self, text: str) -> None:
        self._outbox.append(text)
        self._kick()

    def _kick(self) -> None:
        """Something to send (a frame, a moved ack, a failed ledger): make sure a writer runs."""
        if self._closing or (self._writer is not None and not self._writer.done()):
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
                elif self.ledger.failed:
                    await self._ws.close(errors.CLOSE_UNAVAILABLE, "storage unavailable; resend from acked_seq")
                    return
                elif self.ledger.acked_seq > self._sent_ack:
                    self._sent_ack = self.ledger.acked_seq
                    await self._ws.send_text(wire.ack(self._sent_ack))
                else:
                    return
        except (WebSocketDisconnect, RuntimeError, OSError) as error:
            # The phone went away mid-send; the reader sees the disconnect and ends the session.
            if self._ws.client_state != WebSocketState.DISCONNECTED:
                log.debug("phone writer stopped: %s", type(error).__name__)


async def endpoint(websocket: WebSocket) -> None:
    await PhoneSession(websocket, websocket.app.state.services).run()
