"""geo.route: distance to a planned route, its simplification, the off-route rule, GeoJSON routes."""

import itertools
import math
import random

import pytest
import shapely
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from geo import distance, route
from geo.route import OffRoute, OffRouteLimits, Route, Turn

pytestmark = pytest.mark.no_services

R = distance.EARTH_RADIUS_M


def unit(lat: float, lon: float) -> tuple[float, float, float]:
    phi, lam = math.radians(lat), math.radians(lon)
    return math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi)


def cross(a, b):
    return a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]


def dot(a, b) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def arc_distance_m(fix, a, b) -> float:
    """Brute force on the sphere: metres from a fix to the great-circle arc a-b."""
    p, ua, ub = unit(*fix), unit(*a), unit(*b)
    n = cross(ua, ub)
    norm = math.sqrt(dot(n, n))
    ends_m = min(distance.haversine_m(*fix, *a), distance.haversine_m(*fix, *b))
    if norm < 1e-15:
        return ends_m
    n = tuple(c / norm for c in n)
    off = dot(p, n)
    foot = tuple(pc - off * nc for pc, nc in zip(p, n))
    if dot(cross(ua, foot), n) >= 0 and dot(cross(foot, ub), n) >= 0:
        return min(ends_m, R * math.atan2(abs(off), math.sqrt(dot(foot, foot))))
    return ends_m


def reference_m(fix, vertices) -> float:
    return min(arc_distance_m(fix, a, b) for a, b in itertools.pairwise(vertices))


def offset(lat: float, lon: float, east_m: float, north_m: float) -> tuple[float, float]:
    lat2 = lat + math.degrees(north_m / R)
    lon2 = lon + math.degrees(east_m / (R * math.cos(math.radians(lat))))
    return lat2, (lon2 + 180.0) % 360.0 - 180.0


metres = st.floats(-25_000, 25_000)
centres = st.tuples(st.floats(-85, 85), st.floats(-180, 180))


@settings(max_examples=300, deadline=None)
@given(centre=centres, legs=st.lists(st.tuples(metres, metres), min_size=2, max_size=6),
       fix_m=st.tuples(st.floats(-30_000, 30_000), st.floats(-30_000, 30_000)))
def test_distance_matches_the_spherical_point_to_arc_distance_within_a_tenth_of_a_percent(centre, legs, fix_m):
    vertices = [offset(*centre, east, north) for east, north in legs]
    fix = offset(*centre, *fix_m)
    expected = reference_m(fix, vertices)
    assert Route(vertices).distance_m(*fix) == pytest.approx(expected, rel=1e-3, abs=0.5)


def wiggly(count: int, *, seed: int = 7, start=(24.1, 121.2), step_m: float = 4.0) -> list[tuple[float, float]]:
    rng, heading, lat, lon = random.Random(seed), 0.0, *start
    vertices = [(lat, lon)]
    for _ in range(count - 1):
        heading += rng.uniform(-0.4, 0.4)
        lat, lon = offset(lat, lon, step_m * math.cos(heading), step_m * math.sin(heading))
        vertices.append((lat, lon))
    return vertices


LONG = Route(wiggly(5_000))


@settings(max_examples=200, deadline=None)
@given(index=st.integers(0, 4_999), east_m=st.floats(-2_000, 2_000), north_m=st.floats(-2_000, 2_000))
def test_the_tree_finds_the_same_nearest_distance_as_the_whole_line_on_a_long_route(index, east_m, north_m):
    lat, lon = offset(*LONG.vertices[index], east_m, north_m)
    plain_m = LONG.line_m.distance(shapely.Point(LONG.projection.forward(lat, lon)))
    assert LONG.distance_m(lat, lon) == pytest.approx(plain_m, abs=1e-6)


def test_a_fix_on_a_vertex_or_on_a_segment_is_on_the_route():
    vertices = [(25.0, 121.5), (25.05, 121.5), (25.05, 121.55)]
    line = Route(vertices)
    assert line.distance_m(25.05, 121.5) == pytest.approx(0.0, abs=0.01)
    assert line.distance_m(25.025, 121.5) == pytest.approx(0.0, abs=0.05)


def test_the_nearest_point_can_be_the_middle_of_a_long_segment():
    line = Route([(25.0, 121.5), (25.1, 121.5)])  # 11 km due north
    fix = offset(25.05, 121.5, 150.0, 0.0)
    assert line.distance_m(*fix) == pytest.approx(150.0, rel=1e-3)


def test_a_route_across_the_antimeridian_is_measured_across_it():
    line = Route([(-16.8, 179.99), (-16.8, -179.99)])
    assert line.distance_m(-16.799, 180.0) == pytest.approx(111.2, rel=1e-2)
    assert line.distance_m(-16.8, 179.995) < 1.0


