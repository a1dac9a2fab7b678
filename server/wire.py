"""Wire contract v1: the frames phones send and the frames the server answers.

Decoding is one msgspec pass on the happy path; only a frame that fails is
decoded a second time, generically, to say which field and which seq were wrong.
"""

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec

from geo.fix import Fix

NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]

# The latest instant PostgreSQL and Python both hold, in epoch milliseconds.
MAX_EPOCH_MS = 253_402_300_799_999
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PingFields(msgspec.Struct):
    """A ping without its `type`, as it stands inside a batch."""

    seq: NonNegativeInt
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
    note: Annotated[str, msgspec.Meta(max_length=1000)] | None = None


class Sos(SosFields, tag="sos", tag_field="type"):
    pass


class SosCancel(msgspec.Struct, tag="sos_cancel", tag_field="type"):
    alert_id: str
    pin: str


PhoneFrame = Ping | Batch | Hello | Sos | SosCancel
PHONE_FRAME_TYPES = {"ping", "batch", "hello", "sos", "sos_cancel"}

_frame_decoder = msgspec.json.Decoder(PhoneFrame)
_ping_decoder = msgspec.json.Decoder(PingFields)
_http_batch_decoder = msgspec.json.Decoder(HttpBatch | list[msgspec.Raw])
_sos_decoder = msgspec.json.Decoder(SosFields)
_encoder = msgspec.json.Encoder()


