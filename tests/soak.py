"""Jepsen-style runs for pings: phones with an offline buffer stream while faults land,
then PostgreSQL is asked what survived.

Each simulated phone makes a fix at its rate whether or not it is connected, keeps
every fix until an ack covers it (a fix refused `rate_limited` is kept and sent
again), and on every (re)connect drops its buffer up to the welcome's `acked_seq`
and resends the rest under the same seqs. After the run every phone drains its
buffer, and the invariants are counted from PostgreSQL:

- lost: a seq at or below an ack the phone received, not stored (and not refused
  for good with an error);
- gaps: a seq at or below a welcome's `acked_seq`, not stored (the phone dropped it);
- duplicates: one position (time and place) stored under two seqs;
- unsettled: fixes still in a buffer when the run's time was up.

`run(...)` returns the `Figures`; `print(figures)` is the soak's report, one line.
"""

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
import websockets
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.servers import ServerProcess, bearer

TAIPEI_101 = (25.0339, 121.5645)
RECONNECT_PAUSE_S = 0.2
RESEND_AFTER_S = 0.5


@dataclass
class Figures:
    scenario: str
    phones: int = 0
    fixes_made: int = 0
    frames_sent: int = 0
    acks: int = 0
    connects: int = 0
    closes: dict[str, int] = field(default_factory=dict)
    rate_limited: int = 0
    refused: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    gaps: int = 0
    duplicates: int = 0
    unsettled: int = 0

    @property
    def clean(self) -> bool:
        return not (self.lost or self.gaps or self.duplicates or self.unsettled)

    def __str__(self) -> str:
        return (f"soak {self.scenario}: {self.phones} phones, {self.fixes_made} fixes, {self.frames_sent} frames "
                f"sent, {self.acks} acks, {self.connects} connects, closes {self.closes}, {self.rate_limited} "
                f"rate_limited, {self.refused} refused; faults {self.faults}; lost {self.lost}, gaps {self.gaps}, "
                f"duplicates {self.duplicates}, unsettled {self.unsettled}")


class Phone:
    def __init__(self, server: ServerProcess, user_id: str, token: str, index: int, rate_hz: float):
        self.user_id = user_id
        self._url = f"{server.ws_url}/v1/phone"
        self._token = token
        self._index = index
        self._interval_s = 1 / rate_hz
        self._buffer: dict[int, str] = {}  # seq → frame, oldest first
        self._held: dict[int, float] = {}  # seq refused rate_limited → when to send it again
        self._wake = asyncio.Event()
        self.made = 0
        self.highest_ack = -1
        self.highest_welcome = -1
        self.refused: set[int] = set()
        self.sent = self.acks = self.connects = self.rate_limited = 0
        self.closes: dict[str, int] = {}

    async def make(self, until: float) -> None:
        """One fix per interval until `until`, connected or not: a walk north, unique per phone."""
        while time.monotonic() < until:
            seq = self.made
            self._buffer[seq] = json.dumps({
                "type": "ping", "seq": seq, "ts": int(time.time() * 1000), "acc": 5.0,
                "lat": TAIPEI_101[0] + seq * 1e-6, "lon": TAIPEI_101[1] + self._index * 1e-4})
            self.made += 1
            self._wake.set()
            await asyncio.sleep(self._interval_s)

    async def stream(self, *, making_until: float, deadline: float) -> None:
        """Connect, resend, stream; reconnect after every close; done once the buffer drained."""
        while time.monotonic() < deadline and (time.monotonic() < making_until or self._buffer):
            try:
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    await self._session(making_until)
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError) as closed:
                code = getattr(getattr(closed, "rcvd", None), "code", None)
                key = str(code) if code is not None else type(closed).__name__
                self.closes[key] = self.closes.get(key, 0) + 1
                await asyncio.sleep(RECONNECT_PAUSE_S)

    async def _session(self, making_until: float) -> None:
        async with websockets.connect(self._url, additional_headers=bearer(self._token), open_timeout=5,
                                      close_timeout=1) as ws:
            welcome = json.loads(await ws.recv())
            assert welcome["type"] == "welcome", welcome
            self.connects += 1
            self.highest_welcome = max(self.highest_welcome, welcome["acked_seq"])
            self._drop_through(welcome["acked_seq"])
            reader = asyncio.create_task(self._read(ws))
            try:
                sent_through = -1
                while time.monotonic() < making_until or self._buffer:
                    if reader.done():
                        reader.result()  # raises ConnectionClosed
                    now = time.monotonic()
                    for seq, frame in list(self._buffer.items()):
                        if seq > sent_through or self._held.get(seq, now + 1) <= now:
                            self._held.pop(seq, None)
                            await ws.send(frame)
                            self.sent += 1
                            sent_through = max(sent_through, seq)
                    self._wake.clear()
                    try:
                        async with asyncio.timeout(0.05):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

    async def _read(self, ws) -> None:
        async for message in ws:
            frame = json.loads(message)
            if frame["type"] == "ack":
                self.acks += 1
                self.highest_ack = max(self.highest_ack, frame["seq"])
                self._drop_through(frame["seq"])
            elif frame["type"] == "error" and frame["code"] == "rate_limited" and ("seq" in frame or
                                                                                 "first_seq" in frame):
                # One seq, or the range of pings a socket told to wait dropped unread.
                first, last = frame.get("first_seq", frame.get("seq")), frame.get("last_seq", frame.get("seq"))
                self.rate_limited += 1
                for seq in range(first, last + 1):
                    self._held[seq] = time.monotonic() + RESEND_AFTER_S
            elif frame["type"] == "error" and "seq" in frame:
                self.refused.add(frame["seq"])
                self._buffer.pop(frame["seq"], None)
            self._wake.set()

    def _drop_through(self, seq: int) -> None:
        """Acked (or stored, says the welcome): no longer the phone's to keep, unless refused
        `rate_limited` (the ack passed over it, but it is not stored)."""
        for buffered in [buffered for buffered in self._buffer if buffered <= seq and buffered not in self._held]:
            del self._buffer[buffered]

    @property
    def unsettled(self) -> int:
        return len(self._buffer)


