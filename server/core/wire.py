"""Wire contract v1: the frames phones send and the frames the server answers.

Decoding is one msgspec pass on the happy path; only a frame that fails is
decoded a second time, generically, to say which field and which seq were wrong.
Whatever passes is storable: seq within BIGINT, times within what both Python and
PostgreSQL hold; a frame nested too deep for any reader is read with its deep values
as null (`jsontext.shallow`), never left to raise RecursionError.
"""

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec

from geo.fix import Fix
from server.core import jsontext, refusals

# BIGINT, the column seq is stored in: a larger one would fail the whole group commit.
MAX_SEQ = 2**63 - 1
Seq = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
NOTE_MAX_CHARS = 1000
# The latest instant PostgreSQL and Python both hold, in epoch milliseconds.
MAX_EPOCH_MS = 253_402_300_799_999
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# asyncpg stores Python's first and last instants as PostgreSQL's -infinity and infinity,
# and reads them back naive: only the instants strictly between are times.
FIRST_INSTANT, LAST_INSTANT = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)


class PingFields(msgspec.Struct):
    """A ping without its `type`, as it stands inside a batch."""

    seq: Seq
    ts: int | str
    lat: float
    lon: float
    acc: float | None = None
    alt: float | None = None
    speed: float | None = None
    heading: float | None = None
    battery: float | None = None


class Ping(PingFields, tag="ping", tag_field="type"):
    pass


class Batch(msgspec.Struct, tag="batch", tag_field="type"):
    # Raw: each ping is decoded on its own, so one bad ping refuses only itself.
    pings: list[msgspec.Raw]


class Hello(msgspec.Struct, tag="hello", tag_field="type"):
    token: str


class HttpBatch(msgspec.Struct):
    pings: list[msgspec.Raw]


class SosFields(msgspec.Struct):
    """An SOS without its `type` (the body of `POST /v1/sos`). Only `sos_id` is required:
    a fix that is missing, or fails a rule, falls back to the last known location."""

    sos_id: str
    ts: int | str | None = None
    lat: float | None = None
    lon: float | None = None
    acc: float | None = None
    note: Annotated[str, msgspec.Meta(max_length=NOTE_MAX_CHARS)] | None = None
    # Set by the salvage, never taken from the wire: what it could not use, as the alert's
    # annotations (`unreadable_note`, `note_truncated`, ...).
    salvaged: tuple[str, ...] = ()


class Sos(SosFields, tag="sos", tag_field="type"):
    pass


class SosCancel(msgspec.Struct, tag="sos_cancel", tag_field="type"):
    alert_id: str
    pin: str


class TripFields(msgspec.Struct):
    """A check-in without its `type` (the JSON body of `POST /v1/trips`); `trips.checkin` judges it."""

    kind: str
    plate: str | None = None
    driver_name: str | None = None
    vehicle: dict | None = None  # {"make", "colour"}
    destination: dict | None = None  # {"lat", "lon"}
    eta: int | str | None = None
    planned_route: object = None  # a GeoJSON LineString
    expected_return: int | str | None = None
    # Start this trip even though another is unfinished: that one is ended, explicitly.
    replace: bool = False


class TripStart(TripFields, tag="trip_start", tag_field="type"):
    pass


class TripEnd(msgspec.Struct, tag="trip_end", tag_field="type"):
    trip_id: str


class Safe(msgspec.Struct, tag="safe", tag_field="type"):
    """The answer to `are_you_safe`: the user's PIN, and optionally how long to extend the trip."""

    trip_id: str
    pin: str
    extend_s: int | None = None


PhoneFrame = Ping | Batch | Hello | Sos | SosCancel | TripStart | TripEnd | Safe
PHONE_FRAME_TYPES = {"ping", "batch", "hello", "sos", "sos_cancel", "trip_start", "trip_end", "safe"}
TRIP_FRAMES = (TripStart, TripEnd, Safe)

_frame_decoder = msgspec.json.Decoder(PhoneFrame)
_ping_decoder = msgspec.json.Decoder(PingFields)
_http_batch_decoder = msgspec.json.Decoder(HttpBatch | list[msgspec.Raw])
_sos_decoder = msgspec.json.Decoder(SosFields)
_trip_decoder = msgspec.json.Decoder(TripFields)
_encoder = msgspec.json.Encoder()


class _SeqOnly(msgspec.Struct):
    seq: object = None


_seq_decoder = msgspec.json.Decoder(_SeqOnly | list | str | float | int | bool | None)