@pytest.mark.parametrize("vertices", [
    [(25.0, 121.5)],
    [(25.0, 121.5)] * (route.MAX_VERTICES + 1),
    [(25.0, 121.5), (91.0, 121.5)],
    [(25.0, 121.5), (25.0, 181.0)],
    [(25.0, 121.5), (math.nan, 121.5)],
])
def test_a_route_is_built_only_from_valid_vertices(vertices):
    with pytest.raises(ValueError):
        Route(vertices)


@settings(max_examples=60, deadline=None)
@given(centre=centres, seed=st.integers(0, 1_000), tolerance_m=st.floats(1.0, 100.0))
def test_simplify_keeps_the_end_points_and_stays_within_its_tolerance(centre, seed, tolerance_m):
    vertices = wiggly(200, seed=seed, start=centre, step_m=20.0)
    simple = route.simplify(vertices, tolerance_m)
    assert simple[0] == vertices[0] and simple[-1] == vertices[-1]
    assert len(simple) <= len(vertices)
    shown = Route(simple)
    assert max(shown.distance_m(*vertex) for vertex in vertices) <= tolerance_m * 1.001 + 0.01


def test_simplify_drops_the_jitter_of_a_straight_walk_and_keeps_a_loop_a_loop():
    jittery = [offset(25.0, 121.5, 0.5 * (-1) ** i, 10.0 * i) for i in range(500)]
    assert len(route.simplify(jittery, 2.0)) == 2
    square = [offset(25.0, 121.5, east, north) for east, north in
              [(0, 0), (1000, 0), (1000, 1000), (0, 1000), (0, 0)]]
    loop = route.simplify(square, 50.0)
    assert len(loop) >= 4 and loop[0] == loop[-1]


FAR, NEAR = 500.0, 50.0


DEFAULT_LIMITS = OffRouteLimits()


def run(steps, limits=DEFAULT_LIMITS):
    """(distance_m, plausible) steps → the turns they made, one per step."""
    state, turns = OffRoute(), []
    for distance_m, plausible in steps:
        state, turn = route.observe(state, distance_m=distance_m, plausible=plausible, limits=limits)
        turns.append(turn)
    return turns


@pytest.mark.parametrize(("steps", "turns"), [
    ([(FAR, True)] * 4, [None, None, Turn.OFF_ROUTE, None]),
    ([(FAR, True), (FAR, True), (FAR, False), (FAR, True)], [None, None, None, Turn.OFF_ROUTE]),
    ([(FAR, True), (FAR, True), (NEAR, False), (FAR, True)], [None, None, None, Turn.OFF_ROUTE]),
    ([(FAR, True), (FAR, True), (NEAR, True), (FAR, True), (FAR, True)], [None] * 5),
    ([(FAR, True)] * 3 + [(NEAR, True)] * 2, [None, None, Turn.OFF_ROUTE, Turn.ON_ROUTE, None]),
    ([(FAR, True)] * 3 + [(NEAR, False)], [None, None, Turn.OFF_ROUTE, None]),
    ([(200.0, True)] * 3, [None] * 3),
    ([(200.01, True)] * 3, [None, None, Turn.OFF_ROUTE]),
    ([(FAR, True), (math.nan, True), (FAR, True), (FAR, True)], [None, None, None, Turn.OFF_ROUTE]),
])
def test_off_route_after_three_consecutive_plausible_far_fixes_and_back_on_at_the_first_near_one(steps, turns):
    assert run(steps) == turns


def test_off_route_limits_are_the_callers():
    assert run([(FAR, True)], OffRouteLimits(threshold_m=200.0, fixes=1)) == [Turn.OFF_ROUTE]
    assert run([(FAR, True)] * 3, OffRouteLimits(threshold_m=1_000.0)) == [None] * 3


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([NEAR, FAR, 200.0, math.nan]), st.booleans()), max_size=40),
       st.integers(1, 5))
def test_off_route_turns_when_the_last_plausible_fixes_say_so_and_only_then(steps, fixes):
    limits = OffRouteLimits(fixes=fixes)
    counted, off = [], False
    for (distance_m, plausible), turn in zip(steps, run(steps, limits)):
        if plausible and not math.isnan(distance_m):
            counted.append(distance_m > limits.threshold_m)
        now_off = (len(counted) >= fixes and all(counted[-fixes:])) or (off and counted[-1])
        assert turn == (Turn.OFF_ROUTE if now_off and not off else Turn.ON_ROUTE if off and not now_off else None)
        off = now_off


