"""`python -m load offroute`: what the off-route check costs per fix on a long planned route.

A wiggly hiking route (5,000 vertices, about 20 km) and fixes scattered around it, most
within a few hundred metres. Each fix is measured twice, interleaved so that both see the
same machine: `geo.route.Route.distance_m` (an STRtree over the segments), and a plain
shapely `distance` to the whole unprepared line in the same projection. Both include the
projection and building the fix's point, as the caller pays for them.
"""

import math
import os
import platform
import random
import time

import shapely

from geo import distance
from geo.route import Route
from load.stats import table

# The default off-route threshold (GUARDIAN_TRIP_OFF_ROUTE_M).
THRESHOLD_M = 200.0


def wiggly_route(vertices: int, *, length_m: float, seed: int) -> list[tuple[float, float]]:
    """A random walk with a slowly turning heading, starting in the hills south of Taipei."""
    rng, step_m, heading = random.Random(seed), length_m / (vertices - 1), 0.0
    lat, lon = 24.95, 121.55
    walk = [(lat, lon)]
    for _ in range(vertices - 1):
        heading += rng.uniform(-0.35, 0.35)
        lat += math.degrees(step_m * math.cos(heading) / distance.EARTH_RADIUS_M)
        lon += math.degrees(step_m * math.sin(heading) / (distance.EARTH_RADIUS_M * math.cos(math.radians(lat))))
        walk.append((lat, lon))
    return walk


def scattered_fixes(vertices: list[tuple[float, float]], count: int, *, seed: int) -> list[tuple[float, float]]:
    """Near a random vertex: 90 % within a few hundred metres, the rest up to a few km off."""
    rng, fixes = random.Random(seed + 1), []
    for _ in range(count):
        lat, lon = vertices[rng.randrange(len(vertices))]
        spread_m = 150.0 if rng.random() < 0.9 else 2_000.0
        north_m, east_m = rng.gauss(0.0, spread_m), rng.gauss(0.0, spread_m)
        fixes.append((lat + math.degrees(north_m / distance.EARTH_RADIUS_M),
                      lon + math.degrees(east_m / (distance.EARTH_RADIUS_M * math.cos(math.radians(lat))))))
    return fixes


def _quantile_us(ordered_ns: list[int], fraction: float) -> float:
    return ordered_ns[min(len(ordered_ns) - 1, int(fraction * len(ordered_ns)))] / 1000


def _row(name: str, ordered_ns: list[int]) -> dict[str, str]:
    return {"per fix": name, "fixes": f"{len(ordered_ns):,}", "median us": f"{_quantile_us(ordered_ns, 0.5):.1f}",
            "p99 us": f"{_quantile_us(ordered_ns, 0.99):.1f}", "max us": f"{ordered_ns[-1] / 1000:.0f}"}


def run_offroute(*, vertices: int, fixes: int, length_m: float, seed: int, budget_s: float) -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
          f"shapely {shapely.__version__}, GEOS {shapely.geos_version_string}", flush=True)
    walk = wiggly_route(vertices, length_m=length_m, seed=seed)
    started = time.perf_counter()
    planned = Route(walk)
    built_s = time.perf_counter() - started
    plain = shapely.LineString(planned.line_m.coords)  # a fresh line: nothing prepared or indexed
    project, clock = planned.projection.forward, time.perf_counter_ns
    tree_ns, plain_ns, check_ns, worst_gap_m, disagreements = [], [], [], 0.0, 0
    deadline = time.monotonic() + budget_s
    for lat, lon in scattered_fixes(walk, fixes, seed=seed):
        if time.monotonic() > deadline:
            break
        before = clock()
        tree_m = planned.distance_m(lat, lon)
        between = clock()
        plain_m = plain.distance(shapely.points(project(lat, lon)))
        after = clock()
        far = planned.farther_than(lat, lon, THRESHOLD_M)
        checked = clock()
        tree_ns.append(between - before)
        plain_ns.append(after - between)
        check_ns.append(checked - after)
        disagreements += far != (plain_m > THRESHOLD_M)
        worst_gap_m = max(worst_gap_m, abs(tree_m - plain_m))
    tree_ns.sort()
    plain_ns.sort()
    check_ns.sort()
    print(f"route: {vertices:,} vertices, {planned.line_m.length / 1000:.1f} km, built in {built_s * 1000:.0f} ms; "
          f"largest difference between the two answers {worst_gap_m:.2g} m")
    print(table([_row(f"Route.farther_than {THRESHOLD_M:g} m (the check)", check_ns),
                 _row("Route.distance_m (STRtree)", tree_ns), _row("LineString.distance (plain)", plain_ns)]))
    print(f"the check disagreed with the plain distance on {disagreements} fixes")
    ratios = {fraction: _quantile_us(plain_ns, fraction) / _quantile_us(tree_ns, fraction) for fraction in (0.5, 0.99)}
    checks = {fraction: _quantile_us(plain_ns, fraction) / _quantile_us(check_ns, fraction) for fraction in (0.5, 0.99)}
    print(f"plain / check: median {checks[0.5]:.2f}x, p99 {checks[0.99]:.2f}x")
    print(f"plain / STRtree: median {ratios[0.5]:.2f}x, p99 {ratios[0.99]:.2f}x"
          + ("" if len(tree_ns) == fixes else f" (stopped at the {budget_s:g} s budget)"))
