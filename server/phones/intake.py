"""One device's incoming pings: decode, refuse or annotate, and hand to the ingest.

Shared by the phone socket and `POST /v1/pings`, so both apply the same rules
and enter the same ledger (the device's one in this process, `Ledgers`).
Per-device processing is sequential: the plausibility of a fix is judged
against the device's previous plausible fix. A ping that PostgreSQL refuses at
flush time is answered through `on_refused`, before the ack that passes it.
"""

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from typing import TYPE_CHECKING
import msgspec

from geo import rules
from geo.fix import Fix
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core import refusals, wire
from server.positions import history, partitions
from server.accounts.auth import Device
from server.phones.ingest import RETRY_AFTER_MIN_MS, Ingest, Item
from server.phones.ledger import Entry, Ledger
from server.core.ratelimit import RateLimiter

if TYPE_CHECKING:  # the lifespan's bag of services is built above every domain
    from server.services import Services

BUSY = "the server is busy storing pings; resend later"


class Intake:
    def __init__(
        self,
        *,
        device: Device,
        previous: Fix | None,
        ledger: Ledger,
        ingest: Ingest,
        in_alert: Callable[[], bool],
        limits: rules.Limits,
        rate_limiter: RateLimiter,
        max_batch_pings: int,
        device_share_rows: int,
        on_refused: Callable[[refusals.Refusal], None],
        on_change: Callable[[], None] | None = None,
        stored_seq: int = -1,
    ):
        """`on_refused`: called (from the flusher, must not block) for a queued ping that
        PostgreSQL refused, with the error to answer. `on_change`: the ledger's watcher
        to remove at close(). `device_share_rows`: the device's share of a full ingest queue
        (`ingest.admits`)."""
        self.device = device
        self._on_refused = on_refused
        self._on_change = on_change
        self.ledger = ledger
        # The ledger entry of the last ping queued: once it is settled, so is all before it.
        self.last_entry: Entry | None = None
        self._ingest = ingest
        self._in_alert = in_alert
        self._previous = previous
        self._limits = limits
        self._rate_limiter = rate_limiter
        self._max_batch = max_batch_pings
        self._share_rows = device_share_rows
        # The highest seq of this device stored or taken so far: a ping at or below it may repeat
        # one stored with another device time, in another day's partition, which the key
        # (device_id, seq, device_ts) cannot see; it is checked against every partition.
        self._highest_seq = stored_seq
        # Whether the last `rate_limited` of `take` was for a full queue (not this device's rate):
        # a shed window opened by it ends as soon as the queue has room again.
        self.refused_for_room = False

    def close(self) -> None:
        """Leave the device's ledger (its queued pings still settle; nobody waits for them here)."""
        if self._on_change is not None:
            self.ledger.unwatch(self._on_change)
        self._ingest.ledgers.release(self.device.device_id, self.ledger)

    def has_room(self) -> bool:
        """Whether the ingest queue would take a frame of this device now (`Ingest.has_room`)."""
        return self._ingest.has_room(pending_rows=self.ledger.pending, share_rows=self._share_rows)

    def shed(self, seqs: tuple[int, int], count: int) -> refusals.Refusal:
        """Pings of this device dropped unread while its socket was told to wait: counted as
        shed, entered in the ledger as answered, and the one refusal that answers them (the
        caller sends it before any ack may pass them)."""
        self._ingest.shed(count)
        self.ledger.answered(seqs[1])
        return refusals.RateLimited(BUSY, seqs=seqs, retry_after_ms=self._ingest.retry_after_ms())

    @property
    def previous(self) -> Fix | None:
        """The device's last plausible fix: from storage at the start, then from its own pings."""
        return self._previous

    def take(self, pings: Sequence[wire.PingFields | msgspec.Raw]) -> list[refusals.Refusal]:
        """Judge a frame's pings and queue the storable ones for the group commit (each
        entered in the ledger). Returns the refusals of single pings, to answer.

        Raises refusals.Refusal when the whole frame is refused: too many pings, this device over
        its rate, the ingest queue full while this device holds its share of it or at its
        hard cap (shed before any judging, so an overloaded server spends nothing on what it
        cannot store; a phone with a ping or two in flight is not shed for others' flood),
        or the ledger failed (storage lost pings of this stream: the phone must reconnect
        and resend from `acked_seq`, so nothing may be stored above the hole). Then nothing
        of it enters the ledger, and the phone may resend it all. The pings of a user with
        an unfinished alert are never shed, not even at the hard cap: dispatchers are
        following that track live (they are few, so the queue's bound barely moves).
        """
        if len(pings) > self._max_batch:
            raise refusals.TooLarge(f"a batch holds at most {self._max_batch} pings", field="pings")
        if not pings:
            return []
        if self.ledger.failed:
            raise refusals.Unavailable("storage failed; reconnect and resend from acked_seq")
        if not self.has_room() and not self._in_alert():
            self._ingest.shed(len(pings))
            self.refused_for_room = True
            raise self._refuse_whole(pings, BUSY,
                                     retry_after_ms=self._ingest.retry_after_ms())
        if not self._rate_limiter.take(self.device.device_id, len(pings)):
            self.refused_for_room = False
            wait_ms = 1000 * self._rate_limiter.retry_after_s(self.device.device_id, len(pings))
            raise self._refuse_whole(pings, "too many pings from this device; slow down and resend",
                                     retry_after_ms=max(RETRY_AFTER_MIN_MS, math.ceil(wait_ms)))
        now = datetime.now(UTC)
        items: list[Item] = []
        refused: list[refusals.Refusal] = []
        for ping in pings:
            try:
                row = self._judge(ping if isinstance(ping, wire.PingFields) else wire.decode_ping(ping), now)
            except refusals.Refusal as refusal:
                refused.append(refusal)
                if refusal.seq is not None:
                    self.ledger.answered(refusal.seq)
                continue
            items.append(Item(row, self.ledger, self.ledger.expect(row.seq), self._on_refused))
        if items:
            self._ingest.admit(items)
            self.last_entry = items[-1].entry
        return refused

    def _refuse_whole(self, pings: Sequence[wire.PingFields | msgspec.Raw], message: str, *,
                      retry_after_ms: int) -> refusals.Refusal:
        """`rate_limited` for a whole frame, with how long the phone should wait before resending
        (DESIGN: it keeps the refused pings and sends them again after that long). A lone ping's
        refusal names its seq, so the ack may pass over it; a refused batch enters no ledger and
        names its first and last seq: the phone resends it whole."""
        if len(pings) == 1 and isinstance(pings[0], wire.PingFields):
            self.ledger.answered(pings[0].seq)
            return refusals.RateLimited(message, seq=pings[0].seq, retry_after_ms=retry_after_ms)
        first, last = wire.seq_of(pings[0]), wire.seq_of(pings[-1])
        seqs = None if first is None or last is None else (first, last)
        return refusals.RateLimited(message, seqs=seqs, retry_after_ms=retry_after_ms)

    def _judge(self, ping: wire.PingFields, now: datetime) -> history.NewFix:
        fix = wire.to_fix(ping)
        refusal = rules.refusal(fix)
        if refusal is not None:
            raise refusals.InvalidField(refusal.message, field=refusal.field, seq=ping.seq)
        if fix.ts - now > partitions.STORABLE_AHEAD:
            # A clock days ahead: no history to keep (an SOS never comes this way: its fix is annotated).
            raise refusals.InvalidField(f"ts is more than {partitions.STORABLE_AHEAD.days} days ahead of the server "
                                        "clock", field="ts", seq=ping.seq)
        suspect = rules.suspicions(fix, previous=self._previous, now=now, limits=self._limits)
        if not suspect and (self._previous is None or fix.ts > self._previous.ts):
            self._previous = fix
        recheck = ping.seq <= max(self._highest_seq, self.ledger.acked_seq)
        self._highest_seq = max(self._highest_seq, ping.seq)
        return history.NewFix(
            device_id=self.device.device_id,
            user_id=self.device.user_id,
            seq=ping.seq,
            fix=fix,
            received_at=now,
            suspect=[reason.code for reason in suspect] or None,
            recheck=recheck,
        )


