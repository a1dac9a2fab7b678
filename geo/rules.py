"""Position rules as small named functions that return reasons.

Two families:

* refusals: the values cannot describe a real fix (not finite, out of range).
  A refused ping is answered with an error and not stored.
* suspicions: the fix is well formed but implausible (a teleport, a clock far in
  the future, a very old or very vague fix). A suspect ping is stored with its
  reasons and does not move the last location.

Callers that must never drop anything (an SOS) use only `suspicions`, to annotate.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from geo import distance
from geo.fix import Fix


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a rule objected: the offending field, a stable code and a sentence."""

    field: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Limits:
    """Thresholds for the plausibility rules (set from configuration)."""

    max_speed_mps: float = 85.0
    max_future_s: float = 300.0
    max_age_s: float = 7 * 86_400.0
    max_accuracy_m: float = 5_000.0
    # Below this time gap, implied speed is measured against this many seconds:
    # two fixes a few ms apart with GPS jitter must not read as supersonic.
    min_interval_s: float = 1.0


_MEASURES = ("lat", "lon", "acc", "alt", "speed", "heading", "battery")


def _numbers(fix: Fix) -> tuple[float | None, ...]:
    return (fix.lat, fix.lon, fix.accuracy_m, fix.altitude_m, fix.speed_mps, fix.heading_deg, fix.battery_pct)


def finite_numbers(fix: Fix) -> Reason | None:
    # Fast path, plain arithmetic: NaN and infinities survive a sum (`x or 0.0` keeps NaN,
    # which is truthy). A sum that overflows only sends finite values to the exact check.
    total = (fix.lat + fix.lon + (fix.accuracy_m or 0.0) + (fix.altitude_m or 0.0) + (fix.speed_mps or 0.0)
             + (fix.heading_deg or 0.0) + (fix.battery_pct or 0.0))
    if math.isfinite(total):
        return None
    for name, value in zip(_MEASURES, _numbers(fix)):
        if value is not None and not math.isfinite(value):
            return Reason(name, "not_finite", f"{name} must be a finite number")
    return None


def _within(field: str, value: float | None, low: float, high: float, unit: str) -> Reason | None:
    if value is None or low <= value <= high:
        return None
    return Reason(field, "out_of_range", f"{field} must be between {low:g} and {high:g} {unit}")


def latitude_range(fix: Fix) -> Reason | None:
    return _within("lat", fix.lat, -90.0, 90.0, "degrees")


def longitude_range(fix: Fix) -> Reason | None:
    return _within("lon", fix.lon, -180.0, 180.0, "degrees")


def accuracy_range(fix: Fix) -> Reason | None:
    return _within("acc", fix.accuracy_m, 0.0, 1_000_000.0, "m")


def altitude_range(fix: Fix) -> Reason | None:
    return _within("alt", fix.altitude_m, -12_000.0, 100_000.0, "m")


def speed_range(fix: Fix) -> Reason | None:
    return _within("speed", fix.speed_mps, 0.0, 1_000.0, "m/s")


def heading_range(fix: Fix) -> Reason | None:
    return _within("heading", fix.heading_deg, 0.0, 360.0, "degrees")


def battery_range(fix: Fix) -> Reason | None:
    return _within("battery", fix.battery_pct, 0.0, 100.0, "percent")


REFUSALS: tuple[Callable[[Fix], Reason | None], ...] = (
    finite_numbers,
    latitude_range,
    longitude_range,
    accuracy_range,
    altitude_range,
    speed_range,
    heading_range,
    battery_range,
)


def refusal(fix: Fix) -> Reason | None:
    """The first reason this fix cannot be stored at all, or None."""
    for rule in REFUSALS:
        reason = rule(fix)
        if reason is not None:
            return reason
    return None


def from_the_future(fix: Fix, *, previous: Fix | None, now: datetime, limits: Limits) -> Reason | None:
    if (fix.ts - now).total_seconds() > limits.max_future_s:
        return Reason("ts", "future", f"ts is more than {limits.max_future_s:g} s ahead of the server clock")
    return None


def too_old(fix: Fix, *, previous: Fix | None, now: datetime, limits: Limits) -> Reason | None:
    if (now - fix.ts).total_seconds() > limits.max_age_s:
        return Reason("ts", "stale", f"ts is more than {limits.max_age_s:g} s old")
    return None


def too_vague(fix: Fix, *, previous: Fix | None, now: datetime, limits: Limits) -> Reason | None:
    if fix.accuracy_m is not None and fix.accuracy_m > limits.max_accuracy_m:
        return Reason("acc", "vague", f"accuracy is worse than {limits.max_accuracy_m:g} m")
    return None


def implied_speed_mps(fix: Fix, previous: Fix, *, min_interval_s: float = 1.0) -> float:
    """Speed needed to travel from `previous` to `fix`, giving both fixes the benefit of their accuracy."""
    gap_m = distance.haversine_m(previous.lat, previous.lon, fix.lat, fix.lon)
    slack_m = (fix.accuracy_m or 0.0) + (previous.accuracy_m or 0.0)
    interval_s = max(abs((fix.ts - previous.ts).total_seconds()), min_interval_s)
    return max(gap_m - slack_m, 0.0) / interval_s


def teleport(fix: Fix, *, previous: Fix | None, now: datetime, limits: Limits) -> Reason | None:
    if previous is None:
        return None
    speed = implied_speed_mps(fix, previous, min_interval_s=limits.min_interval_s)
    if speed > limits.max_speed_mps:
        return Reason("lat", "teleport", f"implied speed {speed:.0f} m/s from the previous fix")
    return None


SUSPICIONS = (from_the_future, too_old, too_vague, teleport)


def suspicions(fix: Fix, *, previous: Fix | None, now: datetime, limits: Limits) -> list[Reason]:
    """Every plausibility objection to a well-formed fix (empty when plausible).

    `previous` is the last plausible fix of the same device, or None.
    """
    found = []
    for rule in SUSPICIONS:
        reason = rule(fix, previous=previous, now=now, limits=limits)
        if reason is not None:
            found.append(reason)
    return found
