"""CPU time used by the parties of a run (server, PostgreSQL, load generator), from /proc."""

import os
import time
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S  # utime + stime


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds of `pid` and of its live children (a phones process's forked workers)."""
    total = _cpu_s(pid)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    total += _cpu_s(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return total


def _pids_named(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class CpuMeter:
    """Share of one core each party used between start() and stop(); the server's counts its
    forked workers."""

    def __init__(self, server_pid: int):
        self._server_pid = server_pid

    def _sample(self) -> tuple[float, float, float, float]:
        own = os.times()
        return (time.monotonic(), _tree_cpu_s(self._server_pid), sum(_cpu_s(pid) for pid in _pids_named("postgres")),
                own.user + own.system + own.children_user + own.children_system)

    def start(self) -> None:
        self._first = self._sample()

    def stop(self) -> dict[str, str]:
        last = self._sample()
        wall = last[0] - self._first[0]
        shares = [(b - a) / wall for a, b in zip(self._first[1:], last[1:])]
        return {"server cpu": f"{shares[0]:.0%}", "postgres cpu": f"{shares[1]:.0%}", "load cpu": f"{shares[2]:.0%}"}
