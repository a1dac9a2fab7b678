"""`/osmand`: Traccar Client, and anything else speaking the OsmAnd protocol (traccar.org/osmand).

`GET` or `POST`, the report in the query string, in a form body, or in the JSON body that
Traccar Client sends from version 9 (its location SDK's own shape: `device_id` and a
`location` with `timestamp`, `coords` in m/s and metres, `battery.level` from 0 to 1, and
`extras.alarm` for its SOS). The id (`id`/`deviceid`/`device_id`) is a tracker the user
registered (`POST /v1/devices`); an unknown one is 404, a value that cannot be stored 400
with the reason, a stored fix 200 with an empty body (what the app waits for).

`alarm=sos` raises an SOS through the SOS path (`alerts.service.raise_alert`), on the alert
path's own pool and before the fix is queued, never filtered: an unreadable or impossible
fix only falls back to the last known location. Its sos_id is derived from the device and
the report's time, so the app resending the same report raises nothing twice.
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response

from server.accounts import trackers
from server.accounts.auth import Device
from server.alerts import routes as sosroute
from server.core import db, errors, openapi, refusals, wire
from server.phones import fixes, osmandjson

router = APIRouter()
log = logging.getLogger(__name__)

# The protocol's names for the wire's fields, to say which one a refusal is about.
NAMES = {"ts": "timestamp", "acc": "accuracy", "alt": "altitude", "speed": "speed", "heading": "bearing",
         "battery": "batt"}
MAX_FORM_FIELDS = 100
# Two spellings of one position that differ by less than this (about a centimetre) agree.
SAME_POSITION_DEG = 1e-7
# What a report's unreadable fields take from the SOS fix (the alert's annotations).
SOS_FIELDS = {"lat": ("lat",), "lon": ("lon",), "location": ("lat", "lon"), "accuracy": ("acc",),
              "timestamp": ("ts",)}


@dataclass(frozen=True, slots=True)
class Report:
    """One report read, whether or not its fix is storable: an SOS is raised either way."""

    external_id: str | None
    alarm: str | None
    # The report's time as sent, which identifies its SOS (None: the report had none).
    sos_key: str | None
    fix: wire.PingFields | None
    problems: list[refusals.Refusal]
    ts_ms: int | None = None
    lat: float | None = None
    lon: float | None = None
    accuracy_m: float | None = None

    @property
    def is_sos(self) -> bool:
        return (self.alarm or "").lower() == "sos"


class Reading:
    """Reads fields, keeping each refusal instead of raising it (an SOS goes on without them)."""

    def __init__(self):
        self.problems: list[refusals.Refusal] = []

    def number(self, value: object, *, field: str, scale: float = 1.0, unknown: float | None = None) -> float | None:
        """A number, times `scale`; None when absent, unreadable or the app's `unknown` value."""
        try:
            found = fixes.number(value, field=field)
        except refusals.Refusal as refusal:
            self.problems.append(refusal)
            return None
        return None if found is None or found == unknown else found * scale

    def report(self, *, external_id: object, alarm: object, timestamp: object, lat: float | None,
               lon: float | None, **measures: float | None) -> Report:
        """The report of what was read (`measures` in the wire's units and names); `timestamp` as
        sent (None: the server's time)."""
        ts_ms = None
        if timestamp is None or timestamp == "":
            ts_ms = wire.epoch_ms(datetime.now(UTC))
        else:
            try:
                ts_ms = fixes.epoch_ms(timestamp, field="timestamp")
            except refusals.Refusal as refusal:
                self.problems.append(refusal)
        if lat is None or lon is None:
            if not any(problem.field in ("lat", "lon", "location") for problem in self.problems):
                self.problems.append(refusals.InvalidField("lat and lon (or location) are required", field="lat"))
        fix = None
        if not self.problems:
            fix = fixes.ping(ts_ms=ts_ms, lat=lat, lon=lon, **measures)
        sos_key = str(ts_ms) if ts_ms is not None else None if timestamp is None else str(timestamp)[:64]
        return Report(external_id=external_id if isinstance(external_id, str) else None,
                      alarm=alarm if isinstance(alarm, str) else None, sos_key=sos_key, fix=fix,
                      problems=self.problems, ts_ms=ts_ms, lat=lat, lon=lon, accuracy_m=measures.get("acc"))


def from_params(params: dict[str, str]) -> Report:
    """A report in query or form parameters: speed in knots, battery in percent."""
    reading = Reading()
    lat = reading.number(params.get("lat"), field="lat")
    lon = reading.number(params.get("lon"), field="lon")
    if params.get("location"):
        parts = params["location"].split(",")
        if len(parts) != 2:
            reading.problems.append(refusals.InvalidField("location must be lat,lon", field="location"))
        else:
            at = (reading.number(parts[0].strip(), field="location"), reading.number(parts[1].strip(), field="location"))
            if "lat" not in params and "lon" not in params:
                lat, lon = at
            elif None not in (lat, lon, *at) and (abs(lat - at[0]) > SAME_POSITION_DEG
                                                 or abs(lon - at[1]) > SAME_POSITION_DEG):
                reading.problems.append(refusals.InvalidField("lat/lon and location disagree", field="location"))
    heading = params.get("bearing") if params.get("bearing") not in (None, "") else params.get("heading")
    return reading.report(
        external_id=params.get("id") or params.get("deviceid"), alarm=params.get("alarm"),
        timestamp=params.get("timestamp"), lat=lat, lon=lon,
        acc=reading.number(params.get("accuracy"), field="accuracy"),
        alt=reading.number(params.get("altitude"), field="altitude"),
        speed=reading.number(params.get("speed"), field="speed", scale=fixes.KNOTS_TO_MPS),
        heading=reading.number(heading, field="bearing"),
        battery=reading.number(params.get("batt"), field="batt"))


