"""The alerts kept as the law-enforcement record, for `alert_retention_days` after they end.

The history of fixes is dropped a partition at a time once past its own, shorter retention
(server/positions/partitions.py). Before that, `keep_tracks` copies the fixes that the
consoles show as each alert's tracks (its own, from TRACK_LEAD before the SOS to its end,
and its trip's, from check-in) into `alert_fixes`, which the consoles' views read beside
the history (server/alerts/view.py): an alert looks the same once its fixes' partition is gone.
"""

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from server.alerts import view
from server.core.tables import (ALERT_UNFINISHED, alert_fixes, alert_notes, alerts, audit_reads, outbox, pings,
                                sos_repeats, trips, users)

_COPIED = ("device_id", "seq", "device_ts", "received_at", "location", "accuracy_m")


# The end of the span an alert's tracks show, as the index `alerts_track_end` has it.
TRACK_END = sa.func.coalesce(alerts.c.ended_at, view.NO_END)


def _windows(user_id: uuid.UUID | None, since: datetime | None):
    """Per alert, the spans of device time its tracks show (as `select_views` bounds them): its
    own, and its trip's (check-in to the trip's end or the alert's, whichever is sooner). With
    `since`, only the alerts whose tracks reach it, found along `alerts_track_end`."""
    own = sa.select(alerts.c.alert_id, alerts.c.user_id, (alerts.c.opened_at - view.TRACK_LEAD).label("since"),
                    TRACK_END.label("until"))
    trip = (sa.select(alerts.c.alert_id, alerts.c.user_id, trips.c.started_at.label("since"),
                      sa.func.least(sa.func.coalesce(trips.c.ended_at, view.NO_END), TRACK_END).label("until"))
            .select_from(alerts.join(trips, trips.c.trip_id == alerts.c.trip_id)))
    if user_id is not None:
        own, trip = own.where(alerts.c.user_id == user_id), trip.where(alerts.c.user_id == user_id)
    if since is not None:
        own, trip = own.where(TRACK_END >= since), trip.where(TRACK_END >= since)
    return sa.union_all(own, trip).subquery("window")


async def keep_tracks(*, connection: AsyncConnection, user_id: uuid.UUID | None = None,
                      before: datetime | None = None, since: datetime | None = None) -> int:
    """Copy into `alert_fixes` the fixes shown as alerts' tracks (those of `user_id`'s alerts
    only, if given) whose device time is in [since, before); a fix already kept is skipped.
    Returns how many were copied. Call it, in the transaction that then removes them, before
    removing fixes from the history (a dropped partition, an erased user)."""
    window = _windows(user_id, since)
    chosen = sa.select(window.c.alert_id, *(pings.c[name] for name in _COPIED)).select_from(
        window.join(pings, sa.and_(pings.c.user_id == window.c.user_id, pings.c.device_ts >= window.c.since,
                                   pings.c.device_ts <= window.c.until, pings.c.received_at <= window.c.until,
                                   pings.c.suspect.is_(None))))
    if before is not None:
        chosen = chosen.where(pings.c.device_ts < before, window.c.since < before)
    if since is not None:
        chosen = chosen.where(pings.c.device_ts >= since, window.c.until >= since)
    inserted = await connection.execute(
        pg.insert(alert_fixes).from_select(["alert_id", *_COPIED], chosen).on_conflict_do_nothing())
    return inserted.rowcount


async def remove_ended(*, connection: AsyncConnection, ended_before: datetime, batch: int = 1000) -> int:
    """Remove the alerts that ended before `ended_before` (at most `batch` of them: call it again
    while it returns `batch`), with what refers to them: their kept fixes, notes, outbox rows,
    joined SOS repeats and the audit of who read them; a trip raised with one forgets it (the
    trip is the user's, not the record). Returns how many went."""
    gone = list((await connection.execute(
        sa.select(alerts.c.alert_id)
        .where(TRACK_END < ended_before, alerts.c.status.not_in(ALERT_UNFINISHED))
        .order_by(TRACK_END).limit(batch).with_for_update(skip_locked=True))).scalars())
    if not gone:
        return 0
    await connection.execute(trips.update().where(trips.c.alert_id.in_(gone)).values(alert_id=None))
    for table in (alert_notes, outbox, audit_reads, sos_repeats):
        await connection.execute(table.delete().where(table.c.alert_id.in_(gone)))
    await connection.execute(alerts.delete().where(alerts.c.alert_id.in_(gone)))
    # An erased user's record ends with their last alert: the trips it kept, then the tombstone.
    erased = sa.select(users.c.user_id).where(users.c.erased_at.is_not(None))
    await connection.execute(trips.delete().where(
        trips.c.user_id.in_(erased), trips.c.alert_id.is_(None),
        ~sa.exists().where(alerts.c.trip_id == trips.c.trip_id)))
    await connection.execute(users.delete().where(
        users.c.erased_at.is_not(None), ~sa.exists().where(alerts.c.user_id == users.c.user_id)))
    return len(gone)