class FrameError(Exception):
    """A frame (or one ping in it) the server refuses: becomes an `error` frame."""

    def __init__(self, code: str, message: str, *, field: str | None = None, seq: int | None = None,
                 seqs: tuple[int, int] | None = None):
        """`seq`: the one refused ping. `seqs`: the first and last seq of a refused batch (an
        addition to the contract, so a phone that sends several batches knows which to resend)."""
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.seq = seq
        self.seqs = seqs

    def frame(self) -> dict:
        body = {"type": "error", "code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        if self.seq is not None:
            body["seq"] = self.seq
        if self.seqs is not None:
            body["first_seq"], body["last_seq"] = self.seqs
        return body


_MISSING = re.compile(r"missing required field `([^`]+)`(?: - at `\$\.?([^`]*)`)?")
_AT = re.compile(r" - at `\$\.?([^`]*)`")


def _field_of(error: msgspec.ValidationError) -> str | None:
    text = str(error)
    missing = _MISSING.search(text)
    if missing:
        name, parent = missing.groups()
        return f"{parent}.{name}" if parent else name
    at = _AT.search(text)
    return at.group(1) if at else None


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
    return seq if type(seq) is int and seq >= 0 else None


def decode_frame(raw: bytes | str) -> Ping | Batch | Hello | Sos | SosCancel:
    """Parse one phone frame. Raises FrameError with the contract's code.

    An SOS is never refused for a bad fix (DESIGN rule 3): one whose fields are wrong,
    or that carries JSON's NaN or Infinity, is salvaged with what can be read.
    """
    try:
        return _frame_decoder.decode(raw)
    except msgspec.ValidationError as error:  # a subclass of DecodeError: catch it first
        refusal = _diagnose(raw, error)
    except msgspec.DecodeError as error:
        refusal = FrameError("bad_json", f"not valid JSON: {error}")
    sos = salvage_sos(raw)
    if sos is not None:
        return sos
    raise refusal


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def salvage_sos(raw: bytes | str) -> Sos | None:
    """An SOS frame read leniently: unreadable fix fields become None (NaN stays NaN, for
    the rules to annotate). None when it is no SOS or has no usable `sos_id`."""
    return _salvaged(_lenient(raw))


def _lenient(raw: bytes | str) -> object:
    """JSON as the standard library reads it (NaN and Infinity included), None if unreadable."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _salvaged(body: object) -> Sos | None:
    if not isinstance(body, dict) or body.get("type") != "sos" or not isinstance(body.get("sos_id"), str):
        return None
    ts = body.get("ts")
    note = body.get("note")
    return Sos(
        sos_id=body["sos_id"],
        ts=ts if isinstance(ts, str) or (type(ts) is int) else None,
        lat=_number(body.get("lat")),
        lon=_number(body.get("lon")),
        acc=_number(body.get("acc")),
        note=note[:1000] if isinstance(note, str) else None,
    )


def _generic(raw: bytes | str) -> object:
    """The frame as plain Python, or None where even that fails (a number out of range)."""
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None


def _diagnose(raw: bytes | str, error: msgspec.ValidationError) -> FrameError:
    body = _generic(raw)
    if body is None:
        return FrameError("invalid_field", str(error), field=_field_of(error), seq=seq_of(raw))
    if not isinstance(body, dict):
        return FrameError("invalid_field", "a frame must be a JSON object")
    kind = body.get("type")
    if not isinstance(kind, str) or kind not in PHONE_FRAME_TYPES:
        return FrameError("unknown_type", f"unknown frame type {kind!r}", field="type")
    if kind == "batch" and isinstance(body.get("pings"), list):
        # Only the list's own shape can fail here: its items are decoded later.
        return FrameError("invalid_field", str(error), field="pings")
    return FrameError("invalid_field", str(error), field=_field_of(error), seq=seq_of(raw))


def decode_batch(raw: bytes | str) -> list[msgspec.Raw]:
    """The raw pings of an HTTP batch body: `{"pings": [...]}` or a bare list."""
    try:
        body = _http_batch_decoder.decode(raw)
    except msgspec.ValidationError as error:
        raise FrameError("invalid_field", f"expected a list of pings: {error}", field="pings") from None
    except msgspec.DecodeError as error:
        raise FrameError("bad_json", f"not valid JSON: {error}") from None
    return body.pings if isinstance(body, HttpBatch) else body


def decode_ping(raw: bytes | str) -> PingFields:
    """Parse one ping of a batch. Raises FrameError (with its seq when readable)."""
    try:
        return _ping_decoder.decode(raw)
    except msgspec.ValidationError as error:
        if isinstance(_generic(raw), list | str | int | float | bool):
            raise FrameError("invalid_field", "a ping must be a JSON object") from None
        raise FrameError("invalid_field", str(error), field=_field_of(error), seq=seq_of(raw)) from None
    except msgspec.DecodeError as error:
        raise FrameError("bad_json", f"not valid JSON: {error}") from None


def decode_sos(raw: bytes | str) -> SosFields:
    """The body of `POST /v1/sos` (an SOS without `type`), salvaged like a frame. Raises FrameError."""
    try:
        return _sos_decoder.decode(raw)
    except msgspec.DecodeError as error:
        refusal = (FrameError("invalid_field", str(error), field=_field_of(error))
                   if isinstance(error, msgspec.ValidationError) else
                   FrameError("bad_json", f"not valid JSON: {error}"))
    body = _lenient(raw)
    sos = _salvaged({**body, "type": "sos"}) if isinstance(body, dict) else None
    if sos is None:
        raise refusal
    return sos


def parse_time(value: int | str, *, field: str = "ts", seq: int | None = None) -> datetime:
    """Epoch milliseconds or an RFC 3339 string with a zone, as an aware UTC datetime."""
    if isinstance(value, int):
        if not 0 <= value <= MAX_EPOCH_MS:
            raise FrameError("invalid_field", f"{field} in epoch ms must be within 1970..9999", field=field, seq=seq)
        return EPOCH + timedelta(milliseconds=value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise FrameError("invalid_field", f"{field} is not an RFC 3339 time", field=field, seq=seq) from None
    if parsed.tzinfo is None:
        raise FrameError("invalid_field", f"{field} must carry a zone (Z or an offset)", field=field, seq=seq)
    return parsed.astimezone(UTC)


def to_fix(ping: PingFields) -> Fix:
    """The geo view of a decoded ping (its time parsed). Raises FrameError on a bad ts."""
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
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def encode(frame: dict) -> str:
    return _encoder.encode(frame).decode()


def ack(seq: int) -> str:
    return f'{{"type":"ack","seq":{seq}}}'
