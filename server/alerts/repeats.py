"""SOS beyond a user's cap of unfinished alerts: stored with, and counted on, the alert they join.

One phone raising thousands of alerts (a new sos_id each) would bury every other user's
alert in its precinct's queue. Past `max_unfinished_alerts_per_user` a further SOS is still
committed and acknowledged (DESIGN rule 3: never refused), but as a repeat of the user's
newest unfinished alert: a row here, the alert's `repeats` count raised, and an `updated`
event for the consoles in the same statement (rule 4). Idempotent by (user, sos_id) (rule 5).
"""

import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from geo.fix import Fix
from server.alerts import outbox
from server.alerts.view import UNFINISHED
from server.core.config import Settings
from server.core.tables import alerts, point, sos_repeats


@dataclass(frozen=True, slots=True)
class Joined:
    alert_id: uuid.UUID
    phone_status: str


def unfinished_below_cap(*, user_id, settings: Settings):
    """The SQL condition: this user has fewer unfinished alerts than the cap allows."""
    unfinished = (sa.select(sa.func.count()).select_from(alerts)
                  .where(alerts.c.user_id == user_id, alerts.c.status.in_(UNFINISHED)).scalar_subquery())
    return unfinished < settings.max_unfinished_alerts_per_user


def not_joined(*, user_id, sos_id):
    """The SQL condition: this sos_id has not joined an alert of this user (a retry of a repeat
    must never open an alert of its own, even once the user's alerts are resolved)."""
    return ~sa.exists().where(sos_repeats.c.user_id == user_id, sos_repeats.c.sos_id == sos_id)


async def join(*, connection: AsyncConnection, settings: Settings, user_id: uuid.UUID, sos_id: uuid.UUID,
               own_fix: Fix | None, suspect: list[str], note: str | None, now: datetime) -> Joined | None:
    """Store the SOS as a repeat of the user's newest unfinished alert, count it there and record
    the alert's `updated` event, in one statement (its own transaction on an autocommit
    connection). None when nothing was stored: this sos_id was already stored (the caller reads
    its answer), or the user has no unfinished alert left to join (the caller opens one).

    A duress-cancelled alert is not joined: its phone was told `cancelled`, and a new SOS must be
    told it is open. The alert row is locked first, so concurrent repeats count one each."""
    user = sa.literal(user_id, pg.UUID(as_uuid=True))
    newest = (sa.select(alerts.c.alert_id)
              .where(alerts.c.user_id == user, alerts.c.status.in_(UNFINISHED),
                     alerts.c.phone_status.in_(UNFINISHED))
              .order_by(alerts.c.opened_at.desc()).limit(1).with_for_update().cte("newest"))
    values = {
        "user_id": user, "sos_id": sa.literal(sos_id, pg.UUID(as_uuid=True)), "alert_id": newest.c.alert_id,
        "received_at": sa.literal(now, sa.DateTime(timezone=True)),
        "location": sa.null() if own_fix is None else point(own_fix.lat, own_fix.lon),
        "accuracy_m": sa.literal(None if own_fix is None else own_fix.accuracy_m, sa.Float),
        "fix_ts": sa.literal(None if own_fix is None else own_fix.ts, sa.DateTime(timezone=True)),
        "suspect": sa.literal(suspect or None, pg.ARRAY(sa.Text)),
        "note": sa.literal(note, sa.Text),
    }
    stored = (pg.insert(sos_repeats).from_select(list(values), sa.select(*values.values()).select_from(newest))
              .on_conflict_do_nothing().returning(sos_repeats.c.alert_id).cte("stored"))
    counted = (alerts.update().where(alerts.c.alert_id.in_(sa.select(stored.c.alert_id)))
               .values(repeats=alerts.c.repeats + 1, updated_at=sa.func.now())
               .returning(alerts.c.alert_id, alerts.c.phone_status).cte("counted"))
    recorded = outbox.add_after(counted, settings=settings, event_id=uuid.uuid4(), kind="updated")
    row = (await connection.execute(
        sa.select(counted.c.alert_id, counted.c.phone_status).add_cte(newest, stored, recorded))).first()
    return None if row is None else Joined(row.alert_id, row.phone_status)


def answered(*, user_id: uuid.UUID, sos_id: uuid.UUID):
    """The query of the alert a stored repeat joined, with what its phone is told now."""
    return (sa.select(alerts.c.alert_id, alerts.c.phone_status)
            .select_from(sos_repeats.join(alerts, alerts.c.alert_id == sos_repeats.c.alert_id))
            .where(sos_repeats.c.user_id == user_id, sos_repeats.c.sos_id == sos_id))
