"""Group commit of pings from every connection of this process.

Connections `admit` items while the queue `has_room` for their device, and return at
once. When it is full, a ping frame is refused `rate_limited` with `retry_after_ms` (the
queue's depth over the recent drain rate, `retry_after_ms()`) and the phone resends it
then: under overload the server sheds the excess before judging it, keeps its memory
and its queueing delay bounded, and never stops reading a socket (an SOS behind the
pings is read at once, DESIGN rule 3). Shedding is fair: past `queue_rows` only a device
that already holds its share of the queue is refused, so a few greedy devices cannot
shed a phone with a ping or two in flight; past the hard cap (HARD_CAP_FACTOR times
`queue_rows`) every frame is, so memory stays bounded however many devices there are.
One owned task cuts the queue into flushes, at most
`flush_max_rows` rows or `flush_interval_ms` after the first waiting row, and
commits them one at a time while the next flush gathers. Commits land in arrival
order, so what is stored of a device is always a prefix of what it sent (less the
pings answered with an error): the highest stored seq (the welcome's `acked_seq`)
is safe to resume from. After a flush commits, each item's ledger entry is settled
and its ledger advanced: only then does a phone hear `ack` (DESIGN rules 1 and 2).

What keeps the prefix when a flush fails:
- a row PostgreSQL refuses for its data (SQLSTATE classes 22 and 23) is found by
  halving the flush, refused alone (an `error` frame to its phone, with its seq) and
  the rest committed, in order: no row fails the flush for the rows of others;
- any other failure (a broken connection, a terminated backend, a restart, the
  command timeout) is retried once on a fresh connection (the statement is
  idempotent: a duplicate (device, seq) is skipped);
- if the retry fails too, the flush settles nothing more: its ledgers are failed,
  their items still queued are purged before the next flush is cut (a later flush
  must not store pings above the hole, nor pings the phone will resend), and a failed
  ledger takes no new pings; its owners drop the stream and the phones resend from
  `acked_seq`.
"""

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.core import db, refusals
from server.positions import history, hotstate
from server.phones.ledger import Entry, Ledger, Ledgers
from server.core.tasks import Health, cancel_and_wait, supervise

log = logging.getLogger(__name__)

REDIS_WRITE_TIMEOUT_S = 1.0
# The queue's hard cap, in multiples of `queue_rows`: room above the fair bound for the devices
# that hold less than their share, and no more.
HARD_CAP_FACTOR = 2
# How long a phone refused for a full queue is told to wait (`retry_after_ms`): about the time the
# ingest needs to drain what is queued, within these bounds, spread so refused phones do not all
# come back in one wave.
RETRY_AFTER_MIN_MS = 250
RETRY_AFTER_MAX_MS = 30_000
RETRY_JITTER = 0.5
# The drain rate is what the flushes committed over about this long.
DRAIN_WINDOW_S = 3.0


def admits(*, queued_rows: int, queue_rows: int, pending_rows: int, share_rows: int) -> bool:
    """Whether a device with `pending_rows` pings not yet settled may queue a frame while
    `queued_rows` wait: anyone below `queue_rows`; from there only a device holding fewer
    than `share_rows`; nobody from HARD_CAP_FACTOR times `queue_rows`. A frame may overshoot
    a bound by its own rows (at most a batch), so a large batch is not refused forever."""
    if queued_rows < queue_rows:
        return True
    return queued_rows < HARD_CAP_FACTOR * queue_rows and pending_rows < share_rows


class Item:
    """One ping on its way to storage, with the ledger waiting for it and where to send
    its refusal if PostgreSQL cannot store it (before the ack that passes over it)."""

    __slots__ = ("row", "ledger", "entry", "refuse")

    def __init__(self, row: history.NewFix, ledger: Ledger, entry: Entry,
                 refuse: Callable[[refusals.Refusal], None]):
        self.row = row
        self.ledger = ledger
        self.entry = entry
        self.refuse = refuse


