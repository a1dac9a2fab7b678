"""Erasing an account (`DELETE /v1/me`): everything about the user goes, in one transaction,
except the alerts, kept as the law-enforcement record.

What goes is found from the schema, not listed by hand: every table with a `user_id`
column, and every table whose foreign key points into one of those (a device's push
token, a trip's shares and events), children first. A table added later is erased with
no change here; a table that must outlive the account as part of the record is named in
`RECORD_TABLES`.

The users row stays as a tombstone with `erased_at`: the kept alerts point at it (their
subject, as dispatchers saw it), so the name and phone stay only when the user has alerts;
without any, they are blanked and the row holds nothing but an id and two times. Its
`FOR UPDATE` lock, taken first, orders the erasure against everything that writes for the
user: the ping flush and the inserts of trips, contacts, PINs and devices lock the row
(FOR KEY SHARE) and refuse an erased user (migration 0010), so none of them resurrects
anything once the erasure committed.

Redis and the live sockets are told after the commit (`forget_live`): the hot copy and the
geo index lose the user, every process closes the user's phones (1008) and the watchers
of their links (1008). A flush that committed just before the erasure may still be copying
its last location to Redis: the hot copy is dropped once more after that write's bound.
"""

import asyncio
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection

from server.alerts import record
from server.alerts.fanout import Fanout
from server.core import keys, refusals
from server.core.tables import ALERT_UNFINISHED, alerts, metadata, shares, trips, users
from server.phones.socket import ACCOUNT_ERASED
from server.sharing.feed import TripFeed
from server.sharing.links import Share

# Kept after an erasure, for the alert retention period: the alerts (with their location,
# notes and outbox, which point at them rather than at the user), the further SOS that joined
# them (their fix, time and note) and the dispatchers' reads.
RECORD_TABLES = frozenset({"alerts", "audit_reads", "sos_repeats"})
# Longer than the ingest's bound on its copy to Redis after a commit (`phones.ingest`).
HOT_COPY_SETTLE_S = 1.5


@dataclass(frozen=True, slots=True)
class Erased:
    user_id: uuid.UUID
    shares: list[Share]  # its watchers are closed in every process
    kept_alerts: int


def erased_tables() -> list[tuple[sa.Table, sa.ColumnElement | None]]:
    """Each table erasure deletes from, children before parents, with how it reaches the user:
    None for its own `user_id`, else the foreign key column into an erased table."""
    owned = {table.name for table in metadata.tables.values()
             if "user_id" in table.c and table.name not in RECORD_TABLES and table is not users}
    found = []
    for table in reversed(metadata.sorted_tables):
        if table.name in owned:
            found.append((table, None))
            continue
        for key in table.foreign_keys:
            if key.column.table.name in owned and table.name not in RECORD_TABLES:
                found.append((table, key))
                break
    return found


def _deletion(table: sa.Table, key, user_id: uuid.UUID) -> sa.Delete:
    if table is trips:
        # A trip an alert was raised on is part of that alert's record (the plate and the driver
        # of the taxi, the planned route of the hike): it stays with the alert, its events and
        # share links go.
        recorded = sa.select(alerts.c.trip_id).where(alerts.c.user_id == user_id, alerts.c.trip_id.is_not(None))
        return sa.delete(trips).where(trips.c.user_id == user_id, trips.c.trip_id.not_in(recorded))
    if key is None:
        return sa.delete(table).where(table.c.user_id == user_id)
    parent = key.column.table
    return sa.delete(table).where(key.parent.in_(sa.select(key.column).where(parent.c.user_id == user_id)))


async def erase(*, connection: AsyncConnection, user_id: uuid.UUID) -> Erased | None:
    """Erase the account in the caller's transaction (commit it, then `forget_live`). Returns
    None when there is nothing left to erase (erased already, by another request too).

    Raises refusals.Conflict while the user has an unfinished alert: erasing during an
    emergency would blind the dispatchers following it."""
    subject = (await connection.execute(
        sa.select(users.c.erased_at).where(users.c.user_id == user_id).with_for_update())).first()
    if subject is None or subject.erased_at is not None:
        return None
    unfinished = await connection.scalar(sa.select(sa.func.count()).where(
        alerts.c.user_id == user_id, alerts.c.status.in_(ALERT_UNFINISHED)))
    if unfinished:
        raise refusals.Conflict("an alert of yours is not over yet; the account can be erased once it is")
    # The fixes of the alerts' tracks outlive the history, as the record (before any is deleted).
    await record.keep_tracks(connection=connection, user_id=user_id)
    linked = (await connection.execute(
        sa.select(shares.c.share_id, shares.c.trip_id, shares.c.expires_at, shares.c.revoked_at)
        .join(trips, trips.c.trip_id == shares.c.trip_id).where(trips.c.user_id == user_id))).all()
    for table, key in erased_tables():
        await connection.execute(_deletion(table, key, user_id))
    kept = await connection.scalar(sa.select(sa.func.count()).where(alerts.c.user_id == user_id))
    blank = {} if kept else {"name": "", "phone": ""}
    await connection.execute(users.update().where(users.c.user_id == user_id)
                             .values(erased_at=sa.func.now(), **blank))
    return Erased(user_id, [Share(row.share_id, row.trip_id, user_id, row.expires_at, row.revoked_at)
                            for row in linked], kept)


async def drop_hot_copy(*, redis: Redis, user_id: uuid.UUID) -> None:
    """The user's last location in Redis and their place in the geo index."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.last_location(user_id))
        pipe.zrem(keys.LAST_LOCATIONS_GEO, str(user_id))
        await pipe.execute()


async def forget_live(*, redis: Redis, fanout: Fanout, trip_feed: TripFeed, erased: Erased,
                      settle_s: float = HOT_COPY_SETTLE_S) -> None:
    """After the commit: Redis forgets the user, every process closes their phones and their
    links' watchers. Raises the Redis error (the erasure itself is committed: the caller
    says so; a watcher's recheck and the empty tables cover a lost message)."""
    await drop_hot_copy(redis=redis, user_id=erased.user_id)
    for share in erased.shares:
        await trip_feed.revoked(share)
    await fanout.publish_to_phone(user_id=str(erased.user_id), frame={"type": ACCOUNT_ERASED})
    await asyncio.sleep(settle_s)
    await drop_hot_copy(redis=redis, user_id=erased.user_id)