async def count(engine: AsyncEngine, phones: list[Phone], figures: Figures) -> None:
    """The invariants, from PostgreSQL."""
    async with engine.connect() as connection:
        for phone in phones:
            rows = (await connection.execute(
                sa.text("SELECT seq, ST_Y(location) AS lat, ST_X(location) AS lon, device_ts FROM pings "
                        "JOIN devices USING (device_id) WHERE devices.user_id = :user_id"),
                {"user_id": phone.user_id})).all()
            stored = {row.seq for row in rows}
            settled = stored | phone.refused
            figures.lost += sum(1 for seq in range(phone.highest_ack + 1) if seq not in settled)
            figures.gaps += sum(1 for seq in range(phone.highest_welcome + 1) if seq not in settled)
            figures.duplicates += len(rows) - len({(row.lat, row.lon, row.device_ts) for row in rows})
            figures.unsettled += phone.unsettled
            figures.fixes_made += phone.made
            figures.frames_sent += phone.sent
            figures.acks += phone.acks
            figures.connects += phone.connects
            figures.rate_limited += phone.rate_limited
            figures.refused += len(phone.refused)
            for code, times in phone.closes.items():
                figures.closes[code] = figures.closes.get(code, 0) + times


async def run(scenario: str, *, server: ServerProcess, engine: AsyncEngine, users: list[tuple[str, str]],
              stream_s: float, rate_hz: float, fault: Callable[[], Awaitable[str]], fault_every_s: float,
              drain_s: float = 30.0) -> Figures:
    """Stream from one phone per user for `stream_s`, awaiting `fault()` (which returns the
    fault's name) every `fault_every_s`; let the phones drain; count."""
    figures = Figures(scenario, phones=len(users))
    phones = [Phone(server, user_id, token, index, rate_hz) for index, (user_id, token) in enumerate(users)]
    making_until = time.monotonic() + stream_s
    deadline = making_until + drain_s

    async def inject() -> None:
        await asyncio.sleep(min(1.0, fault_every_s))
        while time.monotonic() < making_until - 0.5:
            name = await fault()
            figures.faults[name] = figures.faults.get(name, 0) + 1
            await asyncio.sleep(fault_every_s)

    await asyncio.gather(inject(), *(phone.make(making_until) for phone in phones),
                         *(phone.stream(making_until=making_until, deadline=deadline) for phone in phones))
    await count(engine, phones, figures)
    return figures
