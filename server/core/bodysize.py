"""The request body bound: no route reads an HTTP body over `max_body_bytes`.

Without it every route read whatever came: a 60 MB `POST /v1/users`, unauthenticated, was
taken whole into memory and answered 201. `BodyLimit` is a pure ASGI middleware in front
of every route, so the bound holds before any dependency (credentials, JSON parsing) runs:

- a Content-Length over the bound is refused at once, the app never runs;
- a body without one (chunked) is counted as it arrives and refused as soon as the count
  passes the bound. The app then sees the client as gone (`http.disconnect`, as when a
  phone drops mid-upload) and whatever it answers after that is dropped: the refusal was
  the answer.

Either way nothing past the bound is held: uvicorn discards the rest of a body once its
response is complete, and the connection gate (server/core/gate.py) closes a connection whose
request does not arrive whole within `request_timeout_s`. The connection stays open
(keep-alive), so the client reads its 413 after sending, not a reset. Websocket frames
are bounded by uvicorn itself (`ws_max_size`); websocket and lifespan scopes pass through.
"""

import sys

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.core import errors, refusals


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, uploads: dict[tuple[str, str], int] | None = None):
        """`uploads`: (method, path) → a larger bound for the few routes that take a file."""
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.uploads = uploads or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        bound = self.uploads.get((scope["method"], scope["path"]), self.max_body_bytes)
        declared = _content_length(scope)
        if declared is not None and declared > bound:
            await _refuse(scope, send, max_body_bytes=bound)
            return
        await _CountedRequest(self, scope, receive, send, bound).run()


class _CountedRequest:
    """One request whose body is counted as the app reads it."""

    def __init__(self, limit: BodyLimit, scope: Scope, receive: Receive, send: Send, bound: int):
        self.limit, self.scope, self._receive, self._send = limit, scope, receive, send
        self.bound = bound
        self.received_bytes = 0
        self.response_started = False
        self.refused = False

    async def run(self) -> None:
        try:
            await self.limit.app(self.scope, self.receive, self.send)
        except ClientDisconnect:
            # The app read on after the refusal: the disconnect it met was ours, not an error.
            if not self.refused:
                raise

    async def receive(self) -> Message:
        if self.refused:
            return await _gone()
        message = await self._receive()
        if message["type"] == "http.request":
            self.received_bytes += len(message.get("body", b""))
            if self.received_bytes > self.bound:
                self.refused = True
                if not self.response_started:
                    await _refuse(self.scope, self._send, max_body_bytes=self.bound)
                return await _gone()
        return message

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.response_started = True
        await self._send(message)


async def _refuse(scope: Scope, send: Send, *, max_body_bytes: int) -> None:
    refusal = refusals.TooLarge(f"a request body holds at most {max_body_bytes} bytes")
    await errors.response(refusal)(scope, _gone, send)


async def _gone() -> Message:
    return {"type": "http.disconnect"}


def _content_length(scope: Scope) -> int | None:
    """The declared length, or None (chunked, or not a number: uvicorn's parser refuses those)."""
    value = Headers(scope=scope).get("content-length")
    if value is None or not value.isascii() or not value.isdigit():
        return None
    # More digits than any real body has: over every bound (and past int()'s digit limit).
    return int(value) if len(value) <= 18 else sys.maxsize
