"""The export (`GET /v1/me/export`): everything held about the user, as one zip archive
written while it is sent.

The archive is built in a file-like sink that zipfile writes to without seeking (local
headers then data descriptors), and the bytes are handed on after every piece: the
profile and settings, the trips, the alerts, then the history twice (GeoJSON and GPX),
each from a server-side cursor `chunk_rows` fixes at a time. Memory stays bounded by a
chunk, whatever the length of the history.

Secrets are never in it: PINs and push tokens are only said to be set or not, devices
are listed without their token hashes, share links without their tokens. Everything is
read in one REPEATABLE READ transaction, so its parts agree with each other.
"""

import asyncio
import json
import uuid
import zipfile
from collections.abc import AsyncIterator

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.core import wire
from server.core.tables import (alert_fixes, alert_notes, alerts, contacts, devices, pins, push_tokens, shares,
                                sos_repeats, trip_events, trips, users)
from server.positions import history, track

CHUNK_ROWS = 2000
# How long the export's transaction may wait for the client to take the next piece.
IDLE_TIMEOUT_S = 30
MEDIA_TYPE = "application/zip"
README = """Everything Guardian holds about you, as of the time of this export.

profile.json   your account, PINs (set or not: never the PINs), emergency contacts, devices
               (without their tokens) and whether each has a push token, your last location
trips.json     your trips with their planned routes (GeoJSON), their events, their share links
               (when made, until when valid: never the links themselves)
alerts.json    your alerts with their location, what dispatchers wrote about them, and the
               further SOS that joined them
history.geojson  every fix your phones reported (RFC 7946), suspect ones marked
history.gpx      the plausible fixes as one GPX 1.1 track
"""


class _Sink:
    """What zipfile writes to: collects bytes until `take`; no seek, so zipfile streams."""

    def __init__(self):
        self._chunks: list[bytes] = []
        self._offset = 0

    def write(self, data) -> int:
        self._chunks.append(bytes(data))
        self._offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self._offset

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self._chunks = b"".join(self._chunks), []
        return data


def _json(document) -> bytes:
    return wire.encode(document).encode()


def _point(lat_column, lon_column) -> list:
    return [sa.func.ST_Y(lat_column).label("lat"), sa.func.ST_X(lon_column).label("lon")]


def _without(row, *names: str) -> dict:
    return {name: value for name, value in row._mapping.items() if name not in names}


def _set(value) -> str:
    return "set" if value else "not set"


async def _profile(connection: AsyncConnection, user_id: uuid.UUID) -> dict:
    user = (await connection.execute(sa.select(users.c.user_id, users.c.name, users.c.phone, users.c.created_at)
                                     .where(users.c.user_id == user_id))).one()
    has_pins = await connection.scalar(sa.select(sa.func.count()).where(pins.c.user_id == user_id))
    listed = await connection.execute(sa.select(contacts.c.name, contacts.c.phone).where(contacts.c.user_id == user_id)
                                      .order_by(contacts.c.position))
    phones = await connection.execute(
        sa.select(devices.c.device_id, devices.c.created_at, push_tokens.c.updated_at.label("push_token_at"))
        .outerjoin(push_tokens, push_tokens.c.device_id == devices.c.device_id)
        .where(devices.c.user_id == user_id).order_by(devices.c.created_at))
    last = await history.last_location(connection=connection, user_id=user_id)
    return {
        "user_id": user.user_id, "name": user.name, "phone": user.phone, "created_at": user.created_at,
        "pins": {"pin": _set(has_pins), "duress_pin": _set(has_pins)},
        "contacts": [dict(row._mapping) for row in listed],
        "devices": [{"device_id": row.device_id, "created_at": row.created_at,
                     "push_token": _set(row.push_token_at), "push_token_updated_at": row.push_token_at}
                    for row in phones],
        "last_location": None if last is None else {"lat": last.fix.lat, "lon": last.fix.lon,
                                                    "acc": last.fix.accuracy_m, "ts": last.fix.ts,
                                                    "received_at": last.received_at},
    }


async def _trips(connection: AsyncConnection, user_id: uuid.UUID) -> list[dict]:
    columns = [column for column in trips.c if column.name not in ("destination", "planned_route")]
    rows = (await connection.execute(
        sa.select(*columns, *_point(trips.c.destination, trips.c.destination),
                  sa.func.ST_AsGeoJSON(trips.c.planned_route).label("route"))
        .where(trips.c.user_id == user_id).order_by(trips.c.started_at))).all()
    ids = [row.trip_id for row in rows]
    events, links = {}, {}
    for event in await connection.execute(sa.select(trip_events.c.trip_id, trip_events.c.kind, trip_events.c.channel,
                                                    trip_events.c.created_at, trip_events.c.done_at)
                                          .where(trip_events.c.trip_id.in_(ids)).order_by(trip_events.c.id)):
        events.setdefault(event.trip_id, []).append(_without(event, "trip_id"))
    for link in await connection.execute(sa.select(shares.c.trip_id, shares.c.created_at, shares.c.expires_at,
                                                   shares.c.revoked_at).where(shares.c.trip_id.in_(ids))
                                         .order_by(shares.c.created_at)):
        links.setdefault(link.trip_id, []).append(_without(link, "trip_id"))
    found = []
    for row in rows:
        trip = _without(row, "lat", "lon", "route")
        trip["destination"] = None if row.lat is None else {"lat": row.lat, "lon": row.lon}
        trip["planned_route"] = None if row.route is None else json.loads(row.route)
        trip["events"], trip["shares"] = events.get(row.trip_id, []), links.get(row.trip_id, [])
        found.append(trip)
    return found


