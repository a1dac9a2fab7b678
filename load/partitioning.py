"""`make bench`'s partitioning scenario (issue 11 item 3): the ping path against a history at
revision 0009 (one table) and one at head (partitioned by day), in the same run.

The same fleet (PHONES x 10 Hz, single pings: a load the 2-core machine sustains, so the figures
are the ping path's cost rather than an overloaded server's collapse) runs against a full server
on each database, the unpartitioned one before and after the partitioned one: each ratio is
head's figure over the mean of the two unpartitioned runs (acked pings/s, ack latency, CPU of
the server and of PostgreSQL), and the two unpartitioned runs' difference is the machine's noise. Both
databases are made fresh by `make bench` (`guardian_bench` at head, `guardian_bench_flat` at
BENCH_FLAT_REVISION). The unpartitioned server logs that its retention job cannot run there.
"""

import asyncio
import os
import sys
from dataclasses import replace

from load import fleet
from load.cpu import CpuMeter
from load.processes import ServerProcess
from load.stats import FleetResult, table

FLAT_DATABASE_URL = "postgresql+asyncpg://guardian:guardian@127.0.0.1:5432/guardian_bench_flat"
PHONES = 300


def run(env: dict[str, str], *, duration_s: float, procs: int, wait_until_drained) -> list[dict]:
    """Rows of the scenario's table: each run, then the partitioned/unpartitioned ratio."""
    flat_url = os.environ.get("GUARDIAN_BENCH_FLAT_DATABASE_URL", FLAT_DATABASE_URL)
    servers = {"0009 (one table)": ServerProcess([sys.executable, "-m", "server", "serve"],
                                                 {**env, "GUARDIAN_DATABASE_URL": flat_url}),
               "head (daily partitions)": ServerProcess([sys.executable, "-m", "server", "serve"], env)}
    for server in servers.values():
        server.start()
    try:
        tokens = {label: asyncio.run(fleet.create_users(server.url, PHONES)) for label, server in servers.items()}
        plan = fleet.Plan(url="", rate_hz=10, batch=1, duration_s=duration_s, warmup_s=5)
        flat, partitioned = servers
        rows, results = [], {}
        for run_label, label in ((flat, flat), (partitioned, partitioned), (f"{flat} again", flat)):
            server = servers[label]
            print(f"running: {PHONES} phones x 10 Hz against {run_label} ...", flush=True)
            results[run_label] = fleet.run(tokens[label], replace(plan, url=server.url), procs=procs,
                                           meter=CpuMeter(server.pid))
            wait_until_drained(server)
            rows.append({"scenario": "ping path, history", "server": run_label, **results[run_label].row()})
            print(table(rows[-1:]), flush=True)
        rows.append(ratio_row(results[flat], results[partitioned], results[f"{flat} again"]))
        return rows
    finally:
        for server in servers.values():
            server.stop()


def _figures(result: FleetResult) -> dict[str, float]:
    cpu = {name: float(share.rstrip("%")) for name, share in result.cpu.items()}
    return {"acked pings/s": result.acked_per_s, "p50 ms": result.percentile_ms(0.50),
            "p99 ms": result.percentile_ms(0.99), **cpu}


def ratio_row(first: FleetResult, partitioned: FleetResult, again: FleetResult) -> dict[str, str]:
    """Partitioned over the mean of the unpartitioned runs, per figure; `sent` holds the noise of acked pings/s."""
    before, head, after = _figures(first), _figures(partitioned), _figures(again)
    row = {"scenario": "ping path, history", "server": "partitioned/one table"}
    for name, value in head.items():
        mean = (before[name] + after[name]) / 2
        row[name] = f"{value / mean:.2f}" if mean else "n/a"
    mean = (before["acked pings/s"] + after["acked pings/s"]) / 2
    row["sent"] = f"noise {abs(before['acked pings/s'] - after['acked pings/s']) / mean:.0%}" if mean else "n/a"
    return row
