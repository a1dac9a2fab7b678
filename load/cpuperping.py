"""`python -m load cpuperping`: CPU µs per acked ping, server and PostgreSQL apart, for a server
built from a git revision (default: issue 12's starting point) against the working tree.

Each side gets a fresh database of its own, migrated by its own code's `guardian db upgrade`,
and the two share one Redis index (their users differ, so do their keys). The revision's code is
exported with `git archive` into a temporary folder (no worktree left behind) and served from
there with the same interpreter; everything is removed afterwards. Runs alternate A B A B on the
same fleet plan, so a neighbour's load on the 2 shared cores falls on both sides alike.

PostgreSQL's CPU is counted two ways: the backends of that side's database only (found by the
process title PostgreSQL gives them), which is what the ping path costs and what other users of
a shared cluster cannot blur; and every `postgres` process, as `load/cpu.py` counts it (the WAL
writer and checkpointer included, and anyone else's queries).
"""

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from load import fleet
from load.cpu import _cpu_s, _pids_named
from load.processes import ServerProcess
from load.stats import table

BASE_REVISION = "22fcddd"
DATABASE_URL = "postgresql+asyncpg://guardian:guardian@127.0.0.1:5432/{name}"
REDIS_URL = "redis://127.0.0.1:6379/{index}"
ROOT = Path(__file__).resolve().parent.parent


def _backends_of(database: str) -> list[int]:
    """PostgreSQL backends connected to `database`: their title is "postgres: [cluster: ]user database
    address state" (Debian names the cluster, 15/main)."""
    found = []
    for pid in _pids_named("postgres"):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split()
        except OSError:
            continue
        if title[:1] == ["postgres:"] and database in title[2:4]:
            found.append(pid)
    return found


class PingCpuMeter:
    """CPU seconds of the server, of its database's backends and of every postgres process over a window."""

    def __init__(self, server_pid: int, database: str):
        self._server_pid, self._database = server_pid, database

    def _sample(self) -> tuple[float, float, dict[int, float], float]:
        return (time.monotonic(), _cpu_s(self._server_pid),
                {pid: _cpu_s(pid) for pid in _backends_of(self._database)},
                sum(_cpu_s(pid) for pid in _pids_named("postgres")))

    def start(self) -> None:
        self._first = self._sample()

    def stop(self) -> dict[str, str]:
        last = self._sample()
        # A backend that connected during the window counts from zero; one that left is lost (rare:
        # the server's pools keep their connections).
        own = sum(cpu - self._first[2].get(pid, 0.0) for pid, cpu in last[2].items())
        self.seconds = {"wall": last[0] - self._first[0], "server": last[1] - self._first[1], "postgres own": own,
                        "postgres all": last[3] - self._first[3]}
        return {}


@dataclass
class Side:
    label: str
    tree: Path
    database: str
    server: ServerProcess | None = None
    tokens: list[str] | None = None


def _export(revision: str, into: Path) -> None:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", revision], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)


def _fresh_database(name: str, tree: Path, env: dict[str, str]) -> None:
    subprocess.run(["psql", "-X", "-q", "-h", "127.0.0.1", "-U", "guardian", "-d", "postgres", "-c",
                    f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'], env={**env, "PGPASSWORD": "guardian"},
                   check=True)
    # Made as the project makes every database (PostGIS and pg_partman in it), by this tree's script.
    subprocess.run(["bash", str(ROOT / "ops" / "services.sh"), name], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, "-m", "server", "db", "upgrade"], cwd=tree, check=True,
                   env={**env, "GUARDIAN_DATABASE_URL": DATABASE_URL.format(name=name), "PYTHONPATH": str(tree)},
                   stdout=subprocess.DEVNULL)