async def open_intake(*, connection: AsyncConnection, services: "Services", device: Device, acked_seq: int,
                      on_change: Callable[[], None], on_refused: Callable[[refusals.Refusal], None],
                      in_alert: Callable[[], bool] | None = None) -> "Intake":
    """The intake of one device, judging its next fixes against its last plausible one, on
    the device's ledger in this process (joined if its socket or a request has it open).

    `acked_seq`: what the caller read as stored (-1 if it did not read it); `on_change`
    watches the ledger; `in_alert`: whether the user has an unfinished alert (default: the
    fan-out's view); `on_refused`: see Intake. The caller must `close()` the intake."""
    last = await history.last_location(connection=connection, user_id=device.user_id)
    stored_seq = acked_seq if acked_seq >= 0 else await history.acked_seq(connection=connection,
                                                                         device_id=device.device_id)
    settings = services.settings
    fanout, user_key = services.fanout, str(device.user_id)
    # Nothing is awaited from here on, so an opened ledger always reaches the caller's close().
    ledger = services.ingest.ledgers.open(device.device_id, acked_seq)
    ledger.watch(on_change)
    return Intake(
        device=device,
        previous=None if last is None else last.fix,
        ledger=ledger,
        ingest=services.ingest,
        in_alert=in_alert or (lambda: user_key in fanout.watched),
        limits=settings.limits,
        rate_limiter=services.rate_limiter,
        max_batch_pings=settings.max_batch_pings,
        device_share_rows=settings.ingest_device_share_rows,
        on_refused=on_refused,
        on_change=on_change,
        stored_seq=stored_seq,
    )
