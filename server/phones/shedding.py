"""Shedding a phone socket's pings while it was told to wait, before decoding them.

Under overload a refused frame must cost far less than an accepted one, or refusing
eats the capacity it protects (congestion collapse: measured, a refusal cost about
what an accepted ping did, decoding, judging, encoding and sending an `error`). So a
socket refused for a full queue (`rate_limited` with `retry_after_ms`) opens a
window of that length: within it, a frame that can only be a ping is dropped on a
test of its raw text, with no decode and no answer of its own. Acks stay truthful
(DESIGN: `ack N` means every seq <= N was stored or answered with an `error`): the
dropped seqs enter the ledger only when one `error` naming their range goes out, at
the end of the window or before the socket's next frame that is taken, so the frame
is in the outbox (sent before any ack) before the ledger may pass them.

The test never sheds what is not a ping: it needs the exact prefix `{"type":"ping",
"seq":N,` (no whitespace), no backslash anywhere (no escaped spelling of a key) and
`"type"` once only (no duplicate or nested `type`). Anything else is decoded as usual:
an `sos` is never shed, nor are the pings of a user in an alert (the caller asks).
"""

import re

from server.core import wire

_PING_PREFIX = re.compile(r'\{"type":"ping","seq":(0|[1-9][0-9]{0,17})[,}]')


def ping_seq(text: str) -> int | None:
    """The seq of a frame that can only decode to a `ping` (or be refused as malformed), read
    without decoding it; None when in doubt (decode it then)."""
    found = _PING_PREFIX.match(text)
    if found is None or "\\" in text or text.count('"type"') != 1:
        return None
    seq = int(found.group(1))
    return seq if seq <= wire.MAX_SEQ else None


class ShedWindow:
    """One socket's window of silent shedding: open from a `rate_limited` refusal with
    `retry_after_ms` until that long after, holding the range of seqs dropped in it."""

    __slots__ = ("until_s", "first_seq", "last_seq", "dropped")

    def __init__(self):
        self.until_s = 0.0
        self.first_seq: int | None = None
        self.last_seq: int | None = None
        self.dropped = 0

    def is_open(self, now_s: float) -> bool:
        return now_s < self.until_s

    def open(self, now_s: float, retry_after_ms: int) -> None:
        self.until_s = max(self.until_s, now_s + retry_after_ms / 1000)

    def close(self) -> None:
        """End the window early (its dropped range is still answered by `take_range`)."""
        self.until_s = 0.0

    def drop(self, seq: int) -> None:
        self.first_seq = seq if self.first_seq is None else min(self.first_seq, seq)
        self.last_seq = seq if self.last_seq is None else max(self.last_seq, seq)
        self.dropped += 1

    def take_range(self) -> tuple[int, int] | None:
        """The seqs dropped since the last call (to be answered now), and forget them."""
        if self.first_seq is None:
            return None
        seqs = (self.first_seq, self.last_seq)
        self.first_seq = self.last_seq = None
        return seqs
