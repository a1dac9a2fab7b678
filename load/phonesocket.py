"""A lean client websocket for the simulated fleet: `websockets`' Sans-I/O protocol on an
asyncio Protocol.

The load generator shares the machine with the server it measures, so every cycle it
spends is taken from the server. The `websockets` asyncio client runs a reader task and
several awaits per message; here a received frame is one callback and a send is one
write, with no task per phone. Text frames go to `on_text`; pings are answered by the
protocol; a close or a lost connection calls `on_closed` once.
"""

import asyncio
from collections.abc import Callable
from urllib.parse import urlsplit

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

OPEN_TIMEOUT_S = 30.0


class PhoneSocket(asyncio.Protocol):
    def __init__(self, uri: str, token: str | None, *, on_text: Callable[[bytes], None],
                 on_closed: Callable[[], None]):
        self._ws = ClientProtocol(parse_uri(uri))
        request = self._ws.connect()
        if token is not None:  # a watcher's socket has its link in the URL instead
            request.headers["Authorization"] = f"Bearer {token}"
        self._ws.send_request(request)
        self._on_text = on_text
        self._on_closed = on_closed
        self._transport: asyncio.Transport | None = None
        self.opened: asyncio.Future = asyncio.get_running_loop().create_future()

    @classmethod
    async def connect(cls, uri: str, token: str | None, *, on_text: Callable[[bytes], None],
                      on_closed: Callable[[], None]) -> "PhoneSocket":
        """Open the socket and complete the handshake (raises OSError, TimeoutError or the
        protocol's handshake error)."""
        parts = urlsplit(uri)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(OPEN_TIMEOUT_S):
            _, socket = await loop.create_connection(
                lambda: cls(uri, token, on_text=on_text, on_closed=on_closed), parts.hostname, parts.port)
            try:
                await socket.opened
            except BaseException:
                socket.abort()
                raise
        return socket

    @property
    def is_open(self) -> bool:
        return self._ws.state is State.OPEN

    def connection_made(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._write()

    def data_received(self, data: bytes) -> None:
        self._ws.receive_data(data)
        for event in self._ws.events_received():
            if isinstance(event, Frame):
                if event.opcode is Opcode.TEXT:
                    self._on_text(event.data)
            elif isinstance(event, Response) and not self.opened.done():
                if self._ws.handshake_exc is None:
                    self.opened.set_result(None)
                else:
                    self.opened.set_exception(self._ws.handshake_exc)
        self._write()

    def connection_lost(self, exc: Exception | None) -> None:
        self._ws.receive_eof()
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed during the handshake"))
        self._on_closed()

    def send_text(self, text: str) -> None:
        """Send a text frame now; ConnectionError if the socket is no longer open."""
        if not self.is_open:
            raise ConnectionError("socket not open")
        self._ws.send_text(text.encode())
        self._write()

    def close(self) -> None:
        if self.is_open:
            self._ws.send_close()
            self._write()
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _write(self) -> None:
        if self._transport is None:
            return
        for data in self._ws.data_to_send():
            if data:
                self._transport.write(data)
            elif self._transport.can_write_eof():
                self._transport.write_eof()