async def _alerts(connection: AsyncConnection, user_id: uuid.UUID) -> list[dict]:
    shown = ("alert_id", "sos_id", "status", "reason", "duress", "opened_at", "updated_at", "ended_at", "accuracy_m",
             "fix_ts", "quality", "suspect", "precinct_id", "note", "trip", "trip_id", "outcome", "repeats")
    rows = (await connection.execute(
        sa.select(*(alerts.c[name] for name in shown), *_point(alerts.c.location, alerts.c.location))
        .where(alerts.c.user_id == user_id).order_by(alerts.c.opened_at))).all()
    ids = [row.alert_id for row in rows]
    notes, repeats = {}, {}
    for note in await connection.execute(sa.select(alert_notes.c.alert_id, alert_notes.c.author, alert_notes.c.text,
                                                   alert_notes.c.created_at)
                                         .where(alert_notes.c.alert_id.in_(ids)).order_by(alert_notes.c.note_id)):
        notes.setdefault(note.alert_id, []).append({"author": note.author, "text": note.text,
                                                    "created_at": note.created_at})
    for repeat in await connection.execute(
            sa.select(sos_repeats.c.alert_id, sos_repeats.c.sos_id, sos_repeats.c.received_at, sos_repeats.c.note,
                      sos_repeats.c.accuracy_m, sos_repeats.c.fix_ts,
                      *_point(sos_repeats.c.location, sos_repeats.c.location))
            .where(sos_repeats.c.user_id == user_id).order_by(sos_repeats.c.received_at)):
        repeats.setdefault(repeat.alert_id, []).append(_without(repeat, "alert_id"))
    kept = {}
    for fix in await connection.execute(
            sa.select(alert_fixes.c.alert_id, alert_fixes.c.device_ts, alert_fixes.c.accuracy_m,
                      *_point(alert_fixes.c.location, alert_fixes.c.location))
            .where(alert_fixes.c.alert_id.in_(ids)).order_by(alert_fixes.c.alert_id, alert_fixes.c.device_ts)):
        kept.setdefault(fix.alert_id, []).append(_without(fix, "alert_id"))
    return [{**row._mapping, "notes": notes.get(row.alert_id, []), "sos_repeats": repeats.get(row.alert_id, []),
             "kept_track": kept.get(row.alert_id, [])} for row in rows]


def _geojson_chunk(entry, separator: bytes, chunk: list) -> None:
    entry.write(separator + b",".join(_json(track.feature(stored)) for stored in chunk))


def _gpx_chunk(entry, chunk: list) -> None:
    entry.write(b"".join(track.gpx_point(stored) for stored in chunk))


async def archive(*, engine: AsyncEngine, user_id: uuid.UUID, chunk_rows: int = CHUNK_ROWS) -> AsyncIterator[bytes]:
    """The zip archive of everything held about the user, in pieces as they are written."""
    sink = _Sink()
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="REPEATABLE READ")
        # A client that stops reading must not hold the snapshot (and its locks) for long: the
        # retention job's partition changes and vacuum wait for it.
        await connection.execute(sa.text(f"SET LOCAL idle_in_transaction_session_timeout = '{IDLE_TIMEOUT_S}s'"))
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archived:
            archived.writestr("README.txt", README)
            archived.writestr("profile.json", _json(await _profile(connection, user_id)))
            archived.writestr("trips.json", _json(await _trips(connection, user_id)))
            archived.writestr("alerts.json", _json(await _alerts(connection, user_id)))
            yield sink.take()
            with archived.open("history.geojson", "w", force_zip64=True) as entry:
                entry.write(track.GEOJSON_HEAD)
                separator = b""
                async for chunk in history.stream_track(connection=connection, user_id=user_id, chunk_rows=chunk_rows):
                    # Encoding and deflating a chunk in a worker thread: a year of fixes is seconds of
                    # it, and the event loop's phones and SOS must not wait behind it.
                    await asyncio.to_thread(_geojson_chunk, entry, separator, chunk)
                    separator = b","
                    yield sink.take()
                entry.write(track.GEOJSON_TAIL)
            with archived.open("history.gpx", "w", force_zip64=True) as entry:
                entry.write(track.gpx_head(name=f"Guardian history {user_id}"))
                async for chunk in history.stream_track(connection=connection, user_id=user_id, chunk_rows=chunk_rows):
                    await asyncio.to_thread(_gpx_chunk, entry, chunk)
                    yield sink.take()
                entry.write(track.GPX_TAIL)
    yield sink.take()
