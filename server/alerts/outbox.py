"""The transactional outbox: what each channel still has to deliver for each alert event.

`add` is called inside the alert's own transaction (persist, then notify: DESIGN
rule 4), so an event exists exactly when its change is committed. Workers
`lease` due rows (a lease that runs out after a crash makes the row due again),
deliver them, then `complete` or `postpone` them.
"""

import uuid
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from server.core.config import Settings
from server.core.tables import outbox

CONSOLE, PUSH, CAD = "console", "push", "cad"
# Who to wake: officers and contacts hear of a new alert and of each escalation.
PUSHED_KINDS = ("opened", "escalated")


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    event_id: uuid.UUID
    alert_id: uuid.UUID
    kind: str
    target: str | None
    attempts: int


def destinations(kind: str) -> list[tuple[str, str | None]]:
    """(channel, target) of every channel that carries this kind of event, whatever this process
    is configured for: a row waits for a process that can deliver it (a push row for one with
    FCM). CAD gets one generic row (target NULL) that a process with CAD endpoints `expand`s
    into a row per endpoint, so an alert raised where CAD is not configured still reaches it."""
    found: list[tuple[str, str | None]] = [(CONSOLE, None)]
    if kind in PUSHED_KINDS:
        found.append((PUSH, None))
    return found + [(CAD, None)]


async def add(*, connection: AsyncConnection, settings: Settings, alert_id: uuid.UUID, kind: str) -> uuid.UUID:
    """Record one event of an alert for every channel; returns the event id. (`settings` no
    longer decides the channels; the parameter stays for the callers.)"""
    event_id = uuid.uuid4()
    await connection.execute(outbox.insert(), [
        {"event_id": event_id, "alert_id": alert_id, "kind": kind, "channel": channel, "target": target}
        for channel, target in destinations(kind)])
    return event_id


def add_after(inserted, *, settings: Settings, event_id: uuid.UUID, kind: str):
    """`add` as a CTE for the alert that the CTE `inserted` (with an alert_id column) returned:
    no rows when it returned none, so a retried SOS records no second event."""
    targets = sa.values(sa.column("channel", sa.Text), sa.column("target", sa.Text), name="targets").data(
        destinations(kind))
    return pg.insert(outbox).from_select(
        ["event_id", "alert_id", "kind", "channel", "target"],
        sa.select(sa.literal(event_id, pg.UUID(as_uuid=True)), inserted.c.alert_id, sa.literal(kind),
                  targets.c.channel, targets.c.target).select_from(inserted.join(targets, sa.true())),
    ).cte("recorded")


async def expand(*, connection: AsyncConnection, channel: str, targets: list[str], limit: int) -> int:
    """Replace up to `limit` generic rows of a channel (target NULL) by one row per target, in
    one statement: a crash leaves either the generic row or its expansion, never both. Another
    process expanding at the same time skips the locked rows. Returns how many rows it wrote."""
    generic = (sa.select(outbox.c.id)
               .where(outbox.c.channel == channel, outbox.c.target.is_(None), outbox.c.done_at.is_(None))
               .order_by(outbox.c.id).limit(limit).with_for_update(skip_locked=True).cte("generic"))
    closed = (outbox.update().where(outbox.c.id.in_(sa.select(generic.c.id))).values(done_at=sa.func.now())
              .returning(outbox.c.event_id, outbox.c.alert_id, outbox.c.kind).cte("closed"))
    endpoints = sa.values(sa.column("target", sa.Text), name="endpoints").data([(target,) for target in targets])
    expanded = (pg.insert(outbox).from_select(
        ["event_id", "alert_id", "kind", "channel", "target"],
        sa.select(closed.c.event_id, closed.c.alert_id, closed.c.kind, sa.literal(channel), endpoints.c.target)
        .select_from(closed.join(endpoints, sa.true())))
        .on_conflict_do_nothing(constraint="outbox_event_channel").returning(outbox.c.id))
    return len((await connection.execute(expanded.add_cte(generic).add_cte(closed))).all())


async def lease(*, connection: AsyncConnection, channel: str, lease_s: float, limit: int,
                targets: list[str] | None = None) -> list[Row]:
    """Take up to `limit` due rows of a channel (for these targets, if given), oldest first,
    for `lease_s` seconds."""
    due = (sa.select(outbox.c.id)
           .where(outbox.c.channel == channel, outbox.c.done_at.is_(None), outbox.c.due_at <= sa.func.now())
           .order_by(outbox.c.id).limit(limit).with_for_update(skip_locked=True))
    if targets is not None:
        due = due.where(outbox.c.target.in_(targets))
    result = await connection.execute(
        outbox.update().where(outbox.c.id.in_(due.scalar_subquery()))
        .values(due_at=sa.func.now() + timedelta(seconds=lease_s), attempts=outbox.c.attempts + 1)
        .returning(outbox.c.id, outbox.c.event_id, outbox.c.alert_id, outbox.c.kind, outbox.c.target,
                   outbox.c.attempts))
    return sorted((Row(*row) for row in result), key=lambda row: row.id)


async def complete(*, connection: AsyncConnection, ids: list[int]) -> None:
    if ids:
        await connection.execute(outbox.update().where(outbox.c.id.in_(ids)).values(done_at=sa.func.now()))


async def complete_event(*, connection: AsyncConnection, event_id: uuid.UUID, channel: str) -> None:
    await connection.execute(outbox.update().where(outbox.c.event_id == event_id, outbox.c.channel == channel,
                                                   outbox.c.done_at.is_(None)).values(done_at=sa.func.now()))


async def renew(*, connection: AsyncConnection, ids: list[int], lease_s: float) -> None:
    """Extend the lease of rows still being delivered, so no other worker takes them meanwhile."""
    if ids:
        await connection.execute(outbox.update().where(outbox.c.id.in_(ids), outbox.c.done_at.is_(None))
                                 .values(due_at=sa.func.now() + timedelta(seconds=lease_s)))


async def postpone(*, connection: AsyncConnection, ids: list[int], delay_s: float) -> None:
    if ids:
        await connection.execute(outbox.update().where(outbox.c.id.in_(ids))
                                 .values(due_at=sa.func.now() + timedelta(seconds=delay_s)))


def backoff_s(attempts: int, *, first_s: float = 1.0, max_s: float = 300.0) -> float:
    """Exponential back-off after the n-th failed attempt: 1, 2, 4 ... seconds, capped."""
    return min(max_s, first_s * 2 ** max(0, attempts - 1))
