"""`POST /owntracks/pub`: OwnTracks in HTTP mode, a phone without our app.

The app posts each message of its queue as its JSON (owntracks.org/booklet/tech/json), with
HTTP Basic auth: any user name, the device token as password. A `location` is a fix, stored
through the one ping path (`fixes.store`) under the token's OwnTracks device. Every other
`_type` (`transition`, `waypoint(s)`, `lwt`, `card`, `status`, `steps`, ...) and a
zero-length body (the app posts one when a friend is deleted) are accepted and ignored, never
an error: the app keeps a message it could not post at the head of its queue. `encrypted` is
refused (400): this server holds no shared secret to decrypt it with. The answer is a JSON
array of messages for the app: while the user has an unfinished alert, a `reportLocation`
command asks for a fix now, as the phone socket asks for a faster report interval.
OwnTracks has no SOS: see the README ("Tracker apps").
"""

import base64
import binascii
import logging

import msgspec
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from server.accounts import auth
from server.core import db, errors, jsontext, openapi, refusals, wire
from server.phones import fixes

router = APIRouter()
# The message types of the OwnTracks JSON format besides `location` and `encrypted` (its booklet).
KNOWN_TYPES = frozenset({"beacon", "card", "cmd", "configuration", "lwt", "request", "status", "steps",
                         "transition", "waypoint", "waypoints"})
log = logging.getLogger(__name__)

CHALLENGE = 'Basic realm="Guardian", charset="UTF-8"'
REPORT_LOCATION = {"_type": "cmd", "action": "reportLocation"}
# The app's names for the wire's fields, to say which one a refusal is about.
NAMES = {"ts": "tst", "acc": "acc", "alt": "alt", "speed": "vel", "heading": "cog", "battery": "batt"}


class _Typed(msgspec.Struct, rename={"type": "_type"}):
    type: str


class _Location(msgspec.Struct):
    """`_type: location`; `vac`, `bs`, `tid`, `t`, `conn`, `created_at`, `topic`, ... are ignored."""

    lat: float
    lon: float
    tst: int
    acc: float | None = None
    alt: float | None = None
    vel: float | None = None
    cog: float | None = None
    batt: float | None = None


_typed_decoder = msgspec.json.Decoder(_Typed)
_location_decoder = msgspec.json.Decoder(_Location)


def password(authorization: str | None) -> str | None:
    """The password of an `Authorization: Basic ...` header (the device token), or None."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    # Split at the last colon: a device token has none, while a user name typed into the app might.
    _, colon, secret = decoded.rpartition(":")
    return secret if colon and secret else None


def _decode(decoder: msgspec.json.Decoder, raw: bytes):
    try:
        try:
            return decoder.decode(raw)
        except RecursionError:
            raw = jsontext.shallow(raw)
            return decoder.decode(raw)
    except msgspec.ValidationError as error:  # a subclass of DecodeError: caught first
        if not isinstance(jsontext.generic(jsontext.shallow(raw)), dict):  # it may fail early, above a deep value
            raise refusals.InvalidField("an OwnTracks message is a JSON object with a _type") from None
        raise refusals.InvalidField(str(error), field=jsontext.field_of(error)) from None
    except msgspec.DecodeError as error:
        raise refusals.BadJson(f"not valid JSON: {error}") from None


def _fix(location: _Location) -> wire.PingFields:
    return fixes.ping(ts_ms=fixes.epoch_ms(location.tst, field="tst", seconds_only=True), lat=location.lat,
                      lon=location.lon, acc=location.acc, alt=location.alt,
                      speed=None if location.vel is None else location.vel * fixes.KMH_TO_MPS,
                      heading=location.cog, battery=location.batt)


@router.post("/owntracks/pub", responses={
    200: {"description": "stored (a location) or ignored; messages for the app",
          "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}},
    **openapi.refusals(400, 401, 413, 429, 503)},
    openapi_extra={"requestBody": {"required": False, "content": {"application/json": {"schema": {
        "type": "object", "required": ["_type"], "properties": {
            "_type": {"type": "string"}, "lat": {"type": "number"}, "lon": {"type": "number"},
            "tst": {"type": "integer", "description": "epoch seconds"},
            "acc": {"type": "number"}, "alt": {"type": "number"}, "vel": {"type": "number", "description": "km/h"},
            "cog": {"type": "number"}, "batt": {"type": "number"}}}}}}})
async def publish(request: Request) -> JSONResponse:
    """One OwnTracks message, answered once a location is committed (or refused)."""
    try:
        return await _publish(request)
    except refusals.Refusal as refusal:
        return errors.response(refusal, statuses=errors.TRACKER_HTTP_STATUS, challenge=CHALLENGE)


async def _publish(request: Request) -> JSONResponse:
    services = request.app.state.services
    try:
        device = await auth.device_for(engine=services.engine, token=password(request.headers.get("authorization")))
    except db.STORAGE_ERRORS as error:
        log.error("OwnTracks credentials not checked, storage unavailable: %s", db.describe(error))
        raise refusals.Unavailable("storage unavailable; retry") from None
    if device is None:
        raise refusals.Unauthorized("the device token is required as the password (HTTP Basic auth)")
    raw = await request.body()  # at most max_frame_bytes (server/core/bodysize.py)
    if raw.strip():
        kind = _decode(_typed_decoder, raw).type
        if kind == "encrypted":
            raise refusals.InvalidField("encrypted payloads are not supported: turn off encryption "
                                        "(no shared secret is configured on this server)", field="_type")
        if kind == "location":
            await fixes.store(services=services, device=fixes.owntracks_device(device),
                              fixes=[_fix(_decode(_location_decoder, raw))], names=NAMES)
        else:
            # Only a type OwnTracks documents is named: the field is the client's text, and a log
            # line must never quote what a client sent (it could be a token or a position).
            log.debug("OwnTracks message of _type %s ignored", kind if kind in KNOWN_TYPES else "(unknown)")
    commands = [REPORT_LOCATION] if services.fanout.phone_alerts(str(device.user_id)) else []
    return JSONResponse(commands)
