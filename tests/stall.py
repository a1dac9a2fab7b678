"""A flush stalled behind a lock, then failed: the fault of a slow failover or a 30 s timeout.

The test holds a SHARE lock on `pings` (inserts wait, reads do not), so the ingest's
flush waits in PostgreSQL; terminating the waiting backend makes that flush fail as
a broken connection would.
"""

import asyncio

import asyncpg

FLUSH_WAITING = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND wait_event_type = 'Lock' AND query LIKE 'WITH inserted AS%INSERT INTO pings%'"
)


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://")


class Stall:
    """`async with Stall(url) as stall:` holds the lock until `release()` or the end."""

    def __init__(self, database_url: str):
        self._dsn = asyncpg_dsn(database_url)
        self._holder: asyncpg.Connection | None = None
        self._watcher: asyncpg.Connection | None = None
        self.terminated = 0

    async def __aenter__(self) -> "Stall":
        self._holder = await asyncpg.connect(self._dsn)
        self._watcher = await asyncpg.connect(self._dsn)
        await self._holder.execute("BEGIN; LOCK TABLE pings IN SHARE MODE")
        return self

    async def __aexit__(self, *exc) -> None:
        await self.release()
        await self._watcher.close()

    async def release(self) -> None:
        if self._holder is not None:
            holder, self._holder = self._holder, None
            await holder.close()  # ends the transaction: its lock goes with it

    async def waiting_flush(self, timeout_s: float = 10.0) -> int:
        """The pid of a flush waiting for the lock, once there is one."""
        async with asyncio.timeout(timeout_s):
            while True:
                pids = await self._watcher.fetch(FLUSH_WAITING)
                if pids:
                    return pids[0]["pid"]
                await asyncio.sleep(0.02)

    async def fail_flush(self, timeout_s: float = 10.0) -> None:
        """Terminate the next flush waiting for the lock (its connection dies mid-statement)."""
        pid = await self.waiting_flush(timeout_s)
        await self._watcher.execute("SELECT pg_terminate_backend($1)", pid)
        self.terminated += 1
