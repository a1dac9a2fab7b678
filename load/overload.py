"""`python -m load overload`: the phone ingest's capacity, then twice and half of it (issue 12).

(a) Capacity C, the sustained acked single pings/s of `phones` phones: a short ramp of
    open-loop rates (phones not resending), doubling until the server no longer keeps
    up, then bisecting. A rate is sustained when nearly all of it is acked within the
    window with a bounded ack p99. Offering far above and reading the goodput would
    measure the shedding (and the cheaper batches the refused phones resend), not
    what one process stores of single frames, which is what 2 x C and C / 2 are
    relative to.
(b) 2 x C offered by phones that honour `retry_after_ms` as the app does: goodput / C
    and the event loop's lag p99 from the server's `/healthz` (its last 10 s, polled
    while overloaded; a poll that times out counts as its timeout).
(c) C / 2 offered: CPU µs per committed ping, of the server and of PostgreSQL
    (`load.cpu`), i.e. what a ping costs away from overload.
"""

import asyncio
import threading
import time
from dataclasses import replace

import httpx

from load import fleet
from load.cpu import CpuMeter
from load.stats import FleetResult, table

SUSTAINED_SHARE = 0.95  # acked over offered
SUSTAINED_P99_MS = 1000.0
HEALTHZ_TIMEOUT_S = 5.0


class RawCpuMeter(CpuMeter):
    """The CPU meter, keeping the seconds each party used (for µs per ping)."""

    def stop(self) -> dict[str, str]:
        last = self._sample()
        self.wall_s = last[0] - self._first[0]
        self.server_s, self.postgres_s, self.load_s = (b - a for a, b in zip(self._first[1:], last[1:]))
        return {name: f"{used_s / self.wall_s:.0%}" for name, used_s in
                (("server cpu", self.server_s), ("postgres cpu", self.postgres_s), ("load cpu", self.load_s))}


class LagPoller:
    """Polls the server's `/healthz` `loop_lag_ms` once a second in a thread while a run goes on."""

    def __init__(self, url: str):
        self._url = url
        self._stop = threading.Event()
        self.p99_ms: list[float] = []
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> "LagPoller":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(HEALTHZ_TIMEOUT_S + 2)

    def _poll(self) -> None:
        with httpx.Client(timeout=HEALTHZ_TIMEOUT_S) as client:
            while not self._stop.wait(1.0):
                try:
                    lag = client.get(f"{self._url}/healthz").json().get("loop_lag_ms") or {}
                    self.p99_ms.append(float(lag.get("p99", "nan")))
                except httpx.TransportError:
                    self.p99_ms.append(HEALTHZ_TIMEOUT_S * 1000)


def _run(tokens: list[str], plan: fleet.Plan, server_pid: int, nice: int = 0) -> tuple[FleetResult, RawCpuMeter]:
    meter = RawCpuMeter(server_pid)
    return fleet.run(tokens, plan, meter=meter, nice=nice), meter


def _sustained(result: FleetResult, offered_per_s: float) -> bool:
    return (result.acked_per_s >= SUSTAINED_SHARE * offered_per_s
            and result.percentile_ms(0.99) <= SUSTAINED_P99_MS)


def capacity(tokens: list[str], plan: fleet.Plan, server_pid: int, *, steps: int = 3,
             wait=lambda: None, nice: int = 0) -> tuple[float, list[dict]]:
    """C by a ramp of single-ping rates (doubling from 1 Hz per phone, then `steps` bisections):
    the best acked/s among the sustained rates. Returns it and one row per rate tried."""
    rows, best, low, high = [], 0.0, 0.0, None
    rate_hz = 1.0
    for _ in range(12 + steps):
        result, meter = _run(tokens, replace(plan, rate_hz=rate_hz, honour_retry=False), server_pid, nice)
        wait()
        offered = len(tokens) * rate_hz
        ok = _sustained(result, offered)
        rows.append({"phase": f"ramp {rate_hz:.2f} Hz", **_row(result, meter), "sustained": str(ok)})
        print(table(rows[-1:]), flush=True)
        if ok:
            best, low = max(best, result.acked_per_s), rate_hz
        else:
            high = rate_hz
        if high is None:
            rate_hz *= 2
        elif high - low <= high / 2 ** (steps + 1) or steps == 0:
            break
        else:
            rate_hz = (low + high) / 2
            steps -= 1
    return best, rows


def _row(result: FleetResult, meter: RawCpuMeter) -> dict[str, str]:
    stored = max(result.acked_pings, 1)
    return {
        "offered/s": f"{result.offered_per_s:,.0f}",
        "acked/s": f"{result.acked_per_s:,.0f}",
        "refused/s": f"{result.refused_per_s:,.0f}",
        "p50 ms": f"{result.percentile_ms(0.5):.0f}",
        "p99 ms": f"{result.percentile_ms(0.99):.0f}",
        "server cpu": f"{meter.server_s / meter.wall_s:.0%}",
        "postgres cpu": f"{meter.postgres_s / meter.wall_s:.0%}",
        "µs/ping server+pg": f"{1e6 * (meter.server_s + meter.postgres_s) / stored:.0f}",
    }


def drained(url: str, limit_s: float = 120.0) -> None:
    """Wait until the server stored its backlog (its `/healthz` queue is empty), so that a run's
    leftovers do not load the next."""
    deadline = time.monotonic() + limit_s
    with httpx.Client(timeout=HEALTHZ_TIMEOUT_S) as client:
        while time.monotonic() < deadline:
            try:
                if client.get(f"{url}/healthz").json().get("ingest_queued_rows", 0) == 0:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)


def run_overload(*, url: str, server_pid: int, phones: int = 2000, duration_s: float = 15.0,
                 warmup_s: float = 3.0, capacity_per_s: float | None = None, wait=None) -> list[dict]:
    """(a), (b) and (c) above against the server at `url` (pid `server_pid`); `wait()` runs after each
    run (by default until the server's backlog is stored). Returns the rows, printed as they come."""
    wait = wait or (lambda: drained(url))
    tokens = asyncio.run(fleet.create_users(url, phones))
    plan = fleet.Plan(url=url, rate_hz=1.0, batch=1, duration_s=duration_s, warmup_s=warmup_s)
    rows: list[dict] = []
    if capacity_per_s is None:
        ramp_plan = replace(plan, duration_s=min(duration_s, 8.0), warmup_s=min(warmup_s, 2.0))
        capacity_per_s, ramp = capacity(tokens, ramp_plan, server_pid, wait=wait)
        rows += ramp
    print(f"capacity C = {capacity_per_s:,.0f} acked single pings/s from {phones} phones", flush=True)
    for phase, factor in (("2 x C", 2.0), ("C / 2", 0.5)):
        rate_hz = factor * capacity_per_s / phones
        with LagPoller(url) as lag:
            result, meter = _run(tokens, replace(plan, rate_hz=rate_hz, honour_retry=True), server_pid)
        wait()
        during = sorted(lag.p99_ms)
        rows.append({"phase": phase, **_row(result, meter),
                     "goodput / C": f"{result.acked_per_s / capacity_per_s:.2f}" if capacity_per_s else "-",
                     "loop lag p99 ms (worst poll)": f"{during[-1]:.0f}" if during else "-"})
        print(table(rows[-1:]), flush=True)
    return rows
