"""What a hostile-input test watches besides its own answers: the server's log, and a
well-behaved phone that streams meanwhile and must keep getting its acks."""

import asyncio
import json
import re
import sys
import threading
import time
from pathlib import Path

import websockets

from tests.servers import ServerProcess, bearer

# What a log line must never hold: a traceback, SQLAlchemy's bound parameters, or what
# the hostile tests send as personal data.
LEAKS = re.compile(r"Traceback|\[parameters:|Exception in ASGI|\+8869|0912345678|\\x00|\x00")


class LoggedServer(ServerProcess):
    """A server whose stdout and stderr go to `log_path`, for the test to read."""

    def __init__(self, env: dict[str, str], log_path: Path):
        super().__init__(env)
        self.log_path = log_path
        # exec: the shell becomes the server, so stop() and kill() reach it.
        self.argv = ["/bin/sh", "-c", 'exec "$0" -m server serve >>"$1" 2>&1', sys.executable, str(log_path)]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def leaks(self) -> list[str]:
        """Every log line that shows a traceback or request data."""
        return [line for line in self.log().splitlines() if LEAKS.search(line)]


class SteadyPhone:
    """A phone streaming one ping every `interval_s` on its own socket, in a thread of its own
    (so a test's pauses do not stall it), recording how long each ack took."""

    def __init__(self, ws_url: str, token: str, *, interval_s: float = 0.1):
        self._url, self._token, self._interval_s = ws_url, token, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._stream()), daemon=True)
        self.sent: dict[int, float] = {}
        self.ack_latencies_s: list[float] = []
        self.acked_seq = -1
        self.trouble: list[str] = []

    def __enter__(self) -> "SteadyPhone":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    async def _stream(self) -> None:
        try:
            async with websockets.connect(f"{self._url}/v1/phone", additional_headers=bearer(self._token)) as ws:
                self.acked_seq = json.loads(await ws.recv())["acked_seq"]
                reader = asyncio.create_task(self._read(ws))
                seq = self.acked_seq + 1
                while not self._stop.is_set():
                    self.sent[seq] = time.monotonic()
                    await ws.send(json.dumps({"type": "ping", "seq": seq, "ts": int(time.time() * 1000),
                                              "lat": 25.0339 + seq * 1e-5, "lon": 121.5645, "acc": 5.0}))
                    seq += 1
                    await asyncio.sleep(self._interval_s)
                await self._settle(seq - 1)
                reader.cancel()
        except (OSError, websockets.ConnectionClosed) as error:
            self.trouble.append(repr(error))

    async def _settle(self, last_seq: int, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.acked_seq < last_seq and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def _read(self, ws) -> None:
        async for text in ws:
            frame = json.loads(text)
            if frame["type"] != "ack":
                self.trouble.append(f"unexpected frame {frame['type']}")
                continue
            now = time.monotonic()
            for seq in range(self.acked_seq + 1, frame["seq"] + 1):
                self.ack_latencies_s.append(now - self.sent.pop(seq))
            self.acked_seq = max(self.acked_seq, frame["seq"])

    def unacked(self) -> list[int]:
        return sorted(self.sent)
