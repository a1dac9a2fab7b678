"""`make bench` part `isolation` (issue 12): the SOS path beside an overloaded ingest.

In the production layout (`load.deployment`: an alerts process, a phones process,
nginx in front, everything through the proxy as phones and consoles would reach it):

1. the capacity C of the one phones process (`load.overload.capacity`: sustained acked
   single pings/s from `PHONES` phones);
2. 2 x C offered by phones that honour `retry_after_ms`, while `SOS_COUNT` SOS go out as
   `POST /v1/sos` and `SOS_CONSOLES` consoles watch: SOS → console and SOS → `sos_ack`
   latency, goodput / C, the phones process's event-loop lag (its `/healthz`);
3. the same offered load and SOS against `--role all` (one process, today's layout);
4. the same against the layout with `--workers 2` (the goodput with the load generator on
   the same cores);
5. CPU µs per committed ping at C / 2, the working tree against today's main
   (`load.cpuperping`, A B A B).
"""

import asyncio
import multiprocessing
import os
import sys
import time

from load import cpuperping, fleet, overload, sos
from load.cpu import CpuMeter
from load.deployment import Deployment
from load.processes import ServerProcess
from load.stats import table
from server.core.config import Settings

PHONES = 2000
SOS_COUNT = 100
SOS_SPREAD_S = 10.0
SOS_CONSOLES = 20
# Streaming before a run's window: 2,000 phones connecting (a token check, their acked_seq, their
# last fix each) take the phones process about 10 s here.
WARMUP_S = 12.0
# The phones role's default niceness (`GUARDIAN_PHONES_NICE`), which the load generator takes too.
PHONES_NICE = Settings.model_fields["phones_nice"].default


def _during_overload(*, url: str, phones_url: str, phones_pid: int, tokens: list[str], rate_hz: float,
                     capacity_per_s: float, env: dict[str, str], layout: str, duration_s: float,
                     nice: int = 0) -> dict[str, str]:
    """`tokens` stream at `rate_hz` each (honouring `retry_after_ms`) while SOS go out over HTTP. The
    generator runs `nice` below the SOS raiser, at the priority of the process taking its pings:
    on these 2 shared cores it would otherwise take them from a niced phones process, which on a
    host of its own it would not."""
    from load.bench import add_command_centre

    username = f"bench-isolation-{layout}-{os.urandom(3).hex()}"
    password = "bench password " + os.urandom(8).hex()
    add_command_centre(env, username, password)
    sos_tokens = asyncio.run(fleet.create_users(url, SOS_COUNT))
    consoles = sos.console_tokens(url, username, password, SOS_CONSOLES)
    plan = fleet.Plan(url=url, rate_hz=rate_hz, batch=1, duration_s=duration_s, warmup_s=WARMUP_S,
                      honour_retry=True)
    connect_lead_s = 1.0 + len(tokens) / fleet.CONNECTS_PER_S
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    raiser = context.Process(target=sos.run_in_process, args=(dict(
        url=url, sos_tokens=sos_tokens, console_tokens=consoles, spread_s=SOS_SPREAD_S, via="http",
        start_at_wall=time.time() + connect_lead_s + plan.warmup_s + 2.0), results))
    raiser.start()
    print(f"running: {layout}: {len(tokens)} phones offering {len(tokens) * rate_hz:,.0f} pings/s with "
          f"{SOS_COUNT} SOS over HTTP and {SOS_CONSOLES} consoles ...", flush=True)
    with overload.LagPoller(phones_url) as lag:
        stream = fleet.run(tokens, plan, connect_lead_s=connect_lead_s, meter=CpuMeter(phones_pid), nice=nice)
    outcome = results.get(timeout=180)
    raiser.join(10)
    overload.drained(phones_url)
    worst_lag = max(lag.p99_ms, default=float("nan"))
    sos_row = outcome.row()
    return {"layout": layout, "phones": stream.row().get("phones", "-"), "offered/s": f"{stream.offered_per_s:,.0f}", "acked/s": f"{stream.acked_per_s:,.0f}",
            "goodput / C": f"{stream.acked_per_s / capacity_per_s:.2f}",
            "loop lag p99 ms": f"{worst_lag:.0f}",
            **{key: sos_row[key] for key in ("SOS raised/acked", "delivered once", "missing", "SOS→console p50 ms",
                                             "p99 ms", "SOS→sos_ack p50 ms", "sos_ack p99 ms", "errors")},
            "server cpu": stream.row().get("server cpu", "-")}


def run_isolation(env: dict[str, str], *, duration_s: float = 20.0) -> None:
    rows = []
    deployment = Deployment(env)
    deployment.start()
    try:
        tokens = asyncio.run(fleet.create_users(deployment.url, PHONES))
        # Each run connects every phone again: the warm-up lets that storm settle before the window.
        ramp = fleet.Plan(url=deployment.url, rate_hz=1.0, batch=1, duration_s=8.0, warmup_s=WARMUP_S)
        capacity_per_s, _ = overload.capacity(tokens, ramp, deployment.phones.pid,
                                              wait=lambda: overload.drained(deployment.phones.url), nice=PHONES_NICE)
        print(f"\ncapacity C of one phones process (through the proxy): {capacity_per_s:,.0f} acked single "
              "pings/s", flush=True)
        rate_hz = 2 * capacity_per_s / PHONES
        rows.append(_during_overload(url=deployment.url, phones_url=deployment.phones.url,
                                     phones_pid=deployment.phones.pid, tokens=tokens, rate_hz=rate_hz,
                                     capacity_per_s=capacity_per_s, env=env, layout="roles + proxy",
                                     duration_s=duration_s, nice=PHONES_NICE))
        print(table(rows[-1:]), flush=True)
    finally:
        deployment.stop()
    single = ServerProcess([sys.executable, "-m", "server", "serve", "--role", "all"], env)
    single.start()
    try:
        rows.append(_during_overload(url=single.url, phones_url=single.url, phones_pid=single.pid, tokens=tokens,
                                     rate_hz=rate_hz, capacity_per_s=capacity_per_s, env=env,
                                     layout="--role all (one process)", duration_s=duration_s))
        print(table(rows[-1:]), flush=True)
    finally:
        single.stop()
    workers = Deployment(env, workers=2)
    workers.start()
    try:
        rows.append(_during_overload(url=workers.url, phones_url=workers.phones.url, phones_pid=workers.phones.pid,
                                     tokens=tokens, rate_hz=rate_hz, capacity_per_s=capacity_per_s, env=env,
                                     layout="roles + proxy, --workers 2", duration_s=duration_s,
                                     nice=PHONES_NICE))
        print(table(rows[-1:]), flush=True)
    finally:
        workers.stop()
    print("\nSOS while the phones offer 2 x C\n" + table(rows), flush=True)
    print(f"\nCPU per committed ping at C / 2 ({capacity_per_s / 2:,.0f} pings/s), today's main against the "
          "working tree", flush=True)
    phones = 1000
    cpuperping.run(phones=phones, rate_hz=capacity_per_s / 2 / phones, duration_s=duration_s)  # prints its tables