def seq_of(ping: "PingFields | msgspec.Raw | bytes | str") -> int | None:
    """The seq of a ping of a frame (decoded or not), when it is a usable one, so the phone
    can be told which of its pings a refusal is about."""
    if isinstance(ping, PingFields):
        return ping.seq
    try:
        body = _seq_decoder.decode(ping)
    except msgspec.DecodeError:
        return None
    seq = body.seq if isinstance(body, _SeqOnly) else None
    return seq if type(seq) is int and 0 <= seq <= MAX_SEQ else None


def decode_frame(raw: bytes | str) -> PhoneFrame:
    """Parse one phone frame. Raises refusals.Refusal with the contract's code.

    An SOS is never refused for a bad fix (DESIGN rule 3): one whose fields are wrong,
    or that carries JSON's NaN or Infinity, is salvaged with what can be read.
    """
    try:
        return _decode_frame(raw)
    except RecursionError:
        return _decode_frame(jsontext.shallow(raw))


def _decode_frame(raw: bytes | str) -> PhoneFrame:
    try:
        frame = _frame_decoder.decode(raw)
    except msgspec.ValidationError as error:  # a subclass of DecodeError: catch it first
        refusal = _diagnose(raw, error)
    except msgspec.DecodeError as error:
        refusal = refusals.BadJson(f"not valid JSON: {error}")
    else:
        if type(frame) is Sos and frame.salvaged:
            frame.salvaged = ()
        return frame
    sos = salvage_sos(raw)
    if sos is not None:
        return sos
    raise refusal


