"""Cumulative acknowledgement for one device's stream of pings.

`ack N` promises that every ping with seq <= N was committed or answered with an
error. Pings are settled out of order (refusals at once, stored ones when their
flush commits, and flushes may finish in any order), so the ledger only moves N
over the settled prefix of what the device sent.
"""

from collections import deque
from collections.abc import Callable


class Entry:
    __slots__ = ("seq", "settled")

    def __init__(self, seq: int, settled: bool = False):
        self.seq = seq
        self.settled = settled


class Ledger:
    """Tracks the pings of one device in the order they arrived.

    `on_change` is called (synchronously, from the flusher or the reader) when
    settled pings left the ledger or storage failed; it must not block.
    """

    __slots__ = ("acked_seq", "failed", "_open", "_on_change")

    def __init__(self, acked_seq: int, on_change: Callable[[], None]):
        self.acked_seq = acked_seq
        self.failed = False
        self._open: deque[Entry] = deque()
        self._on_change = on_change

    @property
    def pending(self) -> int:
        return len(self._open)

    def expect(self, seq: int) -> Entry:
        """A ping sent to storage; mark the entry settled when committed, then call advance()."""
        entry = Entry(seq)
        self._open.append(entry)
        return entry

    def answered(self, seq: int) -> None:
        """A ping refused with an error frame: it counts as handled once all before it are."""
        self._open.append(Entry(seq, settled=True))
        self.advance()

    def advance(self) -> None:
        """Move over the settled prefix; tell the owner if anything was settled."""
        popped = False
        while self._open and self._open[0].settled:
            self.acked_seq = max(self.acked_seq, self._open.popleft().seq)
            popped = True
        if popped:
            self._on_change()

    def fail(self) -> None:
        """Storage lost entries of this ledger: the owner must drop the stream so the device resends."""
        self.failed = True
        self._on_change()
