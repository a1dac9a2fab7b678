"""The one statement that opens an alert: its row, its `opened` event and its consoles' view.

The alert service judges the SOS (where it is, its note, whether the user is at the cap);
this module turns that into the columns of the alert row and runs the insert, so an alert
is committed with its outbox rows and shown without another read (DESIGN rule 4). The
user's unfinished trip, if any, is recorded with it and marked `alert` in the same
statement, whoever raised it (the phone, a duress PIN, a trip's timer).
"""

import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from geo.fix import Fix
from server.alerts import outbox, tripcontext
from server.alerts.view import View, select_views, views_of
from server.core.config import Settings
from server.core.tables import alerts, point


def columns(*, settings: Settings, alert_id: uuid.UUID, sos_id: uuid.UUID, user_id: uuid.UUID, now: datetime,
            fix: Fix | None, quality: str, suspect: list[str], precinct, out_of_area, note: str | None,
            duress: bool = False, reason: str = "sos") -> dict:
    """The values of the alert row to insert, as SQL expressions (selected, not bound as a row,
    so the insert can be conditional on what PostgreSQL holds). A duress alert is `cancelled`
    to the phone from its first moment: the phone is never told of it."""
    return {
        "alert_id": sa.literal(alert_id, pg.UUID(as_uuid=True)), "sos_id": sa.literal(sos_id, pg.UUID(as_uuid=True)),
        "user_id": sa.literal(user_id, pg.UUID(as_uuid=True)), "status": sa.literal("open"),
        "phone_status": sa.literal("cancelled" if duress else "open"), "duress": sa.literal(duress),
        "reason": sa.literal(reason), "opened_at": sa.literal(now, sa.DateTime(timezone=True)),
        "updated_at": sa.literal(now, sa.DateTime(timezone=True)),
        "location": sa.null() if fix is None else point(fix.lat, fix.lon),
        "accuracy_m": sa.literal(None if fix is None else fix.accuracy_m, sa.Float),
        "fix_ts": sa.literal(None if fix is None else fix.ts, sa.DateTime(timezone=True)),
        "quality": sa.literal(quality),
        "suspect": sa.literal(suspect or None, pg.ARRAY(sa.Text)),
        "precinct_id": precinct, "out_of_area": out_of_area,
        "visible_precincts": sa.func.array_remove(pg.array([precinct], type_=sa.Text), None),
        "note": sa.literal(note, sa.Text),
        "next_escalation_at": sa.literal(now + timedelta(seconds=settings.escalate_after_s),
                                         sa.DateTime(timezone=True)),
        "escalate_again_after_s": sa.literal(settings.escalate_again_after_s, sa.Float),
        "trip_id": tripcontext.unfinished_trip_of(sa.literal(user_id, pg.UUID(as_uuid=True))),
    }


async def open_alert(connection: AsyncConnection, *, settings: Settings, values: dict, selection,
                     event_id: uuid.UUID):
    """Insert the alert that `selection` selects (the columns of `values`) with its `opened` event,
    and mark the trip it was raised during (`tripcontext.marking`), in one statement; its
    consoles' view comes back with the commit (no read after it), with `trip_marked`. None if
    nothing was inserted."""
    inserted = (pg.insert(alerts).from_select(list(values), selection)
                .on_conflict_do_nothing(constraint="alerts_user_sos").returning(*alerts.c)
                .cte("inserted"))
    recorded = outbox.add_after(inserted, settings=settings, event_id=event_id, kind="opened")
    marked = tripcontext.marking(inserted)
    query = (select_views(inserted, track_points=settings.alert_track_points, marked_trip=marked)
             .add_columns(sa.exists(sa.select(marked.c.trip_id)).label("trip_marked"))
             .add_cte(recorded, marked))
    return (await connection.execute(query)).first()


def shown(created) -> View | None:
    """The consoles' view of an alert just committed. Whatever happens now the phone hears its
    sos_ack: a view that cannot be built leaves the consoles to the outbox worker (which logs
    the alert it cannot show)."""
    views = views_of([created])
    return views[0] if views else None