async def read(request: Request) -> list[Report]:
    """The reports of a request: its query string if it has one (as Traccar reads it), else its
    body, JSON or form."""
    if request.query_params:
        return [from_params(dict(request.query_params))]  # a repeated name: its last value
    raw = await request.body()  # at most max_frame_bytes (server/core/bodysize.py)
    if "json" in request.headers.get("content-type", "") or raw.lstrip()[:1] in (b"{", b"["):
        return [osmandjson.read(location, reading=Reading()) for location in osmandjson.locations(raw)]
    try:
        form = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:
        raise refusals.InvalidField(f"a form holds at most {MAX_FORM_FIELDS} fields") from None
    return [from_params(dict(form))]


ANSWERS = {200: {"description": "stored (and its SOS raised): an empty body"},
           **openapi.refusals(400, 404, 413, 429, 503)}
_TEXT, _NUMBER = {"type": "string"}, {"type": "number"}
_FIELDS = {"timestamp": {"description": "epoch seconds, milliseconds (from 2^31) or ISO 8601 with a zone",
                         "type": "string"},
           "lat": _NUMBER, "lon": _NUMBER, "location": {"type": "string", "description": "lat,lon"},
           "speed": {"type": "number", "description": "knots"}, "bearing": _NUMBER, "heading": _NUMBER,
           "altitude": _NUMBER, "accuracy": _NUMBER, "batt": {"type": "number", "description": "percent"},
           "charge": {"type": "boolean"}, "alarm": {"type": "string", "description": "`sos` raises an SOS"}}
_ID = {"type": "string", "minLength": 1, "description": "the external_id registered with POST /v1/devices"}
QUERY = {"parameters": [{"name": "id", "in": "query", "required": True, "schema": _ID},
                        *({"name": name, "in": "query", "schema": schema} for name, schema in _FIELDS.items())]}
BODIES = {"requestBody": {"required": True, "content": {
    "application/x-www-form-urlencoded": {"schema": {"type": "object", "required": ["id"],
                                                     "properties": {"id": _ID, **_FIELDS}}},
    "application/json": {"schema": {"type": "object", "required": ["device_id", "location"], "properties": {
        "device_id": _ID, "location": {"type": "object", "description": "Traccar Client's: timestamp, coords "
                                       "(m/s, metres), battery (level 0..1), extras.alarm"}}}}}}}


@router.get("/osmand", response_class=Response, responses=ANSWERS, operation_id="osmand_report_get",
            openapi_extra=QUERY)
@router.post("/osmand", response_class=Response, responses=ANSWERS, operation_id="osmand_report_post",
             openapi_extra=BODIES)
async def report(request: Request) -> Response:
    """One report (or a Traccar Client batch), answered once committed."""
    try:
        return await _report(request)
    except refusals.Refusal as refusal:
        return errors.response(refusal, statuses=errors.TRACKER_HTTP_STATUS)


async def _report(request: Request) -> Response:
    services = request.app.state.services
    reports = await read(request)
    external_id = next((found.external_id for found in reports if found.external_id), None)
    if external_id is None:
        raise refusals.InvalidField("id is required (the device id registered with POST /v1/devices)", field="id")
    sos = [found for found in reports if found.is_sos]
    try:  # an SOS's lookup never waits for a connection behind the pings
        device = await trackers.find(engine=services.alert_engine if sos else services.engine,
                                     protocol="osmand", external_id=external_id)
    except db.STORAGE_ERRORS as error:
        log.error("OsmAnd device not looked up, storage unavailable: %s", db.describe(error))
        raise refusals.Unavailable("storage unavailable; retry") from None
    if device is None:
        raise refusals.NotFound("unknown device id: register it first with POST /v1/devices", field="id")
    for found in sos:
        await raise_sos(services=services, device=device, found=found)
    problems = [problem for found in reports if not found.is_sos for problem in found.problems]
    if problems:
        raise problems[0]
    storable = [found.fix for found in reports if found.fix is not None and not found.is_sos]
    if storable:
        await fixes.store(services=services, device=device, fixes=storable, names=NAMES)
    for found in sos:
        if found.fix is not None:
            try:  # into the track too, if it is storable: the alert holds it either way
                await fixes.store(services=services, device=device, fixes=[found.fix], names=NAMES)
            except refusals.InvalidField:
                log.info("the fix of an OsmAnd SOS is not storable; the alert is raised without it")
    return Response(status_code=200)


async def raise_sos(*, services, device: Device, found: Report) -> None:
    """The report's SOS, committed (and told to the consoles) before this returns."""
    key = found.sos_key if found.sos_key is not None else uuid.uuid4().hex
    unreadable = sorted({f"unreadable_{name}" for problem in found.problems
                         for name in SOS_FIELDS.get(problem.field or "", ())})
    sos = wire.SosFields(sos_id=str(uuid.uuid5(device.device_id, f"osmand-sos:{key}")),
                         ts=found.ts_ms,
                         lat=found.lat, lon=found.lon, acc=found.accuracy_m, salvaged=tuple(unreadable))
    await sosroute.raise_over_http(services=services, device=device, sos=sos)
