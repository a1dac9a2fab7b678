"""Alerts as the consoles see them (the contract's `Alert`), and who may see which.

Reading an alert for a console is reading a user's location: callers record it
with `audit` (DESIGN rule 8).
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from server.alerts import tripcontext
from server.core import wire
from server.accounts.staff import Staff
from server.core.tables import (ALERT_UNFINISHED, alert_fixes, alert_notes, alerts, audit_reads, pings, precincts,
                                users)

log = logging.getLogger(__name__)

UNFINISHED = ALERT_UNFINISHED
# No end yet: the track of an unfinished alert is bounded by nothing but the present.
NO_END = sa.literal_column("'infinity'::timestamptz", sa.DateTime(timezone=True))
# The track shown with an alert starts this long before the SOS.
TRACK_LEAD = timedelta(minutes=15)
# An Alert shows its newest notes up to this size (`notes_omitted` counts the older ones), so one
# Alert, with its track and the SOS note, stays well within a console's frame limit.
NOTES_SHOWN_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class View:
    alert: dict  # the contract's Alert
    user_id: str
    precincts: tuple[str, ...]
    phone_status: str
    status: str


def visible_to(member: Staff):
    """The SQL condition: alerts this staff member may see."""
    if member.all_precincts:
        return sa.true()
    return alerts.c.visible_precincts.any_() == member.precinct_id


def _location(row) -> dict | None:
    if row.lat is None:
        return None
    return {"lat": row.lat, "lon": row.lon, "acc": row.accuracy_m,
            "ts": wire.format_time(row.fix_ts) if row.fix_ts else None, "quality": row.quality,
            "suspect": row.suspect or []}


async def load(*, connection: AsyncConnection, track_points: int, alert_ids: list[uuid.UUID] | None = None,
               viewer: Staff | None = None, unfinished_only: bool = False) -> list[View]:
    """Alerts by id, or every unfinished one a viewer may see; oldest first.

    One round trip, tracks and notes included: an alert's way to a console is latency that
    counts (each round trip waits its turn on a busy event loop)."""
    query = select_views(alerts, track_points=track_points)
    if alert_ids is not None:
        query = query.where(alerts.c.alert_id.in_(alert_ids))
    if viewer is not None:
        query = query.where(visible_to(viewer))
    if unfinished_only:
        query = query.where(alerts.c.status.in_(UNFINISHED))
    return views_of(await connection.execute(query))


def select_views(source, *, track_points: int, marked_trip=None):
    """The query of the views of the alerts in `source`: the alerts table, or a CTE returning
    its columns (the insert that raises an alert, which is then shown without another read;
    `marked_trip`, that statement's `tripcontext.marking`)."""
    end = sa.func.coalesce(source.c.ended_at, NO_END)
    track = _fixes_of_each(source, since=source.c.opened_at - TRACK_LEAD, until=end, points=track_points,
                           name="track")
    trip = tripcontext.trip_of_each(source, marked=marked_trip)
    # The trip's fixes since check-in, to its end or the alert's, whichever is sooner (DESIGN rule 8).
    trip_end = sa.func.least(sa.func.coalesce(trip.c.trip_ended_at, NO_END), end)
    trip_track = _fixes_of_each(source, since=trip.c.trip_started_at, until=trip_end, points=track_points,
                                name="trip_track", outer=trip)
    notes = _notes_of_each(source)
    return (
        sa.select(source, users.c.name.label("user_name"), users.c.phone.label("user_phone"),
                  precincts.c.name.label("precinct_name"),
                  sa.func.ST_Y(source.c.location).label("lat"), sa.func.ST_X(source.c.location).label("lon"),
                  *track.c, *notes.c, *trip.c, *trip_track.c)
        .select_from(source.join(users, users.c.user_id == source.c.user_id)
                     .outerjoin(precincts, precincts.c.precinct_id == source.c.precinct_id)
                     .join(track, sa.true()).join(notes, sa.true())
                     .outerjoin(trip, sa.true()).join(trip_track, sa.true()))
        .order_by(source.c.opened_at)
    )


def _ordered(column, by):
    return sa.func.array_agg(pg.aggregate_order_by(column, by))


def _fixes_of_each(source, *, since, until, points: int, name: str, outer=None):
    """Per alert: its user's plausible fixes with device time in [since, until] and received by
    `until` (newest `points`), as arrays oldest first. A finished alert shows no fix taken or
    received after it ended (DESIGN rule 8: positions only while the alert is unfinished).
    They are read from the history and from the fixes kept with the alert once the history's
    partition holding them is dropped (server/alerts/record.py), the same fix once.
    Its columns are `name` with _lat, _lon, _acc, _ts; `outer`: another lateral of the same
    query that `since` and `until` read."""
    correlated = (source,) if outer is None else (source, outer)

    def newest(table, *conditions):
        # Each source's newest `points` first, so that each is read backwards along an index and
        # stops there, as a long alert's track must.
        branch = (sa.select(table.c.device_id, table.c.seq, table.c.device_ts,
                            sa.func.ST_Y(table.c.location).label("lat"), sa.func.ST_X(table.c.location).label("lon"),
                            table.c.accuracy_m)
                  .where(*conditions, table.c.device_ts >= since, table.c.device_ts <= until,
                         table.c.received_at <= until)
                  .order_by(table.c.device_ts.desc()).limit(points)
                  .correlate(*correlated)
                  .subquery(f"{name}_{table.name}"))
        return sa.select(branch)

    fixes = sa.union(
        newest(pings, pings.c.user_id == source.c.user_id, pings.c.suspect.is_(None)),
        newest(alert_fixes, alert_fixes.c.alert_id == source.c.alert_id),
    ).subquery(f"{name}_fixes")
    recent = (
        sa.select(fixes.c.lat, fixes.c.lon, fixes.c.accuracy_m, fixes.c.device_ts)
        .order_by(fixes.c.device_ts.desc()).limit(points)
        .subquery(f"{name}_recent")
    )
    return sa.select(
        _ordered(recent.c.lat, recent.c.device_ts).label(f"{name}_lat"),
        _ordered(recent.c.lon, recent.c.device_ts).label(f"{name}_lon"),
        _ordered(recent.c.accuracy_m, recent.c.device_ts).label(f"{name}_acc"),
        _ordered(recent.c.device_ts, recent.c.device_ts).label(f"{name}_ts"),
    ).lateral(name)


def _notes_of_each(source):
    """Per alert: its notes as arrays, in the order they were written."""
    written = (sa.select(alert_notes).where(alert_notes.c.alert_id == source.c.alert_id)
               .correlate(source).subquery("written"))
    return sa.select(
        _ordered(written.c.author, written.c.note_id).label("note_authors"),
        _ordered(written.c.text, written.c.note_id).label("note_texts"),
        _ordered(written.c.created_at, written.c.note_id).label("note_times"),
    ).lateral("notes")


def views_of(rows) -> list[View]:
    """The views of these rows; a row that cannot be shown (a value no code path should have
    stored) is left out and logged by its alert id, so it never hides the others."""
    views = []
    for row in rows:
        try:
            views.append(view_of(row))
        except (ValueError, TypeError, OverflowError) as error:
            log.error("alert %s cannot be shown (%s); left out", row.alert_id, type(error).__name__)
    return views


def _points(lats, lons, accuracies, moments) -> list[dict]:
    return [{"lat": lat, "lon": lon, "acc": acc, "ts": wire.format_time(ts)}
            for lat, lon, acc, ts in zip(lats or (), lons or (), accuracies or (), moments or ())]


def view_of(row) -> View:
    track = _points(row.track_lat, row.track_lon, row.track_acc, row.track_ts)
    trip = tripcontext.trip_of(
        row, _points(row.trip_track_lat, row.trip_track_lon, row.trip_track_acc, row.trip_track_ts))
    notes = [{"author": author, "text": text, "at": wire.format_time(at)}
             for author, text, at in zip(row.note_authors or (), row.note_texts or (), row.note_times or ())]
    shown, omitted = _newest_within(notes, NOTES_SHOWN_BYTES)
    alert = {
        "alert_id": str(row.alert_id),
        "status": row.status,
        "duress": row.duress,
        "reason": row.reason,  # sos, overdue (no answer to are_you_safe), duress (the duress PIN to `safe`)
        "opened_at": wire.format_time(row.opened_at),
        "updated_at": wire.format_time(row.updated_at),
        "ended_at": wire.format_time(row.ended_at) if row.ended_at else None,
        "user": {"user_id": str(row.user_id), "name": row.user_name, "phone": row.user_phone},
        "location": _location(row),
        "precinct": None if row.precinct_id is None else {
            "id": row.precinct_id, "name": row.precinct_name, "out_of_area": row.out_of_area},
        "trip": trip,
        "track": track,
        "note": row.note,
        "notes": shown,
        "notes_omitted": omitted,
        "escalation_level": row.escalation_level,
        "repeats": row.repeats,  # SOS of the user past the cap of unfinished alerts, joined to this one
        "acknowledged_by": row.acknowledged_by,
        "resolved_by": row.resolved_by,
        "outcome": row.outcome,
    }
    return View(alert, str(row.user_id), tuple(row.visible_precincts), row.phone_status, row.status)


def _newest_within(notes: list[dict], max_bytes: int) -> tuple[list[dict], int]:
    """The newest notes whose encoding fits in max_bytes (oldest first), and how many were left out."""
    size, first = 0, len(notes)
    while first > 0:
        size += len(wire.encode(notes[first - 1]).encode())
        if size > max_bytes:
            break
        first -= 1
    return notes[first:], first


def updated_at(alert: dict) -> datetime:
    """When this state of an alert was committed: of two views of one alert, the later is newer."""
    return datetime.fromisoformat(alert["updated_at"])


def audit_rows(*, viewer: Staff, shown: list[tuple[str, str]], context: str) -> list[dict]:
    """Rows of audit_reads: this staff member was shown these (alert id, user id) locations."""
    return [{"staff_id": viewer.staff_id, "alert_id": uuid.UUID(alert_id), "user_id": uuid.UUID(user_id),
             "context": context} for alert_id, user_id in shown]


async def audit(*, connection: AsyncConnection, viewer: Staff, views: list[View], context: str) -> None:
    """Record, in the caller's transaction, that this staff member was shown these alerts."""
    if views:
        shown = [(view.alert["alert_id"], view.user_id) for view in views]
        await connection.execute(pg.insert(audit_reads), audit_rows(viewer=viewer, shown=shown, context=context))
