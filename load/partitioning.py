"""`make bench`'s partitioning scenario (issue 11 item 3): the ping path against a history at
revision 0009 (one table) and one at head (partitioned by day), in the same run.

The same fleet (2000 phones x 10 Hz, single pings) runs against a full server on each database,
the unpartitioned one before and after the partitioned one: the ratio is head's acked pings/s
over the mean of the two unpartitioned runs, whose difference is the machine's noise. Both
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
PHONES = 2000


def run(env: dict[str, str], *, duration_s: float, procs: int, wait_until_drained) -> list[dict]:
    """Rows of the scenario's table: each run, then the partitioned/unpartitioned ratio."""
    flat_url = os.environ.get("GUARDIAN_BENCH_FLAT_DATABASE_URL", FLAT_DATABASE_URL)
    servers = {"0007 (one table)": ServerProcess([sys.executable, "-m", "server", "serve"],
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


def ratio_row(first: FleetResult, partitioned: FleetResult, again: FleetResult) -> dict[str, str]:
    mean = (first.acked_per_s + again.acked_per_s) / 2
    noise = abs(first.acked_per_s - again.acked_per_s) / mean if mean else float("nan")
    ratio = partitioned.acked_per_s / mean if mean else float("nan")
    return {"scenario": "ping path, history", "server": "partitioned/one table", "acked pings/s": f"{ratio:.2f}",
            "sent": f"noise {noise:.0%}"}
