"""The baseline: the same FastAPI websocket endpoint, same uvicorn stack and frame parsing,
answering every frame with an ack at once and storing nothing.

Full/baseline ratios measured in the same run hold on a noisy machine: they show
what durable storage costs on top of merely speaking the protocol.
"""

import secrets
import uuid

from fastapi import FastAPI, WebSocket

from server.core import refusals, wire


def create_app() -> FastAPI:
    app = FastAPI(title="Guardian load baseline")

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.post("/v1/users", status_code=201)
    async def create_user() -> dict:
        return {"user_id": str(uuid.uuid4()), "device_token": secrets.token_urlsafe(32)}

    @app.websocket("/v1/phone")
    async def phone(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(wire.encode({"type": "welcome", "user_id": str(uuid.uuid4()), "acked_seq": -1}))
        while True:
            message = await websocket.receive()
            text = message.get("text")
            if text is None:
                return
            try:
                frame = wire.decode_frame(text)
                pings = [frame] if isinstance(frame, wire.Ping) else [wire.decode_ping(raw) for raw in frame.pings]
            except refusals.Refusal as refusal:
                await websocket.send_text(wire.encode(refusal.frame()))
                continue
            await websocket.send_text(wire.ack(max(ping.seq for ping in pings)))

    return app