class Ingest:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        redis: Redis,
        flush_max_rows: int,
        flush_interval_ms: float,
        queue_rows: int,
        on_moved=None,
    ):
        """`on_moved`: awaited after each flush with the users whose last location moved."""
        self._engine = engine
        self._on_moved = on_moved
        self._redis = redis
        self._max_rows = flush_max_rows
        self._interval_s = flush_interval_ms / 1000
        self._queue_rows = queue_rows
        self._buffer: list[Item] = []
        self._waiting = asyncio.Event()
        self._committing = asyncio.Lock()
        self._flushes: set[asyncio.Task] = set()
        self._runner: asyncio.Task | None = None
        self._reporter: asyncio.Task | None = None
        self._connection: AsyncConnection | None = None
        self.ledgers = Ledgers()
        self.health = Health("ingest")
        self.flushed_rows = 0
        self.flush_count = 0
        self.commit_s = 0.0
        self.refused_rows = 0
        # (monotonic time, rows, seconds it took) of recent commits: the drain rate `retry_after_ms` reads.
        self._drained: deque[tuple[float, int, float]] = deque()
        self._last_commit_s = self._busy_since_s = time.monotonic()  # busy: since the queue was last empty

    @property
    def queued_rows(self) -> int:
        return len(self._buffer)

    def has_room(self, *, pending_rows: int, share_rows: int) -> bool:
        """Whether a frame of a device with `pending_rows` unsettled pings (its ledger's) may be
        queued now, against its share of a full queue (`admits`)."""
        return admits(queued_rows=len(self._buffer), queue_rows=self._queue_rows, pending_rows=pending_rows,
                      share_rows=share_rows)

    def drain_rows_per_s(self) -> float:
        """What the flushes of the last DRAIN_WINDOW_S stored per second of their own time (each
        at least a flush interval, which a busy queue waits too): the drain rate while busy,
        which idle time does not dilute. 0 before any commit."""
        now = time.monotonic()
        while self._drained and self._drained[0][0] < now - DRAIN_WINDOW_S:
            self._drained.popleft()
        busy_s = sum(max(took_s, self._interval_s) for _, _, took_s in self._drained)
        return sum(rows for _, rows, _ in self._drained) / busy_s if busy_s > 0 else 0.0

    def retry_after_ms(self) -> int:
        """How long a phone refused for a full queue should wait before resending: the queue's
        depth over the recent drain rate (when nothing committed lately, twice the time since the
        last commit or since the queue was last empty, so a stalled storage pushes phones back
        further and further, and an ingest that just woke does not), jittered by
        ±RETRY_JITTER and bounded to [RETRY_AFTER_MIN_MS, RETRY_AFTER_MAX_MS]."""
        rate = self.drain_rows_per_s()
        if not self._buffer:  # nothing waits (the answer to pings dropped in a window that ended)
            drain_ms = 0.0
        elif rate > 0:
            drain_ms = 1000 * len(self._buffer) / rate
        else:  # nothing committed lately: the first flush is on its way, or storage stalls (then longer)
            drain_ms = 2000 * (time.monotonic() - max(self._last_commit_s, self._busy_since_s))
        jittered = drain_ms * random.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER)
        return int(min(RETRY_AFTER_MAX_MS, max(RETRY_AFTER_MIN_MS, jittered)))

    def start(self) -> None:
        self._runner = supervise(self._run, name="ingest", health=self.health)
        self._reporter = asyncio.create_task(self._report(), name="ingest-report")

    async def _report(self, every_s: float = 10.0) -> None:
        """Log throughput, flush size, commit time and queue depth while pings flow."""
        seen = (0, 0, 0.0, 0)
        while True:
            await asyncio.sleep(every_s)
            rows, flushes, commit_s, refused = (self.flushed_rows - seen[0], self.flush_count - seen[1],
                                                self.commit_s - seen[2], self.refused_rows - seen[3])
            seen = (self.flushed_rows, self.flush_count, self.commit_s, self.refused_rows)
            if flushes or refused:
                log.info("ingest: %.0f pings/s in %d flushes (%.0f rows, %.1f ms each; committing %.0f%% of the "
                         "time), %d queued, %.0f pings/s refused for a full queue", rows / every_s, flushes,
                         rows / max(flushes, 1), 1000 * commit_s / max(flushes, 1), 100 * commit_s / every_s,
                         len(self._buffer), refused / every_s)

    def admit(self, items: list[Item]) -> None:
        """Queue items for the next flush. The caller checked `has_room` (nothing awaited since)."""
        if not self._buffer:
            self._busy_since_s = time.monotonic()
        self._buffer.extend(items)
        self._waiting.set()

    def shed(self, rows: int) -> None:
        """Count a frame refused because the queue was full for its device (the phone resends it later)."""
        self.refused_rows += rows

    async def _run(self) -> None:
        while True:
            await self._waiting.wait()
            if len(self._buffer) < self._max_rows:
                await asyncio.sleep(self._interval_s)
            await self._committing.acquire()
            self._start_flush()

    def _start_flush(self) -> None:
        batch = self._buffer[: self._max_rows]
        del self._buffer[: self._max_rows]
        if not self._buffer:
            self._waiting.clear()
        if not batch:  # all purged after a failed flush
            self._committing.release()
            return
        task = asyncio.create_task(self._flush(batch), name="ingest-flush")
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _connect(self) -> AsyncConnection:
        """The ingest's own connection, in autocommit: a flush is one statement, hence its own
        transaction, committed (WAL flushed, synchronous_commit=on) before PostgreSQL answers.
        One round trip per flush instead of checkout, BEGIN, statement and COMMIT."""
        if self._connection is None:
            connection = await self._engine.connect()
            self._connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        return self._connection

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.invalidate()
                await connection.close()
            except db.STORAGE_ERRORS as error:
                log.debug("closing a broken ingest connection: %s", db.describe(error))

    async def _flush(self, batch: list[Item]) -> None:
        started = time.perf_counter()
        try:
            moved = await self._store_once_more_if_failed(batch)
        except db.STORAGE_ERRORS as error:
            # Type and SQLSTATE only: driver messages can quote parameters, i.e. coordinates.
            log.error("flush of %d pings failed twice (%s), their streams are dropped for resend",
                      len(batch), db.describe(error))
            await self._disconnect()
            self._fail([item for item in batch if not item.entry.settled])
            return
        finally:
            self._committing.release()
        for ledger in {id(item.ledger): item.ledger for item in batch}.values():
            ledger.advance()
        self.flushed_rows += len(batch)
        self._last_commit_s = time.monotonic()
        self._drained.append((self._last_commit_s, len(batch), time.perf_counter() - started))
        self.flush_count += 1
        self.commit_s += time.perf_counter() - started
        await self._copy_to_redis(moved)
        if moved and self._on_moved is not None:
            await self._on_moved(moved)

    async def _store_once_more_if_failed(self, batch: list[Item]) -> list:
        try:
            return await self._store(batch)
        except db.STORAGE_ERRORS as error:
            log.warning("flush of %d pings failed (%s), once more on a fresh connection", len(batch),
                        db.describe(error))
            await self._disconnect()
        return await self._store([item for item in batch if not item.entry.settled])

    async def _store(self, batch: list[Item]) -> list:
        """Store the batch in arrival order; a row PostgreSQL refuses for its data is found by
        halving and refused alone. Raises db.STORAGE_ERRORS for anything else."""
        try:
            moved = await history.store(connection=await self._connect(), rows=[item.row for item in batch])
        except DBAPIError as error:
            if not db.is_data_error(error):
                raise
            if len(batch) == 1:
                self._refuse(batch[0], error)
                return []
            half = len(batch) // 2
            return await self._store(batch[:half]) + await self._store(batch[half:])
        for item in batch:
            item.entry.store()
        return moved

    def _refuse(self, item: Item, error: BaseException) -> None:
        log.warning("a ping was refused by PostgreSQL (%s); the rest of its flush is stored", db.describe(error))
        item.refuse(refusals.InvalidField(f"this ping cannot be stored ({db.describe(error)})",
                                    seq=item.row.seq))
        item.entry.settled = True

    def _fail(self, unsettled: list[Item]) -> None:
        """Fail the ledgers of what was not stored, and purge their queued items: nothing of a
        failed ledger may commit after the hole, and its phones resend it all anyway."""
        for ledger in {id(item.ledger): item.ledger for item in unsettled}.values():
            ledger.fail()
        self._buffer[:] = [item for item in self._buffer if not item.ledger.failed]
        if not self._buffer:
            self._waiting.clear()

    async def _copy_to_redis(self, moved: list) -> None:
        if not moved:
            return
        try:
            async with asyncio.timeout(REDIS_WRITE_TIMEOUT_S):
                await hotstate.write(redis=self._redis, fixes=moved)
        except (RedisError, OSError, TimeoutError) as error:
            # PostgreSQL has them; `guardian rebuild-hot-state` (or the next start) restores Redis.
            log.warning("hot state not updated for %d users: %s", len(moved), db.describe(error))

    async def close(self) -> None:
        """Flush what is queued, then stop. Called after the sockets are closed."""
        await cancel_and_wait(self._runner, self._reporter)
        while self._buffer:
            await self._committing.acquire()
            self._start_flush()
        await asyncio.gather(*self._flushes, return_exceptions=True)
        await self._disconnect()
