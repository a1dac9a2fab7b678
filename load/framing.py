"""`python -m load framing`: the phone socket's framing, decided by measurement (issue 12 item 4).

The same parse-and-ack server (every text frame decoded by `wire.decode_frame`, answered with its
ack at once, nothing stored: load/baseline.py's endpoint) runs on each candidate framing, one at a
time, under the same fleet, interleaved A B C D A B C D; each run reports the server's CPU per
acked frame (single pings, so per ping). Candidates: uvicorn with `websockets-sansio` (today's),
uvicorn's legacy `websockets`, uvicorn's `wsproto` (skipped when the package is not installed),
and picows (Cython framing, its own asyncio server: no ASGI, no FastAPI around it).
"""

import importlib.util
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace

from load import fleet
from load.cpuperping import PingCpuMeter
from load.processes import free_port
from load.stats import table

CANDIDATES = {
    "uvicorn websockets-sansio (today)": ("uvicorn", "websockets-sansio"),
    "uvicorn websockets (legacy)": ("uvicorn", "websockets"),
    "uvicorn wsproto": ("uvicorn", "wsproto"),
    "picows": ("picows", None),
}
STARTUP_TIMEOUT_S = 20.0


def serve_uvicorn(port: int, ws: str) -> None:
    """The baseline app on uvicorn with the production socket settings but the given framing."""
    import uvicorn

    from load.baseline import create_app

    uvicorn.run(create_app(), host="127.0.0.1", port=port, loop="uvloop", ws=ws, ws_max_size=65536,
                ws_ping_interval=20, ws_ping_timeout=20, ws_per_message_deflate=False, access_log=False,
                log_level="warning", backlog=4096)


def serve_picows(port: int) -> None:
    """The same parse-and-ack on picows: a listener per connection, a callback per frame."""
    import uuid

    import uvloop
    from picows import WSListener, WSMsgType, ws_create_server

    from server.core import refusals, wire

    class Phone(WSListener):
        def on_ws_connected(self, transport) -> None:
            transport.send(WSMsgType.TEXT, wire.encode({"type": "welcome", "user_id": str(uuid.uuid4()),
                                                        "acked_seq": -1}).encode())

        def on_ws_frame(self, transport, frame) -> None:
            if frame.msg_type == WSMsgType.TEXT:
                try:
                    parsed = wire.decode_frame(frame.get_payload_as_bytes())
                    pings = [parsed] if isinstance(parsed, wire.Ping) else [wire.decode_ping(raw)
                                                                            for raw in parsed.pings]
                except refusals.Refusal as refusal:
                    transport.send(WSMsgType.TEXT, wire.encode(refusal.frame()).encode())
                    return
                transport.send(WSMsgType.TEXT, wire.ack(max(ping.seq for ping in pings)).encode())
            elif frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()

    async def main() -> None:
        server = await ws_create_server(lambda request: Phone(), "127.0.0.1", port, max_frame_size=65536,
                                        enable_auto_ping=True, auto_ping_idle_timeout=20, backlog=4096)
        await server.serve_forever()

    uvloop.run(main())


def _start(kind: str, ws: str | None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    call = f"serve_uvicorn({port}, {ws!r})" if kind == "uvicorn" else f"serve_picows({port})"
    process = subprocess.Popen([sys.executable, "-c", f"from load.framing import *; {call}"], env=os.environ)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} {ws} exited during start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{kind} {ws} did not listen in time")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def available() -> dict[str, tuple[str, str | None]]:
    return {label: c for label, c in CANDIDATES.items()
            if not (c[1] == "wsproto" and importlib.util.find_spec("wsproto") is None)}


def run(*, phones: int = 1000, rate_hz: float = 10.0, duration_s: float = 15.0, warmup_s: float = 5.0,
        rounds: int = 2) -> list[dict[str, str]]:
    candidates = available()
    for label in CANDIDATES.keys() - candidates.keys():
        print(f"skipped: {label} (its package is not installed)", flush=True)
    plan = fleet.Plan(url="", rate_hz=rate_hz, batch=1, duration_s=duration_s, warmup_s=warmup_s)
    tokens = [f"framing-{i}" for i in range(phones)]  # the parse-and-ack servers check no token
    rows = []
    for round_index in range(rounds):
        for label, (kind, ws) in candidates.items():
            process, port = _start(kind, ws)
            try:
                print(f"running: {phones} phones x {rate_hz:g} Hz against {label} (round {round_index + 1}) ...",
                      flush=True)
                meter = PingCpuMeter(process.pid, database="-")
                result = fleet.run(tokens, replace(plan, url=f"http://127.0.0.1:{port}"), meter=meter)
            finally:
                _stop(process)
            seconds = meter.seconds
            rows.append({"framing": label, "round": str(round_index + 1), "acked frames/s": f"{result.acked_per_s:,.0f}",
                         "p99 ms": f"{result.percentile_ms(0.99):.1f}",
                         "errors": ", ".join(f"{c}={n}" for c, n in sorted(result.errors.items())) or "0",
                         "server cpu": f"{seconds['server'] / seconds['wall']:.0%}",
                         "server µs/frame": f"{1e6 * seconds['server'] / max(result.acked_pings, 1):.1f}"})
            print(table(rows[-1:]), flush=True)
    print("\nparse-and-ack, server CPU per frame, each run\n" + table(rows), flush=True)
    return rows
