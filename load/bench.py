"""`make bench`: the standard scenarios, each beside the baseline in the same run.

For every throughput scenario the baseline runs before and after the full
server; the full/baseline ratio uses their mean, and their difference is the
machine's noise for that scenario.
"""

import asyncio
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from load import fleet, idle, isolation, partitioning, sos
from load.cpu import CpuMeter
from load.processes import ServerProcess
from load.stats import FleetResult, table

BENCH_DATABASE_URL = "postgresql+asyncpg://guardian:guardian@127.0.0.1:5432/guardian_bench"
BENCH_REDIS_URL = "redis://127.0.0.1:6379/14"


@dataclass(frozen=True)
class Scenario:
    name: str
    phones: int
    plan: fleet.Plan


def scenarios(duration_s: float) -> list[Scenario]:
    plan = fleet.Plan(url="", rate_hz=10, batch=1, duration_s=duration_s, warmup_s=5)
    return [
        Scenario("2000 phones x 10 Hz, single pings", 2000, plan),
        Scenario("2000 phones x 1 Hz, batches of 50", 2000, replace(plan, rate_hz=1, batch=50,
                                                                    duration_s=max(10, duration_s / 2))),
        Scenario("1000 phones x 10 Hz (latency at 10k/s)", 1000, replace(plan, duration_s=max(10, duration_s / 2))),
    ]


def run_bench(*, duration_s: float, idle_phones: int, procs: int, only: str | None = None) -> None:
    env = {**os.environ, "GUARDIAN_DATABASE_URL": os.environ.get("GUARDIAN_BENCH_DATABASE_URL", BENCH_DATABASE_URL),
           "GUARDIAN_REDIS_URL": os.environ.get("GUARDIAN_BENCH_REDIS_URL", BENCH_REDIS_URL),
           "GUARDIAN_REGISTER_BURST": "1000000",  # the fleet registers every phone from one address
           "GUARDIAN_LOGIN_ADDRESS_BURST": "1000000",  # and logs its SOS_CONSOLES consoles in as one user
           "GUARDIAN_LOGIN_USERNAME_BURST": "1000000"}
    if only == "isolation":
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}",
              flush=True)
        isolation.run_isolation(env, duration_s=max(10, duration_s / 3))
        return
    full = ServerProcess([sys.executable, "-m", "server", "serve"], env)
    baseline = ServerProcess([sys.executable, "-m", "load", "baseline"], env)
    full.start()
    baseline.start()
    try:
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
              f"load generator: {procs} process(es) on the same machine", flush=True)
        needed = {"sos": 2000, "idle": idle_phones, "partitions": 0,
                  "pings": max(s.phones for s in scenarios(duration_s))}.get(
            only, max(idle_phones, *(s.phones for s in scenarios(duration_s))))
        started = time.monotonic()
        tokens = asyncio.run(fleet.create_users(full.url, needed))
        print(f"registered {len(tokens)} users in {time.monotonic() - started:.1f} s", flush=True)
        if only in (None, "partitions"):
            # First, while both histories are as empty (the others' runs then fill the partitioned one).
            print("\nping path before and after partitioning the history\n" + table(partitioning.run(
                env, duration_s=max(10, duration_s / 2), procs=procs, wait_until_drained=wait_until_drained)),
                flush=True)
        rows = []
        for scenario in scenarios(duration_s) if only in (None, "pings") else []:
            results = {}
            for label, server in (("baseline", baseline), ("full", full), ("baseline again", baseline)):
                plan = replace(scenario.plan, url=server.url)
                print(f"running: {scenario.name} against {label} ...", flush=True)
                results[label] = fleet.run(tokens[: scenario.phones], plan, procs=procs, meter=CpuMeter(server.pid))
                wait_until_drained(full)
                rows.append({"scenario": scenario.name, "server": label, **results[label].row()})
                print(table(rows[-1:]), flush=True)
            rows.append(ratio_row(scenario.name, results))
        if rows:
            print("\nthroughput and ack latency\n" + table(rows), flush=True)
        if only in (None, "sos"):
            # A lighter load first (the SOS path with the event loop not saturated), then the goal's
            # (10,000 pings/s): alerts left open by a run escalate during the next and would load it.
            for rate_hz in (2.0, 5.0):
                stream, sos_row = run_sos_scenario(full, tokens[:2000], env, rate_hz=rate_hz,
                                                   username=f"bench-command-{rate_hz:g}")
                print(f"\nSOS while 2000 phones stream ({2000 * rate_hz:,.0f} pings/s offered)\n" + table([stream])
                      + "\n" + table([sos_row]), flush=True)
        if only in (None, "idle"):
            print(f"\nrunning: {idle_phones} idle phones against full ...", flush=True)
            report = asyncio.run(idle.hold(full.url, tokens[:idle_phones], server_pid=full.pid, hold_s=10))
            print(table([{key: str(value) for key, value in report.items()}]), flush=True)
    finally:
        full.stop()
        baseline.stop()
    if only is None:
        # Its own servers (the production layout, then one process), once the others are stopped.
        isolation.run_isolation(env, duration_s=max(10, duration_s / 3))


