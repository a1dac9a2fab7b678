"""A planned route: distance from a fix, simplification for display, the off-route rule.

Geometry is done in metres, in an azimuthal-equidistant projection centred on the route:
distances from the centre are exact on the sphere, and a fix's distance to a route that
spans 50 km is within 0.1 % of the spherical one (tests/test_route.py), where an
equirectangular projection would be off by up to a percent at high latitudes.
"""

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import shapely

from geo.distance import EARTH_RADIUS_M
from geo.rules import Reason

MIN_VERTICES = 2
MAX_VERTICES = 10_000
FIELD = "planned_route"

LatLon = tuple[float, float]


class Projection:
    """Spherical azimuthal-equidistant projection about (lat0, lon0); x east, y north, metres."""

    __slots__ = ("_cos0", "_lat0_rad", "_lon0_rad", "_sin0", "lat0", "lon0")

    def __init__(self, lat0: float, lon0: float):
        self.lat0, self.lon0 = lat0, lon0
        self._lat0_rad, self._lon0_rad = math.radians(lat0), math.radians(lon0)
        self._sin0, self._cos0 = math.sin(math.radians(lat0)), math.cos(math.radians(lat0))

    @classmethod
    def centred_on(cls, vertices: Sequence[LatLon]) -> "Projection":
        """About the mean of the vertices' unit vectors: right across the antimeridian too."""
        sx = sy = sz = 0.0
        for lat, lon in vertices:
            phi, lam = math.radians(lat), math.radians(lon)
            sx += math.cos(phi) * math.cos(lam)
            sy += math.cos(phi) * math.sin(lam)
            sz += math.sin(phi)
        if math.hypot(sx, sy, sz) < 1e-9 * len(vertices):
            return cls(*vertices[0])  # vertices spread all round the globe: no middle
        return cls(math.degrees(math.atan2(sz, math.hypot(sx, sy))), math.degrees(math.atan2(sy, sx)))

    def forward(self, lat: float, lon: float) -> tuple[float, float]:
        phi = math.radians(lat)
        dlam = math.radians(lon) - self._lon0_rad
        sin_phi, cos_phi, cos_dlam = math.sin(phi), math.cos(phi), math.cos(dlam)
        # The angle from the centre by haversine: acos(cos c) loses 0.1 m near the centre.
        half = (math.sin((phi - self._lat0_rad) / 2) ** 2
                + self._cos0 * cos_phi * math.sin(dlam / 2) ** 2)
        c = 2 * math.asin(min(1.0, math.sqrt(half)))
        sin_c = math.sin(c)
        if sin_c < 1e-12:
            if c < 1.0:
                return 0.0, 0.0
            return math.pi * EARTH_RADIUS_M, 0.0  # the antipode: a circle in this map; any point of it
        k = EARTH_RADIUS_M * c / sin_c
        return (k * cos_phi * math.sin(dlam),
                k * (self._cos0 * sin_phi - self._sin0 * cos_phi * cos_dlam))

    def inverse(self, x_m: float, y_m: float) -> LatLon:
        rho = math.hypot(x_m, y_m)
        if rho == 0.0:
            return self.lat0, self.lon0
        c = rho / EARTH_RADIUS_M
        sin_c, cos_c = math.sin(c), math.cos(c)
        lat = math.degrees(math.asin(max(-1.0, min(1.0, cos_c * self._sin0 + y_m * sin_c * self._cos0 / rho))))
        lam = self._lon0_rad + math.atan2(x_m * sin_c, rho * self._cos0 * cos_c - y_m * self._sin0 * sin_c)
        lon = (math.degrees(lam) + 180.0) % 360.0 - 180.0
        return lat, lon


def _check_vertices(vertices: Sequence[LatLon]) -> None:
    if not MIN_VERTICES <= len(vertices) <= MAX_VERTICES:
        raise ValueError(f"a route has {MIN_VERTICES} to {MAX_VERTICES} vertices, not {len(vertices)}")
    for lat, lon in vertices:
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            raise ValueError("route vertices must be (lat, lon) in degrees")


class Route:
    """A planned route, built once, asked many times how far a fix is from it.

    `vertices` are (lat, lon) degrees, validated already (`vertices_from_geojson`, or the
    route file reader): anything else raises ValueError. Distances are metres on the
    sphere of `geo.distance`, to within about 0.1 % for fixes within 50 km of the route.
    """

    __slots__ = ("_prepared_m", "_segments_m", "line_m", "projection", "vertices")

    def __init__(self, vertices: Sequence[LatLon]):
        _check_vertices(vertices)
        self.vertices: tuple[LatLon, ...] = tuple((float(lat), float(lon)) for lat, lon in vertices)
        self.projection = Projection.centred_on(self.vertices)
        points_m = [self.projection.forward(lat, lon) for lat, lon in self.vertices]
        # The whole line, unprepared: for simplification and as the benchmark's plain baseline.
        self.line_m = shapely.LineString(points_m)
        # One tree leaf per segment: a query visits a few leaves near the fix, not all of them.
        self._segments_m = shapely.STRtree(shapely.linestrings(list(itertools.pairwise(points_m))))
        # Prepared (GEOS indexes it once): "within so many metres?" without measuring how far.
        self._prepared_m = shapely.LineString(points_m)
        shapely.prepare(self._prepared_m)

    def distance_m(self, lat: float, lon: float) -> float:
        """Metres from (lat, lon) to the nearest point of the route. Precondition: finite degrees."""
        fix_m = shapely.points(self.projection.forward(lat, lon))
        _, distances = self._segments_m.query_nearest(fix_m, return_distance=True, all_matches=False)
        return float(distances[0])


    def farther_than(self, lat: float, lon: float, threshold_m: float) -> bool:
        """Whether (lat, lon) lies more than `threshold_m` from the route: the off-route check,
        cheaper than `distance_m` (a prepared line answers without finding the nearest point)."""
        return not shapely.dwithin(self._prepared_m, shapely.points(self.projection.forward(lat, lon)), threshold_m)


