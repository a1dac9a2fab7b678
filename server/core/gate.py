"""The connection gate: no client holds a connection without sending a request, and the
server keeps descriptors free for the next one.

uvicorn's httptools protocol has no timeout of its own for a request being read: a
client that sends half an upgrade, or a body that never ends, holds its descriptor
for as long as it likes (measured: 200 half-sent upgrades all still open after 4 s;
1,100 of them against a process allowed 1,024 descriptors left a new phone's
`POST /v1/sos` unanswered). `GatedProtocol` wraps it:

- every request must arrive whole (headers and body, or the upgrade's headers)
  within `request_timeout_s` of its first byte (of the connection, for the first);
- a connection that has not yet sent a whole request, or idles between requests,
  is *pending*. When the process holds `max_connections`, the oldest pending one is
  closed to make room, so a new SOS, whose request arrives in one go, always gets a
  descriptor, and authenticated phone sockets (no longer pending) are never touched;
- one client address holds at most `max_pending_per_address` pending connections
  (its oldest is closed for a new one).

What it closed is logged as counts every `REPORT_EVERY_S`, never with addresses.
"""

import asyncio
import logging
import resource
import time

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from server.core.config import Settings
from server.core.ratelimit import client_key

log = logging.getLogger(__name__)

REPORT_EVERY_S = 10.0


def max_connections(settings: Settings) -> int:
    """The configured bound, or the descriptors this process may open less those it keeps for
    itself (pools, Redis, channels' clients, logs), and never less than half of them."""
    if settings.max_connections:
        return settings.max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(soft - settings.reserved_fds, soft // 2)


class Gate:
    """State shared by every connection of the process."""

    def __init__(self, *, limit: int, request_timeout_s: float, max_pending_per_address: int):
        self.limit = limit
        self.request_timeout_s = request_timeout_s
        self.max_pending_per_address = max_pending_per_address
        # Insertion order is age: the first entry is the oldest pending connection.
        self.pending: dict["GatedProtocol", str] = {}
        self.pending_by_address: dict[str, dict["GatedProtocol", None]] = {}
        self.closed = {"too slow": 0, "made room": 0, "over the address's share": 0}
        self._reported_at = time.monotonic()

    def wait(self, protocol: "GatedProtocol") -> None:
        """`protocol` has no request in progress: it may be closed to make room."""
        address = protocol.address
        self.pending[protocol] = address
        mine = self.pending_by_address.setdefault(address, {})
        mine[protocol] = None
        if len(mine) > self.max_pending_per_address:
            self.close(next(iter(mine)), "over the address's share")

    def settle(self, protocol: "GatedProtocol") -> None:
        address = self.pending.pop(protocol, None)
        if address is not None:
            mine = self.pending_by_address[address]
            mine.pop(protocol, None)
            if not mine:
                del self.pending_by_address[address]

    def make_room(self, open_connections: int) -> None:
        """Close the oldest pending connections until the process is within its bound."""
        while open_connections > self.limit and self.pending:
            self.close(next(iter(self.pending)), "made room")
            open_connections -= 1

    def close(self, protocol: "GatedProtocol", reason: str) -> None:
        self.settle(protocol)
        protocol.transport.abort()
        self.closed[reason] += 1
        self.report()

    def report(self) -> None:
        now = time.monotonic()
        if now - self._reported_at < REPORT_EVERY_S:
            return
        self._reported_at = now
        closed = {reason: count for reason, count in self.closed.items() if count}
        if closed:
            log.warning("connection gate closed %s in the last %.0f s (bound %d connections, %d pending now)",
                        ", ".join(f"{count} {reason}" for reason, count in closed.items()), REPORT_EVERY_S,
                        self.limit, len(self.pending))
        self.closed = dict.fromkeys(self.closed, 0)


class GatedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a request timeout and a share of the descriptors."""

    gate: Gate

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.address = client_key(self.client[0] if self.client else None)
        self._timer: asyncio.TimerHandle | None = None
        self.gate.wait(self)
        self._arm()
        # Counted after this one: what the server holds now, HTTP and websocket alike.
        self.gate.make_room(len(self.connections))

    def connection_lost(self, exc) -> None:
        self._disarm()
        self.gate.settle(self)
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._timer is None:
            self._arm()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()
        self.gate.settle(self)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.cycle.response_complete:
            self.gate.wait(self)  # idle between requests: uvicorn's keep-alive timeout bounds it

    def handle_websocket_upgrade(self) -> None:
        # The socket is the app's from here: the phone's hello timeout and keepalive bound it.
        self._disarm()
        self.gate.settle(self)
        super().handle_websocket_upgrade()

    def _arm(self) -> None:
        self._timer = self.loop.call_later(self.gate.request_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _too_slow(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            self.gate.close(self, "too slow")


def protocol_class(settings: Settings) -> type[GatedProtocol]:
    """The protocol class uvicorn builds per connection, bound to one gate for the process."""
    gate = Gate(limit=max_connections(settings), request_timeout_s=settings.request_timeout_s,
                max_pending_per_address=settings.max_pending_per_address)
    return type("GatedProtocol", (GatedProtocol,), {"gate": gate})