def wait_until_drained(server: ServerProcess, limit_s: float = 180.0) -> None:
    """Let the full server store its backlog, so it does not eat into the next run's CPU."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        if httpx.get(f"{server.url}/healthz", timeout=10).json().get("ingest_queued_rows", 0) == 0:
            break
        time.sleep(0.5)
    waited_s = time.monotonic() - started
    if waited_s > 1:
        print(f"(waited {waited_s:.0f} s for the full server's backlog to be stored)", flush=True)


def ratio_row(name: str, results: dict[str, FleetResult]) -> dict[str, str]:
    first, again = results["baseline"].acked_per_s, results["baseline again"].acked_per_s
    mean = (first + again) / 2
    noise = abs(first - again) / mean if mean else float("nan")
    ratio = results["full"].acked_per_s / mean if mean else float("nan")
    return {"scenario": name, "server": "full/baseline", "acked pings/s": f"{ratio:.2f}",
            "sent": f"noise {noise:.0%}"}


SOS_COUNT = 100
SOS_SPREAD_S = 10.0
SOS_CONSOLES = 20
BENCH_USERNAME = "bench-command"


def add_command_centre(env: dict[str, str], username: str, password: str) -> None:
    """A command-centre account, made the way an operator makes one."""
    with tempfile.TemporaryDirectory() as folder:
        password_file = Path(folder) / "password"
        password_file.write_text(password + "\n")
        subprocess.run([sys.executable, "-m", "server", "dispatcher", "add", "--username", username,
                        "--password-file", str(password_file), "--all-precincts"], env=env, check=True,
                       stdout=subprocess.DEVNULL)


def run_sos_scenario(full: ServerProcess, phone_tokens: list[str], env: dict[str, str], *,
                     sos_count: int = SOS_COUNT, consoles: int = SOS_CONSOLES, spread_s: float = SOS_SPREAD_S,
                     rate_hz: float = 5.0, duration_s: float = 20.0,
                     username: str = BENCH_USERNAME) -> tuple[dict, dict]:
    """Phones stream (`len(phone_tokens)` x `rate_hz`) while `sos_count` SOS go out over `spread_s`
    and `consoles` consoles watch. Returns the stream's row and the SOS row."""
    password = "bench password " + os.urandom(8).hex()
    add_command_centre(env, username, password)
    sos_tokens = asyncio.run(fleet.create_users(full.url, sos_count))
    console_tokens = sos.console_tokens(full.url, username, password, consoles)
    plan = fleet.Plan(url=full.url, rate_hz=rate_hz, batch=1, duration_s=duration_s, warmup_s=5)
    connect_lead_s = 1.0 + len(phone_tokens) / fleet.CONNECTS_PER_S
    sos_at_wall = time.time() + connect_lead_s + plan.warmup_s + 2.0
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    raiser = context.Process(target=sos.run_in_process, args=(dict(
        url=full.url, sos_tokens=sos_tokens, console_tokens=console_tokens, spread_s=spread_s,
        start_at_wall=sos_at_wall), results))
    raiser.start()
    print(f"running: {len(phone_tokens)} phones x {rate_hz:g} Hz with {sos_count} SOS over {spread_s:g} s and "
          f"{consoles} consoles ...", flush=True)
    stream = fleet.run(phone_tokens, plan, connect_lead_s=connect_lead_s, meter=CpuMeter(full.pid))
    outcome = results.get(timeout=120)
    raiser.join(10)
    wait_until_drained(full)
    return {"scenario": "stream during SOS", **stream.row()}, outcome.row()