def simplify(vertices: Sequence[LatLon], tolerance_m: float) -> list[LatLon]:
    """The route with fewer vertices, none of the dropped ones farther than `tolerance_m` from
    it (Douglas-Peucker in metres, topology kept so a loop stays a loop); the first and last
    vertices are kept exactly. For display: distances are measured on the full route."""
    _check_vertices(vertices)
    projection = Projection.centred_on(vertices)
    line_m = shapely.LineString([projection.forward(lat, lon) for lat, lon in vertices])
    kept_m = list(line_m.simplify(max(0.0, tolerance_m), preserve_topology=True).coords)
    middle = [projection.inverse(x_m, y_m) for x_m, y_m, *_ in kept_m[1:-1]]
    return [tuple(vertices[0]), *middle, tuple(vertices[-1])]


class Turn(StrEnum):
    """What a fix changed: the caller notifies once per turn."""

    OFF_ROUTE = "off_route"
    ON_ROUTE = "on_route"


@dataclass(frozen=True, slots=True)
class OffRouteLimits:
    threshold_m: float = 200.0
    fixes: int = 3  # consecutive plausible fixes beyond the threshold


@dataclass(frozen=True, slots=True)
class OffRoute:
    """A hiker's standing towards the route between fixes (kept by the caller)."""

    off_route: bool = False
    far_fixes: int = 0  # consecutive plausible fixes beyond the threshold, at most limits.fixes


def observe(state: OffRoute, *, distance_m: float, plausible: bool,
            limits: OffRouteLimits = OffRouteLimits()) -> tuple[OffRoute, Turn | None]:
    """The state after one fix `distance_m` from the route, and the turn it made (None:
    nothing to tell anyone). A distance that is NaN neither counts nor resets. See `observe_far`."""
    if math.isnan(distance_m):
        return state, None
    return observe_far(state, far=distance_m > limits.threshold_m, plausible=plausible, limits=limits)


def observe_far(state: OffRoute, *, far: bool, plausible: bool,
                limits: OffRouteLimits = OffRouteLimits()) -> tuple[OffRoute, Turn | None]:
    """The state after one fix that is `far` (beyond `limits.threshold_m`: `Route.farther_than`)
    or not, and the turn it made.

    An implausible fix (a teleport, a stale or vague fix: `rules.suspicions` not empty)
    neither counts nor resets: one bad fix neither raises nor clears the alarm. A plausible
    fix within the threshold clears the count, and turns the hiker back ON_ROUTE if they
    were off; the `fixes`-th consecutive one beyond it turns them OFF_ROUTE.
    """
    if not plausible:
        return state, None
    if not far:
        return OffRoute(), (Turn.ON_ROUTE if state.off_route else None)
    far_fixes = min(state.far_fixes + 1, limits.fixes)
    if state.off_route or far_fixes < limits.fixes:
        return OffRoute(state.off_route, far_fixes), None
    return OffRoute(True, far_fixes), Turn.OFF_ROUTE


def _number(value: object) -> float | Reason:
    # bool is an int to Python, never a coordinate; a huge JSON integer is out of range.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return Reason(FIELD, "not_a_number", "route coordinates must be numbers")
    try:
        number = float(value)
    except OverflowError:
        return Reason(FIELD, "out_of_range", "route coordinates must be lon/lat degrees")
    if not math.isfinite(number):
        return Reason(FIELD, "not_finite", "route coordinates must be finite numbers")
    return number


def vertices_from_geojson(document: object) -> list[LatLon] | Reason:
    """The (lat, lon) vertices of a GeoJSON LineString (or a Feature holding one), parsed
    JSON already; else the Reason it is refused: not a LineString, fewer than 2 or more
    than MAX_VERTICES positions, a position that is not [lon, lat] or [lon, lat, alt] of
    finite numbers, lon outside [-180, 180] or lat outside [-90, 90]."""
    if isinstance(document, dict) and document.get("type") == "Feature":
        document = document.get("geometry")
    if not isinstance(document, dict) or document.get("type") != "LineString":
        return Reason(FIELD, "not_a_line", "planned_route must be a GeoJSON LineString")
    positions = document.get("coordinates")
    if not isinstance(positions, list):
        return Reason(FIELD, "not_a_line", "a LineString needs a list of coordinates")
    if not MIN_VERTICES <= len(positions) <= MAX_VERTICES:
        return Reason(FIELD, "vertex_count",
                      f"a route has {MIN_VERTICES} to {MAX_VERTICES:,} positions, not {len(positions):,}")
    vertices = []
    for position in positions:
        if not isinstance(position, list) or len(position) not in (2, 3):
            return Reason(FIELD, "not_a_position", "each position must be [lon, lat] or [lon, lat, alt]")
        numbers = [_number(value) for value in position]
        reason = next((number for number in numbers if isinstance(number, Reason)), None)
        if reason is not None:
            return reason
        lon, lat = numbers[0], numbers[1]
        if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
            return Reason(FIELD, "out_of_range", "positions must be [lon, lat] with lon in [-180, 180], "
                                                 "lat in [-90, 90]")
        vertices.append((lat, lon))
    return vertices
