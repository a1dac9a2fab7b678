"""The JSON body of Traccar Client (from version 9): its location SDK's record of a fix.

    {"device_id": "...", "location": {"timestamp": "2026-12-01T10:00:00.000Z",
     "coords": {"latitude", "longitude", "accuracy", "speed" (m/s), "heading", "altitude"},
     "battery": {"level" (0..1), "is_charging"}, "extras": {"alarm": "sos"}, "is_moving",
     "odometer", "event", "activity": {"type"}}}

`location` may also be a list (the SDK's batch upload). The SDK writes -1 for a speed,
heading or accuracy it does not know: those are absent here, not refused. Read leniently
when the strict reading fails, so that an SOS in a body with a broken fix is still raised.
"""

from typing import TYPE_CHECKING

import msgspec

from server.core import jsontext, refusals

if TYPE_CHECKING:  # the reading is osmand's: this module only knows the JSON's shape
    from server.phones import osmand

MAX_LOCATIONS = 100
UNKNOWN = -1


def _decoded(raw: bytes) -> object:
    try:
        try:
            return msgspec.json.decode(raw)
        except RecursionError:
            return msgspec.json.decode(jsontext.shallow(raw))
    except msgspec.DecodeError as error:
        body = jsontext.lenient(raw)  # NaN, integers past 64 bits: an SOS in it must not be lost
        if body is None:
            raise refusals.BadJson(f"not valid JSON: {error}") from None
        return body


def locations(raw: bytes) -> list[dict]:
    """Each location of the body, with the body's `device_id` as its `id`."""
    body = _decoded(raw)
    if not isinstance(body, dict):
        raise refusals.InvalidField("a Traccar Client body is a JSON object with device_id and location")
    found = body.get("location")
    found = found if isinstance(found, list) else [found]
    if len(found) > MAX_LOCATIONS:
        raise refusals.TooLarge(f"a body holds at most {MAX_LOCATIONS} locations", field="location")
    return [{"id": body.get("device_id"), "location": location} for location in found]


def _object(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def read(entry: dict, *, reading: "osmand.Reading") -> "osmand.Report":
    location = entry["location"]
    if not isinstance(location, dict):
        reading.problems.append(refusals.InvalidField("location must be an object", field="location"))
        location = {}
    coords, battery = _object(location.get("coords")), _object(location.get("battery"))
    return reading.report(
        external_id=entry["id"], alarm=_object(location.get("extras")).get("alarm"),
        timestamp=location.get("timestamp"),
        lat=reading.number(coords.get("latitude"), field="lat"),
        lon=reading.number(coords.get("longitude"), field="lon"),
        acc=reading.number(coords.get("accuracy"), field="accuracy", unknown=UNKNOWN),
        alt=reading.number(coords.get("altitude"), field="altitude"),
        speed=reading.number(coords.get("speed"), field="speed", unknown=UNKNOWN),
        heading=reading.number(coords.get("heading"), field="bearing", unknown=UNKNOWN),
        battery=reading.number(battery.get("level"), field="batt", scale=100.0, unknown=UNKNOWN))
