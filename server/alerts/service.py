"""The alert lifecycle: raise (SOS), acknowledge, resolve, note, cancel, escalate.

Every change and its outbox events are one transaction (DESIGN rule 4); what the
consoles, phones, push and CAD hear follows from the outbox, never from here.
An SOS is never refused for its fix (rule 3): the rules only annotate it, and a
missing or unusable fix falls back to the last known location.
"""

import math
import uuid
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from geo import rules
from geo.fix import Fix
from server.accounts import pins
from server.alerts import jurisdictions, opening, outbox, repeats, tripcontext
from server.core import db, fields, refusals, wire
from server.positions import history
from server.alerts.view import UNFINISHED, View, visible_to
from server.accounts.auth import Device
from server.core.config import Settings
from server.accounts.staff import Staff
from server.core.tables import alert_notes, alerts

if TYPE_CHECKING:
    from server.alerts.relay import Relay


@dataclass(frozen=True, slots=True)
class Raised:
    alert_id: uuid.UUID
    sos_id: uuid.UUID
    phone_status: str
    created: bool
    event_id: uuid.UUID | None = None  # the `opened` event, when this call created the alert
    view: View | None = None  # the consoles' view, when this call created the alert
    joined: bool = False  # this call stored the SOS as a repeat of the user's newest alert (repeats.py)
    # The trip the alert was raised during (when this call created it), and whether the same
    # statement marked it `alert`: not when its row was locked at that moment (tripcontext.marking).
    trip_id: uuid.UUID | None = None
    trip_marked: bool = False

    @property
    def stored_now(self) -> bool:
        """Whether this call stored the SOS (a new alert or a repeat), not a retry's answer."""
        return self.created or self.joined

    def frame(self) -> dict:
        return {"type": "sos_ack", "sos_id": str(self.sos_id), "alert_id": str(self.alert_id),
                "status": self.phone_status}


@dataclass(frozen=True, slots=True)
class Unfinished:
    """An alert still open or acknowledged, as the fan-out keeps it: whose fixes go to which consoles."""
    alert_id: str
    user_id: str
    precincts: tuple[str, ...]
    phone_status: str  # what the phone was told: after a duress cancel, `cancelled`
    updated_at: datetime  # which of two reports of the same alert is newer


@dataclass(frozen=True, slots=True)
class Located:
    fix: Fix | None
    quality: str  # fix, suspect, last_known, unknown
    suspect: list[str]


# What the salvage of a malformed SOS could not read of its fix: it annotates the fix.
_UNREADABLE_FIX = {f"unreadable_{name}" for name in ("lat", "lon", "acc", "ts")}


def sos_fix(sos: wire.SosFields, *, now: datetime) -> tuple[Fix | None, list[str]]:
    """The SOS's own fix, or None with the reasons it is unusable. Never raises."""
    reasons = [code for code in sos.salvaged if code in _UNREADABLE_FIX]
    if sos.lat is None or sos.lon is None:
        return None, [*reasons, "no_fix" if sos.lat is None and sos.lon is None else "partial_fix"]
    try:
        ts = now if sos.ts is None else wire.parse_time(sos.ts)
    except refusals.Refusal:
        ts = now
        reasons.append("bad_ts")
    accuracy = sos.acc if sos.acc is not None and math.isfinite(sos.acc) and sos.acc >= 0 else None
    fix = Fix(lat=sos.lat, lon=sos.lon, ts=ts, accuracy_m=accuracy)
    refusal = rules.refusal(fix)
    if refusal is not None:
        return None, [*reasons, f"invalid_{refusal.field}"]
    return fix, reasons


def locate(sos: wire.SosFields, *, previous: Fix | None, now: datetime, limits: rules.Limits) -> Located:
    """Where the alert is: the SOS fix (annotated by the rules), else the last known location."""
    fix, reasons = sos_fix(sos, now=now)
    if fix is not None:
        reasons += [reason.code for reason in rules.suspicions(fix, previous=previous, now=now, limits=limits)]
        return Located(fix, "suspect" if reasons else "fix", reasons)
    if previous is not None:
        return Located(previous, "last_known", reasons)
    return Located(None, "unknown", reasons)