def _number(value: object) -> float | None:
    """A JSON number as a float (an integer too large for one is infinite, for the rules to
    refuse); None for anything else."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def salvage_sos(raw: bytes | str) -> Sos | None:
    """An SOS frame read leniently: unreadable fix fields become None (NaN stays NaN, for
    the rules to annotate). None when it is no SOS or has no usable `sos_id`."""
    return _salvaged(jsontext.lenient(raw))


def _salvaged(body: object) -> Sos | None:
    if not isinstance(body, dict) or body.get("type") != "sos" or not isinstance(body.get("sos_id"), str):
        return None
    salvaged = []

    def read(name: str, usable: Callable[[object], bool]) -> object:
        value = body.get(name)
        if value is None or usable(value):
            return value
        salvaged.append(f"unreadable_{name}")
        return None

    fix = {name: _number(read(name, lambda value: _number(value) is not None)) for name in ("lat", "lon", "acc")}
    ts = read("ts", lambda value: isinstance(value, str) or type(value) is int)
    note = read("note", lambda value: isinstance(value, str))
    if note is not None and len(note) > NOTE_MAX_CHARS:
        note = note[:NOTE_MAX_CHARS]
        salvaged.append("note_truncated")
    return Sos(sos_id=body["sos_id"], ts=ts, note=note, salvaged=tuple(salvaged), **fix)


def _diagnose(raw: bytes | str, error: msgspec.ValidationError) -> refusals.Refusal:
    body = jsontext.generic(raw)
    if body is None:
        return refusals.InvalidField(str(error), field=jsontext.field_of(error), seq=seq_of(raw))
    if not isinstance(body, dict):
        return refusals.InvalidField("a frame must be a JSON object")
    kind = body.get("type")
    if not isinstance(kind, str) or kind not in PHONE_FRAME_TYPES:
        return refusals.UnknownType(f"unknown frame type {kind!r}", field="type")
    if kind == "batch" and isinstance(body.get("pings"), list):
        # Only the list's own shape can fail here: its items are decoded later.
        return refusals.InvalidField(str(error), field="pings")
    return refusals.InvalidField(str(error), field=jsontext.field_of(error), seq=seq_of(raw))


def decode_batch(raw: bytes | str) -> list[msgspec.Raw]:
    """The raw pings of an HTTP batch body: `{"pings": [...]}` or a bare list."""
    try:
        try:
            body = _http_batch_decoder.decode(raw)
        except RecursionError:
            body = _http_batch_decoder.decode(jsontext.shallow(raw))
    except msgspec.ValidationError as error:
        raise refusals.InvalidField(f"expected a list of pings: {error}", field="pings") from None
    except msgspec.DecodeError as error:
        raise refusals.BadJson(f"not valid JSON: {error}") from None
    return body.pings if isinstance(body, HttpBatch) else body


def decode_ping(raw: bytes | str) -> PingFields:
    """Parse one ping of a batch. Raises refusals.Refusal (with its seq when readable)."""
    try:
        return _decode_ping(raw)
    except RecursionError:
        return _decode_ping(jsontext.shallow(raw))


def _decode_ping(raw: bytes | str) -> PingFields:
    try:
        return _ping_decoder.decode(raw)
    except msgspec.ValidationError as error:
        if isinstance(jsontext.generic(raw), list | str | int | float | bool):
            raise refusals.InvalidField("a ping must be a JSON object") from None
        raise refusals.InvalidField(str(error), field=jsontext.field_of(error), seq=seq_of(raw)) from None
    except msgspec.DecodeError as error:
        raise refusals.BadJson(f"not valid JSON: {error}") from None


def decode_sos(raw: bytes | str) -> SosFields:
    """The body of `POST /v1/sos` (an SOS without `type`), salvaged like a frame. Raises refusals.Refusal."""
    try:
        return _decode_sos(raw)
    except RecursionError:
        return _decode_sos(jsontext.shallow(raw))


def _decode_sos(raw: bytes | str) -> SosFields:
    try:
        sos = _sos_decoder.decode(raw)
        if sos.salvaged:
            sos.salvaged = ()
        return sos
    except msgspec.DecodeError as error:
        refusal = (refusals.InvalidField(str(error), field=jsontext.field_of(error))
                   if isinstance(error, msgspec.ValidationError) else
                   refusals.BadJson(f"not valid JSON: {error}"))
    body = jsontext.lenient(raw)
    sos = _salvaged({**body, "type": "sos"}) if isinstance(body, dict) else None
    if sos is None:
        raise refusal
    return sos


def decode_trip(raw: bytes | str) -> TripFields:
    """The JSON body of `POST /v1/trips` (a `trip_start` without `type`). Raises refusals.Refusal."""
    try:
        try:
            return _trip_decoder.decode(raw)
        except RecursionError:
            return _trip_decoder.decode(jsontext.shallow(raw))
    except msgspec.ValidationError as error:  # a subclass of DecodeError: catch it first
        raise refusals.InvalidField(str(error), field=jsontext.field_of(error)) from None
    except msgspec.DecodeError as error:
        raise refusals.BadJson(f"not valid JSON: {error}") from None


def parse_time(value: int | str, *, field: str = "ts", seq: int | None = None) -> datetime:
    """Epoch milliseconds or an RFC 3339 string with a zone, as an aware UTC datetime."""
    if isinstance(value, int):
        if not 0 <= value <= MAX_EPOCH_MS:
            raise refusals.InvalidField(f"{field} in epoch ms must be within 1970..9999", field=field, seq=seq)
        return EPOCH + timedelta(milliseconds=value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise refusals.InvalidField(f"{field} is not an RFC 3339 time", field=field, seq=seq) from None
    if parsed.tzinfo is None:
        raise refusals.InvalidField(f"{field} must carry a zone (Z or an offset)", field=field, seq=seq)
    try:
        moment = parsed.astimezone(UTC)  # 9999-12-31T23:30-01:00 is in year 10000 in UTC
    except OverflowError:
        moment = LAST_INSTANT
    if not FIRST_INSTANT < moment < LAST_INSTANT:
        raise refusals.InvalidField(f"{field} must be within years 1..9999 in UTC", field=field, seq=seq)
    return moment


def to_fix(ping: PingFields) -> Fix:
    """The geo view of a decoded ping (its time parsed). Raises refusals.Refusal on a bad ts."""
    return Fix(
        lat=ping.lat,
        lon=ping.lon,
        ts=parse_time(ping.ts, seq=ping.seq),
        accuracy_m=ping.acc,
        altitude_m=ping.alt,
        speed_mps=ping.speed,
        heading_deg=ping.heading,
        battery_pct=ping.battery,
    )


def epoch_ms(moment: datetime) -> int:
    """The inverse of parse_time for an integer: epoch milliseconds of an aware datetime."""
    return (moment - EPOCH) // timedelta(milliseconds=1)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, as the server always answers."""
    if moment.tzinfo is None:  # PostgreSQL's ±infinity, as asyncpg reads it (rows stored before
        moment = moment.replace(tzinfo=UTC)  # parse_time refused the extreme instants)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def encode(frame: dict) -> str:
    return _encoder.encode(frame).decode()


def ack(seq: int) -> str:
    return f'{{"type":"ack","seq":{seq}}}'