def _drop_database(name: str, env: dict[str, str]) -> None:
    subprocess.run(["psql", "-X", "-q", "-h", "127.0.0.1", "-U", "guardian", "-d", "postgres", "-c",
                    f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'], env={**env, "PGPASSWORD": "guardian"},
                   check=False)


def _row(label: str, result, meter: PingCpuMeter) -> dict[str, str]:
    acked = max(result.acked_pings, 1)
    us = {name: 1e6 * seconds / acked for name, seconds in meter.seconds.items() if name != "wall"}
    wall = meter.seconds["wall"]
    return {"server": label, "acked pings/s": f"{result.acked_per_s:,.0f}", "p50 ms": f"{result.percentile_ms(.5):.1f}",
            "p99 ms": f"{result.percentile_ms(.99):.1f}",
            "errors": ", ".join(f"{c}={n}" for c, n in sorted(result.errors.items())) or "0",
            "server cpu": f"{meter.seconds['server'] / wall:.0%}",
            "server µs/ping": f"{us['server']:.0f}", "pg own µs/ping": f"{us['postgres own']:.0f}",
            "pg all µs/ping": f"{us['postgres all']:.0f}",
            "total µs/ping": f"{us['server'] + us['postgres own']:.0f}"}


def _summary(rows: list[dict[str, str]], base: str, tree: str) -> list[dict[str, str]]:
    """Per column: the mean of each side, the tree/base ratio, and each side's spread (max-min over mean)."""
    out = []
    for column in ("server µs/ping", "pg own µs/ping", "pg all µs/ping", "total µs/ping"):
        figures = {side: [float(r[column]) for r in rows if r["server"] == side] for side in (base, tree)}
        means = {side: sum(v) / len(v) for side, v in figures.items()}
        spread = {side: (max(v) - min(v)) / means[side] if means[side] else 0.0 for side, v in figures.items()}
        out.append({"figure": column, base: f"{means[base]:.0f}", tree: f"{means[tree]:.0f}",
                    "tree/base": f"{means[tree] / means[base]:.2f}" if means[base] else "n/a",
                    "spread base": f"{spread[base]:.0%}", "spread tree": f"{spread[tree]:.0%}"})
    return out


def run(*, revision: str = BASE_REVISION, phones: int = 300, rate_hz: float = 10.0, duration_s: float = 15.0,
        warmup_s: float = 5.0, rounds: int = 2, redis_index: int = 13, database_prefix: str = "guardian_cpp",
        keep_databases: bool = False) -> list[dict[str, str]]:
    """A B A B ... (`rounds` of each); prints each run and returns the summary rows."""
    env = {**os.environ, "GUARDIAN_REDIS_URL": REDIS_URL.format(index=redis_index),
           "GUARDIAN_REGISTER_BURST": "1000000", "GUARDIAN_PHONE_CONNECT_BURST": "1000000"}
    folder = Path(tempfile.mkdtemp(prefix="cpuperping-"))
    base_label, tree_label = f"{revision}", "working tree"
    sides = [Side(base_label, folder, f"{database_prefix}_base"), Side(tree_label, ROOT, f"{database_prefix}_tree")]
    subprocess.run(["redis-cli", "-n", str(redis_index), "flushdb"], check=True, stdout=subprocess.DEVNULL)
    try:
        _export(revision, folder)
        for side in sides:
            _fresh_database(side.database, side.tree, env)
            side.server = ServerProcess([sys.executable, "-m", "server", "serve"],
                                        {**env, "GUARDIAN_DATABASE_URL": DATABASE_URL.format(name=side.database),
                                         # Its own tree's packages before the installed (editable) ones.
                                         "PYTHONPATH": str(side.tree)})
        for side in sides:
            side.server.start()
            side.tokens = asyncio.run(fleet.create_users(side.server.url, phones))
        plan = fleet.Plan(url="", rate_hz=rate_hz, batch=1, duration_s=duration_s, warmup_s=warmup_s)
        rows = []
        for round_index in range(rounds):
            for side in sides:
                print(f"running: {phones} phones x {rate_hz:g} Hz against {side.label} (round {round_index + 1}) ...",
                      flush=True)
                meter = PingCpuMeter(side.server.pid, side.database)
                result = fleet.run(side.tokens, replace(plan, url=side.server.url), meter=meter)
                rows.append(_row(side.label, result, meter))
                print(table(rows[-1:]), flush=True)
                _wait_drained(side.server)
        print("\nCPU per acked ping, each run\n" + table(rows), flush=True)
        summary = _summary(rows, base_label, tree_label)
        print("\nCPU per acked ping, means\n" + table(summary), flush=True)
        return summary
    finally:
        for side in sides:
            if side.server is not None:
                side.server.stop()
            if not keep_databases:
                _drop_database(side.database, env)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_drained(server: ServerProcess, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if httpx.get(f"{server.url}/healthz", timeout=10).json().get("ingest_queued_rows", 0) == 0:
            return
        time.sleep(0.5)
