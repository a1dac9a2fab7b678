"""Cumulative acknowledgement for one device's stream of pings.

`ack N` promises that every ping with seq <= N was committed or answered with an
error. Pings are settled out of order (refusals at once, stored ones when their
flush commits, and flushes may finish in any order), so the ledger only moves N
over the settled prefix of what the device sent.

An ack is due whenever a stored ping (a duplicate included) is settled, even if N
did not move: a phone that resends a ping at or below the last ack (a duplicate,
or a ping refused `rate_limited` that the ack has already passed) must hear that
it is stored. Acks are cumulative, so resending the current N is always correct.

One device has one ledger per process (`Ledgers`), shared by its socket and its
`POST /v1/pings` requests, so every ack of the device, on either path, is
cumulative over both.
"""

import uuid
from collections import deque
from collections.abc import Callable


class Entry:
    __slots__ = ("seq", "settled", "stored")

    def __init__(self, seq: int, settled: bool = False):
        self.seq = seq
        self.settled = settled
        self.stored = False

    def store(self) -> None:
        """Committed in PostgreSQL (or found there already): settled, and an ack is due."""
        self.settled = self.stored = True


class Ledger:
    """Tracks the pings of one device in the order they arrived.

    Watchers are called (synchronously, from the flusher or the reader) when settled
    pings left the ledger or storage failed; they must not block. `progress` counts
    the acks due: a watcher that saw it grow sends `ack acked_seq`.
    """

    __slots__ = ("acked_seq", "failed", "progress", "_open", "_watchers")

    def __init__(self, acked_seq: int, on_change: Callable[[], None] | None = None):
        self.acked_seq = acked_seq
        self.failed = False
        self.progress = 0
        self._open: deque[Entry] = deque()
        self._watchers: list[Callable[[], None]] = [] if on_change is None else [on_change]

    @property
    def pending(self) -> int:
        return len(self._open)

    def watch(self, on_change: Callable[[], None]) -> None:
        self._watchers.append(on_change)

    def unwatch(self, on_change: Callable[[], None]) -> None:
        self._watchers.remove(on_change)

    def expect(self, seq: int) -> Entry:
        """A ping sent to storage; `store()` (or settle) the entry when done, then call advance()."""
        entry = Entry(seq)
        self._open.append(entry)
        return entry

    def answered(self, seq: int) -> None:
        """A ping refused with an error frame: it counts as handled once all before it are."""
        self._open.append(Entry(seq, settled=True))
        self.advance()

    def advance(self) -> None:
        """Move over the settled prefix; tell the watchers if an ack is due."""
        due = False
        while self._open and self._open[0].settled:
            entry = self._open.popleft()
            due = due or entry.stored or entry.seq > self.acked_seq
            self.acked_seq = max(self.acked_seq, entry.seq)
        if due:
            self.progress += 1
            self._changed()

    def fail(self) -> None:
        """Storage lost entries of this ledger: the owners must drop the stream so the device
        resends. A failed ledger takes no more pings (the ingest purges what it had queued)."""
        self.failed = True
        self._changed()

    def _changed(self) -> None:
        for on_change in list(self._watchers):
            on_change()


class Ledgers:
    """The open ledger of each device in this process, shared by whoever streams its pings.

    `open` joins the device's ledger (a failed one is replaced: the device starts over,
    from what PostgreSQL has); each `open` is paired with a `release`.
    """

    __slots__ = ("_open",)

    def __init__(self):
        self._open: dict[uuid.UUID, tuple[Ledger, int]] = {}

    def open(self, device_id: uuid.UUID, acked_seq: int) -> Ledger:
        """`acked_seq`: what the caller knows is settled for the device (-1 if it does not know)."""
        found = self._open.get(device_id)
        if found is None or found[0].failed:
            ledger, users = Ledger(acked_seq), 0
        else:
            ledger, users = found
            ledger.acked_seq = max(ledger.acked_seq, acked_seq)
        self._open[device_id] = (ledger, users + 1)
        return ledger

    def release(self, device_id: uuid.UUID, ledger: Ledger) -> None:
        found = self._open.get(device_id)
        if found is None or found[0] is not ledger:
            return  # replaced after a failure; the new one has its own users
        if found[1] <= 1:
            del self._open[device_id]
        else:
            self._open[device_id] = (ledger, found[1] - 1)