def line(*positions) -> dict:
    return {"type": "LineString", "coordinates": [list(position) for position in positions]}


def test_a_geojson_line_string_gives_lat_lon_vertices():
    assert route.vertices_from_geojson(line((121.5, 25.0), (121.6, 25.1, 300.0))) == [(25.0, 121.5), (25.1, 121.6)]
    feature = {"type": "Feature", "properties": {}, "geometry": line((121, 25), (-180, -90))}
    assert route.vertices_from_geojson(feature) == [(25.0, 121.0), (-90.0, -180.0)]


@pytest.mark.parametrize(("document", "code"), [
    ({"type": "Point", "coordinates": [121.5, 25.0]}, "not_a_line"),
    ({"type": "MultiLineString", "coordinates": [[[121.5, 25.0], [121.6, 25.1]]]}, "not_a_line"),
    ({"type": "Feature", "geometry": {"type": "Point", "coordinates": [121.5, 25.0]}}, "not_a_line"),
    ({"type": "Feature", "geometry": None}, "not_a_line"),
    ([[121.5, 25.0], [121.6, 25.1]], "not_a_line"),
    ("LineString", "not_a_line"),
    ({"type": "LineString", "coordinates": {"0": [121.5, 25.0]}}, "not_a_line"),
    (line((121.5, 25.0)), "vertex_count"),
    (line(*[(121.5, 25.0)] * (route.MAX_VERTICES + 1)), "vertex_count"),
    (line((121.5, 25.0), (180.5, 25.0)), "out_of_range"),
    (line((121.5, 25.0), (121.5, -90.5)), "out_of_range"),
    (line((121.5, 25.0), (25.0, 121.5)), "out_of_range"),
    (line((121.5, 25.0), (10 ** 400, 25.0)), "out_of_range"),
    (line((121.5, 25.0), (math.nan, 25.0)), "not_finite"),
    (line((121.5, 25.0), (121.5, math.inf)), "not_finite"),
    (line((121.5, 25.0), ("121.5", "25.0")), "not_a_number"),
    (line((121.5, 25.0), (True, 25.0)), "not_a_number"),
    (line((121.5, 25.0), (None, 25.0)), "not_a_number"),
    (line((121.5, 25.0), (121.5,)), "not_a_position"),
    (line((121.5, 25.0), (121.5, 25.0, 1.0, 2.0)), "not_a_position"),
    ({"type": "LineString", "coordinates": [[121.5, 25.0], {"lon": 121.5, "lat": 25.0}]}, "not_a_position"),
])
def test_a_geojson_route_that_is_not_one_line_of_positions_in_range_is_refused_with_a_reason(document, code):
    reason = route.vertices_from_geojson(document)
    assert isinstance(reason, route.Reason)
    assert (reason.field, reason.code) == ("planned_route", code)
    assert reason.message


def test_ten_thousand_vertices_are_a_route():
    document = line(*[(121.5 + i * 1e-5, 25.0) for i in range(route.MAX_VERTICES)])
    vertices = route.vertices_from_geojson(document)
    assert len(vertices) == route.MAX_VERTICES
    assert Route(vertices).distance_m(25.0, 121.5) == pytest.approx(0.0, abs=0.01)


@settings(max_examples=200, deadline=None)
@given(north_m=st.floats(-3000, 3000), east_m=st.floats(-3000, 3000), threshold_m=st.floats(1, 2000))
def test_the_off_route_check_agrees_with_the_distance(north_m, east_m, threshold_m):
    planned = Route([(25.0, 121.5), (25.01, 121.51), (25.0, 121.52), (25.02, 121.53)])
    lat = 25.01 + math.degrees(north_m / 6_371_008.8)
    lon = 121.51 + math.degrees(east_m / (6_371_008.8 * math.cos(math.radians(25.01))))
    distance_m = planned.distance_m(lat, lon)
    assume(abs(distance_m - threshold_m) > 0.01)
    assert planned.farther_than(lat, lon, threshold_m) == (distance_m > threshold_m)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.tuples(st.floats(0, 1000, allow_nan=False), st.booleans()), max_size=12))
def test_observing_far_or_not_turns_exactly_as_observing_the_distance(steps):
    limits = OffRouteLimits()
    by_distance = by_far = OffRoute()
    for distance_m, plausible in steps:
        by_distance, turn = route.observe(by_distance, distance_m=distance_m, plausible=plausible, limits=limits)
        by_far, far_turn = route.observe_far(by_far, far=distance_m > limits.threshold_m, plausible=plausible,
                                             limits=limits)
        assert (by_far, far_turn) == (by_distance, turn)