def stored_note(sos: wire.SosFields) -> tuple[str | None, list[str]]:
    """The note as its column can hold it (an SOS is never refused for its note: NUL is
    removed, a lone surrogate replaced), with the annotations of what was changed."""
    reasons = [code for code in sos.salvaged if code not in _UNREADABLE_FIX]
    if sos.note is None or not fields.unstorable(sos.note):
        return sos.note, reasons
    return fields.storable(sos.note), [*reasons, "note_cleaned"]


def _sos_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise refusals.InvalidField("sos_id must be a UUID", field="sos_id") from None


async def _existing(connection: AsyncConnection, user_id: uuid.UUID, sos_id: uuid.UUID) -> Raised | None:
    """The answer already given to this sos_id: the alert it opened, or the one it joined."""
    opened = (sa.select(alerts.c.alert_id, alerts.c.phone_status)
              .where(alerts.c.user_id == user_id, alerts.c.sos_id == sos_id))
    row = (await connection.execute(
        opened.union_all(repeats.answered(user_id=user_id, sos_id=sos_id)).limit(1))).first()
    return None if row is None else Raised(row.alert_id, sos_id, row.phone_status, created=False)


# `last_fix` of raise_alert: read the user's last location from PostgreSQL.
FROM_STORAGE = object()


async def raise_alert(*, engine: AsyncEngine, settings: Settings, device: Device, sos: wire.SosFields,
                      last_fix: Fix | None | object = FROM_STORAGE, relay: "Relay | None" = None,
                      reason: str = "sos", duress: bool = False,
                      connection: AsyncConnection | None = None) -> Raised:
    """Commit the alert and its outbox events; a retry of the same sos_id returns the first answer.

    `reason`: what raised it (`sos`, or a trip's timer: `overdue`, `duress`). `duress`: raised
    by the duress PIN, so the alert starts as a duress cancel leaves one: marked duress, and
    its phone status `cancelled`, so that nothing about it ever reaches the phone. `connection`:
    the caller's transaction (a trip's timer step, committed with the alert): then nothing is
    retried here, the caller commits, and the caller tells the relay after its commit.

    On the alert path's own connection, never queued behind the ping ingest, in one
    statement that routes, inserts the alert, records its events and returns the consoles'
    view of it, committed as it returns. A user with `max_unfinished_alerts_per_user`
    unfinished alerts opens no other: that insert selects nothing, and the SOS joins their
    newest unfinished alert instead (`repeats.join`, a second statement), acknowledged with
    its id. The cap is soft: SOS of one user raised concurrently may each see the count below
    it and all open alerts; it holds for SOS raised one after another. Never refused: with
    no alert left to join (resolved meanwhile, or only duress-cancelled ones), the SOS opens
    an alert past the cap. The rules and the no-fix fallback need the last plausible fix: a phone socket
    knows its device's (`last_fix`, fresher than storage: it includes pings still on their
    way), otherwise it is read first. Each round trip waits its turn on a busy event loop.
    Idempotent, so a pooled connection found dead is no reason to refuse: it runs again on
    a fresh one. Once committed, `relay` (this process's, if any) is told, so the consoles
    hear of it now rather than at the outbox's next poll (DESIGN rule 4: persist, then notify).

    Whoever raises it (the phone, a trip's timer for an overdue or duress alert, with the
    user's device and an SosFields of its own), the user's unfinished trip is read from
    PostgreSQL by user, recorded with the alert and marked `alert` in the same statement
    (`Raised.trip_id`, `trip_marked`). The trip row is never waited for: a caller holding its
    row lock gets `trip_marked` False and marks the trip in its own transaction.
    """
    sos_id = _sos_id(sos.sos_id)
    if connection is not None:
        return await _raise(engine=engine, settings=settings, device=device, sos=sos, sos_id=sos_id,
                            last_fix=last_fix, reason=reason, duress=duress, in_transaction=connection)
    raised = await db.once_more_if_stale(lambda: _raise(engine=engine, settings=settings, device=device, sos=sos,
                                                        sos_id=sos_id, last_fix=last_fix, reason=reason,
                                                        duress=duress))
    if relay is not None:
        if raised.created:
            relay.opened(raised)
        elif raised.joined:
            relay.kick()
    return raised


