"""Many connected phones that send nothing: what one idle connection costs the server."""

import asyncio
import json
import time

import websockets

from load.fleet import CONNECT_CONCURRENCY, ws_url


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise ValueError(f"no VmRSS for pid {pid}")


async def hold(url: str, tokens: list[str], *, server_pid: int | None, hold_s: float) -> dict:
    """Connect one phone per token, wait for every welcome, hold, and report memory per connection."""
    before = rss_kib(server_pid) if server_pid else None
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    sockets: list = []
    failures = 0

    async def connect(token: str) -> None:
        nonlocal failures
        async with gate:
            try:
                ws = await websockets.connect(ws_url(url), additional_headers={"Authorization": f"Bearer {token}"},
                                              compression=None, open_timeout=60)
                assert json.loads(await ws.recv())["type"] == "welcome"
                sockets.append(ws)
            except (OSError, websockets.WebSocketException, TimeoutError, AssertionError):
                failures += 1

    started = time.monotonic()
    await asyncio.gather(*(connect(token) for token in tokens))
    connect_s = time.monotonic() - started
    await asyncio.sleep(hold_s)
    after = rss_kib(server_pid) if server_pid else None
    alive = sum(1 for ws in sockets if ws.state is websockets.State.OPEN)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    report = {"connected": len(sockets), "alive after hold": alive, "failed": failures,
              "connect s": round(connect_s, 1)}
    if before is not None and after is not None and sockets:
        report.update({"server RSS before MiB": round(before / 1024, 1), "server RSS after MiB": round(after / 1024, 1),
                       "KiB per connection": round((after - before) / len(sockets), 1)})
    return report
