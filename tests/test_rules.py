"""geo.rules: one table per rule, no services."""

import math
from datetime import UTC, datetime, timedelta

import pytest

from geo import distance, rules
from geo.fix import Fix

pytestmark = pytest.mark.no_services

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
TAIPEI_101 = (25.0339, 121.5645)
LIMITS = rules.Limits()


def fix(lat=TAIPEI_101[0], lon=TAIPEI_101[1], ts=NOW, **measures) -> Fix:
    return Fix(lat=lat, lon=lon, ts=ts, **measures)


@pytest.mark.parametrize(
    ("rule", "sample", "field"),
    [
        (rules.finite_numbers, fix(), None),
        (rules.finite_numbers, fix(lat=math.nan), "lat"),
        (rules.finite_numbers, fix(lon=math.inf), "lon"),
        (rules.finite_numbers, fix(accuracy_m=-math.inf), "acc"),
        (rules.finite_numbers, fix(battery_pct=math.nan), "battery"),
        (rules.latitude_range, fix(lat=90.0), None),
        (rules.latitude_range, fix(lat=-90.0), None),
        (rules.latitude_range, fix(lat=90.0001), "lat"),
        (rules.latitude_range, fix(lat=-91), "lat"),
        (rules.longitude_range, fix(lon=180.0), None),
        (rules.longitude_range, fix(lon=-180.0), None),
        (rules.longitude_range, fix(lon=180.5), "lon"),
        (rules.accuracy_range, fix(accuracy_m=0.0), None),
        (rules.accuracy_range, fix(accuracy_m=-1.0), "acc"),
        (rules.altitude_range, fix(altitude_m=8848.0), None),
        (rules.altitude_range, fix(altitude_m=1e6), "alt"),
        (rules.speed_range, fix(speed_mps=30.0), None),
        (rules.speed_range, fix(speed_mps=-0.1), "speed"),
        (rules.heading_range, fix(heading_deg=359.9), None),
        (rules.heading_range, fix(heading_deg=361.0), "heading"),
        (rules.heading_range, fix(heading_deg=-1.0), "heading"),
        (rules.battery_range, fix(battery_pct=100.0), None),
        (rules.battery_range, fix(battery_pct=101.0), "battery"),
        (rules.battery_range, fix(battery_pct=-5.0), "battery"),
    ],
)
def test_refusal_rules_name_the_offending_field(rule, sample, field):
    reason = rule(sample)
    assert (reason.field if reason else None) == field


def test_refusal_returns_the_first_failing_rule():
    assert rules.refusal(fix()) is None
    assert rules.refusal(fix(lat=math.nan, battery_pct=500)).code == "not_finite"


def previous_at(seconds_before: float, lat: float = TAIPEI_101[0], lon: float = TAIPEI_101[1], **measures) -> Fix:
    return fix(lat=lat, lon=lon, ts=NOW - timedelta(seconds=seconds_before), **measures)


@pytest.mark.parametrize(
    ("rule", "sample", "previous", "code"),
    [
        (rules.from_the_future, fix(ts=NOW + timedelta(seconds=299)), None, None),
        (rules.from_the_future, fix(ts=NOW + timedelta(minutes=6)), None, "future"),
        (rules.too_old, fix(ts=NOW - timedelta(days=6)), None, None),
        (rules.too_old, fix(ts=NOW - timedelta(days=8)), None, "stale"),
        (rules.too_vague, fix(accuracy_m=4_999.0), None, None),
        (rules.too_vague, fix(accuracy_m=20_000.0), None, "vague"),
        (rules.teleport, fix(), None, None),
        # 1.1 km in 60 s is a taxi on an expressway (18 m/s).
        (rules.teleport, fix(lat=25.0439), previous_at(60), None),
        # Taipei to Kaohsiung (300 km) in 60 s is not.
        (rules.teleport, fix(lat=22.6273, lon=120.3014), previous_at(60), "teleport"),
        # 500 m "in" 10 ms, but both fixes are vague by 300 m: within their accuracy.
        (rules.teleport, fix(lat=25.0384, accuracy_m=300), previous_at(0.01, accuracy_m=300), None),
        # An older fix arriving late is judged on the absolute time gap.
        (rules.teleport, fix(ts=NOW - timedelta(seconds=120), lat=25.0439), previous_at(0), None),
    ],
)
def test_suspicion_rules_return_a_code(rule, sample, previous, code):
    reason = rule(sample, previous=previous, now=NOW, limits=LIMITS)
    assert (reason.code if reason else None) == code


def test_suspicions_collects_every_objection():
    found = rules.suspicions(
        fix(lat=22.6273, lon=120.3014, ts=NOW + timedelta(minutes=10), accuracy_m=9_000),
        previous=previous_at(0),
        now=NOW,
        limits=LIMITS,
    )
    assert [reason.code for reason in found] == ["future", "vague", "teleport"]


def test_haversine_matches_a_known_distance():
    # Taipei 101 to Taipei Main Station, about 5.1 km.
    assert distance.haversine_m(25.0339, 121.5645, 25.0478, 121.5170) == pytest.approx(5_020, rel=0.02)
    assert distance.haversine_m(0, 0, 0, 0) == 0


def test_finite_numbers_is_not_fooled_by_an_overflowing_sum():
    huge = fix(lat=80.0, altitude_m=1.7e308, speed_mps=1.7e308)
    assert rules.finite_numbers(huge) is None