async def _raise(*, engine: AsyncEngine, settings: Settings, device: Device, sos: wire.SosFields,
                 sos_id: uuid.UUID, last_fix: Fix | None | object, reason: str, duress: bool,
                 in_transaction: AsyncConnection | None = None) -> Raised:
    now = datetime.now(UTC)
    async with (nullcontext(in_transaction) if in_transaction is not None else db.autocommit(engine)) as connection:
        if last_fix is FROM_STORAGE:
            last = await history.last_location(connection=connection, user_id=device.user_id)
            last_fix = None if last is None else last.fix
        located = locate(sos, previous=last_fix, now=now, limits=settings.limits)
        note, note_reasons = stored_note(sos)
        fix = located.fix
        if fix is None:
            precinct, out_of_area = sa.null(), sa.false()
        else:
            precinct, out_of_area = jurisdictions.route(lat=fix.lat, lon=fix.lon)
        alert_id, event_id = uuid.uuid4(), uuid.uuid4()
        values = opening.columns(settings=settings, alert_id=alert_id, sos_id=sos_id, user_id=device.user_id,
                                 now=now, fix=fix, quality=located.quality,
                                 suspect=[*located.suspect, *note_reasons], precinct=precinct,
                                 out_of_area=out_of_area, note=note, duress=duress, reason=reason)
        selection = sa.select(*values.values()).where(
            repeats.not_joined(user_id=values["user_id"], sos_id=values["sos_id"]))
        capped = selection.where(repeats.unfinished_below_cap(user_id=values["user_id"], settings=settings))
        created = await opening.open_alert(connection, settings=settings, values=values, selection=capped,
                                           event_id=event_id)
        if created is None:  # a retry, the same sos_id raised concurrently elsewhere, or the user at the cap
            return await _answer_past_the_cap(
                connection, settings=settings, device=device, sos_id=sos_id, now=now, values=values,
                selection=selection, event_id=event_id, own_fix=fix if located.quality in ("fix", "suspect") else None,
                suspect=[*located.suspect, *note_reasons], note=note)
    return _created(created, sos_id=sos_id, event_id=event_id)


async def _answer_past_the_cap(connection: AsyncConnection, *, settings: Settings, device: Device,
                               sos_id: uuid.UUID, now: datetime, values: dict, selection, event_id: uuid.UUID,
                               own_fix: Fix | None, suspect: list[str], note: str | None) -> Raised:
    """The rare path, when the capped insert opened nothing: the answer a retry already got, else
    the SOS joined to the user's newest unfinished alert, else (no alert left to join) an alert
    opened past the cap. Each step is idempotent by sos_id, so a concurrent copy of this SOS
    (socket and HTTP at once) ends with the same answer."""
    answer = await _existing(connection, device.user_id, sos_id)
    if answer is not None:
        return answer
    joined = await repeats.join(connection=connection, settings=settings, user_id=device.user_id, sos_id=sos_id,
                                own_fix=own_fix, suspect=suspect, note=note, now=now)
    if joined is not None:
        return Raised(joined.alert_id, sos_id, joined.phone_status, created=False, joined=True)
    answer = await _existing(connection, device.user_id, sos_id)
    if answer is not None:
        return answer
    created = await opening.open_alert(connection, settings=settings, values=values, selection=selection,
                                       event_id=event_id)
    if created is None:
        return await _existing(connection, device.user_id, sos_id)
    return _created(created, sos_id=sos_id, event_id=event_id)


