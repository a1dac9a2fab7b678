"""A check-in judged: what the phone sent for `trip_start` (or `POST /v1/trips`) becomes the
values of a trip row, or the refusal naming the field that is wrong.

Pure: no I/O. Times are judged against `now`: an ETA or expected return must lie ahead
(a trip that is overdue before it starts would raise an alarm at once), and within a
week (a timer nobody means).
"""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from geo import route
from geo.rules import Reason
from server.core import refusals, wire
from server.trips import plates

KINDS = ("taxi", "hike", "walk")
MAX_AHEAD = timedelta(days=7)
MAX_NAME_CHARS = 100
VEHICLE_FIELDS = ("make", "colour")


@dataclass(frozen=True, slots=True)
class Checkin:
    kind: str
    plate: str | None
    driver_name: str | None
    vehicle: dict | None
    destination: tuple[float, float] | None  # (lat, lon)
    eta: datetime | None
    expected_return: datetime | None
    planned_route: list[tuple[float, float]] | None  # (lat, lon) vertices
    replace: bool

    def due_at(self, *, grace: timedelta) -> datetime | None:
        """When the trip is overdue: a ride or walk at its ETA plus the grace, a hike at its
        expected return. None: no timer (a ride without ETA is followed, never chased)."""
        if self.kind == "hike":
            return self.expected_return
        return None if self.eta is None else self.eta + grace


def _text(value: object, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise refusals.InvalidField(f"{field} must be text", field=field)
    cleaned = " ".join(value.replace("\x00", "").split())
    if len(cleaned) > MAX_NAME_CHARS:
        raise refusals.InvalidField(f"{field} is at most {MAX_NAME_CHARS} characters", field=field)
    return cleaned or None


def _future(value: int | str | None, field: str, now: datetime) -> datetime | None:
    if value is None:
        return None
    moment = wire.parse_time(value, field=field)
    if moment <= now:
        raise refusals.InvalidField(f"{field} is in the past", field=field)
    if moment > now + MAX_AHEAD:
        raise refusals.InvalidField(f"{field} is more than {MAX_AHEAD.days} days ahead", field=field)
    return moment


def _destination(value: object) -> tuple[float, float] | None:
    if value is None:
        return None
    lat = value.get("lat") if isinstance(value, dict) else None
    lon = value.get("lon") if isinstance(value, dict) else None
    for name, number, bound in (("lat", lat, 90), ("lon", lon, 180)):
        if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number) \
                or not -bound <= number <= bound:
            raise refusals.InvalidField(f"destination.{name} must be degrees within ±{bound}",
                                        field=f"destination.{name}")
    return float(lat), float(lon)


def _vehicle(value: object) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - set(VEHICLE_FIELDS):
        raise refusals.InvalidField("vehicle is {\"make\", \"colour\"}", field="vehicle")
    vehicle = {name: _text(value.get(name), f"vehicle.{name}") for name in VEHICLE_FIELDS}
    return vehicle if any(vehicle.values()) else None


def refusal_of(reason: Reason) -> refusals.Refusal:
    return refusals.InvalidField(reason.message, field=reason.field)


def judge(fields: wire.TripFields, *, now: datetime,
          uploaded_route: list[tuple[float, float]] | None = None) -> Checkin:
    """The check-in's values. Raises refusals.InvalidField naming the field.

    `uploaded_route`: a planned route read from an uploaded file (`routefile.read_route`),
    which takes the place of `planned_route` in the body."""
    if fields.kind not in KINDS:
        raise refusals.InvalidField(f"kind is one of {', '.join(KINDS)}", field="kind")
    plate = None
    if fields.kind == "taxi":
        plate = plates.normalise(fields.plate)
        if plate is None:
            raise refusals.InvalidField("not a licence plate (2 to 8 letters and digits, e.g. ABC-1234)",
                                        field="plate")
    elif fields.plate is not None:
        raise refusals.InvalidField("only a taxi ride has a plate", field="plate")
    vertices = uploaded_route
    if vertices is None and fields.planned_route is not None:
        vertices = route.vertices_from_geojson(fields.planned_route)
        if isinstance(vertices, Reason):
            raise refusal_of(vertices)
    eta = _future(fields.eta, "eta", now)
    expected_return = _future(fields.expected_return, "expected_return", now)
    if fields.kind == "hike" and expected_return is None:
        raise refusals.InvalidField("a hike needs its expected_return", field="expected_return")
    if fields.kind == "walk" and eta is None:
        raise refusals.InvalidField("a walk needs its eta: when you expect to be home", field="eta")
    return Checkin(kind=fields.kind, plate=plate, driver_name=_text(fields.driver_name, "driver_name"),
                   vehicle=_vehicle(fields.vehicle), destination=_destination(fields.destination), eta=eta,
                   expected_return=expected_return, planned_route=vertices, replace=fields.replace is True)