def _created(created, *, sos_id: uuid.UUID, event_id: uuid.UUID) -> Raised:
    return Raised(created.alert_id, sos_id, "open", created=True, event_id=event_id, view=opening.shown(created),
                  trip_id=created.trip_id, trip_marked=created.trip_marked)


def _alert_id(value: object) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise refusals.InvalidField("alert_id must be a UUID", field="alert_id") from None


async def _change(*, engine: AsyncEngine, settings: Settings, alert_id: object, where, values: dict,
                  visible, conflict: str, relay: "Relay | None") -> uuid.UUID:
    """Apply a console's change to one alert it may see, with its outbox event."""
    alert_id = _alert_id(alert_id)
    async with engine.begin() as connection:
        changed = await connection.scalar(
            alerts.update().where(alerts.c.alert_id == alert_id, visible, where)
            .values(updated_at=sa.func.now(), **values).returning(alerts.c.alert_id))
        if changed is None:
            exists = await connection.scalar(sa.select(alerts.c.status).where(alerts.c.alert_id == alert_id, visible))
            if exists is None:
                raise refusals.NotFound("no such alert", field="alert_id")
            raise refusals.Conflict(conflict.format(status=exists), field="alert_id")
        await outbox.add(connection=connection, settings=settings, alert_id=alert_id, kind="updated")
    _committed(relay)
    return alert_id


def _committed(relay: "Relay | None") -> None:
    """An outbox event was committed: deliver it now rather than at the outbox's next poll."""
    if relay is not None:
        relay.kick()


def _phone_hears(status: str):
    """What the phone is told: after a duress cancel it stays `cancelled`, whatever happens."""
    return sa.case((alerts.c.phone_status == "cancelled", "cancelled"), else_=status)


async def acknowledge(*, engine: AsyncEngine, settings: Settings, member: Staff, alert_id: object,
                      relay: "Relay | None" = None) -> uuid.UUID:
    return await _change(
        engine=engine, settings=settings, alert_id=alert_id, visible=visible_to(member), relay=relay,
        where=alerts.c.status == "open",
        values={"status": "acknowledged", "phone_status": _phone_hears("acknowledged"),
                "acknowledged_by": member.username, "next_escalation_at": None},
        conflict="the alert is {status}, not open")


async def resolve(*, engine: AsyncEngine, settings: Settings, member: Staff, alert_id: object,
                  outcome: str, relay: "Relay | None" = None) -> uuid.UUID:
    return await _change(
        engine=engine, settings=settings, alert_id=alert_id, visible=visible_to(member), relay=relay,
        where=alerts.c.status.in_(UNFINISHED),
        values={"status": "resolved", "phone_status": _phone_hears("resolved"), "resolved_by": member.username,
                "outcome": outcome, "next_escalation_at": None, "ended_at": sa.func.now()},
        conflict="the alert is already {status}")


async def add_note(*, engine: AsyncEngine, settings: Settings, member: Staff, alert_id: object,
                   text: str, relay: "Relay | None" = None) -> uuid.UUID:
    alert_id = _alert_id(alert_id)
    async with engine.begin() as connection:
        visible = await connection.scalar(
            sa.select(alerts.c.alert_id).where(alerts.c.alert_id == alert_id, visible_to(member)))
        if visible is None:
            raise refusals.NotFound("no such alert", field="alert_id")
        await connection.execute(alert_notes.insert().values(alert_id=alert_id, author=member.username, text=text))
        await connection.execute(alerts.update().where(alerts.c.alert_id == alert_id).values(updated_at=sa.func.now()))
        await outbox.add(connection=connection, settings=settings, alert_id=alert_id, kind="updated")
    _committed(relay)
    return alert_id


async def cancel(*, engine: AsyncEngine, settings: Settings, user_id: uuid.UUID, alert_id: object,
                 pin: str, relay: "Relay | None" = None) -> uuid.UUID:
    """The user's cancel. The normal PIN ends the alert; the duress PIN only tells the phone so
    (the alert goes on, marked duress). Either way the phone hears `cancelled`."""
    alert_id = _alert_id(alert_id)
    async with engine.begin() as connection:
        row = (await connection.execute(
            sa.select(alerts.c.phone_status).where(alerts.c.alert_id == alert_id, alerts.c.user_id == user_id)
            .with_for_update())).first()
        if row is None:
            raise refusals.NotFound("no such alert of yours", field="alert_id")
        if row.phone_status not in UNFINISHED:
            raise refusals.Conflict(f"the alert is already {row.phone_status}", field="alert_id")
        verdict = await pins.check(connection=connection, user_id=user_id, pin=pin,
                                   max_failures=settings.pin_max_failures, lockout_s=settings.pin_lockout_s)
        if verdict is pins.Verdict.DURESS:
            values = {"duress": True, "phone_status": "cancelled"}
        elif verdict is pins.Verdict.NORMAL:
            values = {"status": "cancelled", "phone_status": "cancelled", "next_escalation_at": None,
                      "ended_at": sa.func.now()}
        else:
            values = None  # refused below, after the count of wrong PINs is committed
        if values is not None:
            await connection.execute(alerts.update().where(alerts.c.alert_id == alert_id)
                                     .values(updated_at=sa.func.now(), **values))
            await outbox.add(connection=connection, settings=settings, alert_id=alert_id, kind="updated")
            # Both PINs alike: the trip the alert marked goes on, as the phone must see it.
            await tripcontext.unmark(connection, alert_id=alert_id, grace_s=settings.trip_grace_s)
    refusal = verdict.refusal()
    if refusal is not None:
        raise refusal
    _committed(relay)
    return alert_id


ONE_SECOND = sa.literal(timedelta(seconds=1), sa.Interval)


async def escalate_due(*, engine: AsyncEngine, settings: Settings, limit: int = 50,
                       relay: "Relay | None" = None) -> int:
    """Re-send and escalate open alerts past their deadline; returns how many.

    Rows are locked and their next deadline moved in the same transaction as the
    outbox event: with several processes sweeping, each escalation fires once. The next
    deadline follows the alert's own interval (set when it was raised), not this
    process's: processes configured differently (during a rolling change, say) do not
    re-time each other's alerts.
    """
    async with engine.begin() as connection:
        due = (await connection.execute(
            sa.select(alerts.c.alert_id, alerts.c.precinct_id, alerts.c.escalation_level, alerts.c.visible_precincts)
            .where(alerts.c.status == "open", alerts.c.next_escalation_at <= sa.func.now())
            .order_by(alerts.c.next_escalation_at).limit(limit).with_for_update(skip_locked=True))).all()
        for row in due:
            visible = list(row.visible_precincts)
            if row.precinct_id is not None:
                for neighbour in await jurisdictions.neighbours(connection=connection, precinct_id=row.precinct_id):
                    if neighbour not in visible:
                        visible.append(neighbour)
            await connection.execute(alerts.update().where(alerts.c.alert_id == row.alert_id).values(
                escalation_level=row.escalation_level + 1, visible_precincts=visible, updated_at=sa.func.now(),
                next_escalation_at=sa.func.now() + ONE_SECOND * alerts.c.escalate_again_after_s))
            await outbox.add(connection=connection, settings=settings, alert_id=row.alert_id, kind="escalated")
    if due:
        _committed(relay)
    return len(due)


async def unfinished_by_user(*, connection: AsyncConnection) -> list[Unfinished]:
    """Every alert still open or acknowledged, oldest first (a user may have several)."""
    rows = await connection.execute(
        sa.select(alerts.c.user_id, alerts.c.alert_id, alerts.c.visible_precincts, alerts.c.phone_status,
                  alerts.c.updated_at)
        .where(alerts.c.status.in_(UNFINISHED)).order_by(alerts.c.opened_at))
    return [Unfinished(str(row.alert_id), str(row.user_id), tuple(row.visible_precincts), row.phone_status,
                       row.updated_at) for row in rows]
