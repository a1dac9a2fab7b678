"""Precincts from stations: Voronoi cells that tile the city, each holding its own station."""

import pytest
from shapely import Point, Polygon, unary_union

from geo.jurisdictions import Station, parse_geojson, to_geojson, voronoi_precincts
from geo.taipei import OUTLINE, taipei_precincts

pytestmark = pytest.mark.no_services


def test_taipei_101_belongs_to_the_xinyi_precinct_and_only_to_it():
    here = Point(121.5645, 25.0339)
    assert [p.precinct_id for p in taipei_precincts() if p.area.intersects(here)] == ["xinyi"]


def test_precincts_tile_the_city_without_overlap():
    precincts = taipei_precincts()
    union = unary_union([p.area for p in precincts])
    assert union.symmetric_difference(OUTLINE).area < 1e-9
    assert sum(p.area.area for p in precincts) == pytest.approx(OUTLINE.area, rel=1e-9)


def test_each_station_lies_in_its_own_precinct():
    for precinct in taipei_precincts():
        assert precinct.area.contains(Point(precinct.station.lon, precinct.station.lat)), precinct.precinct_id


def test_two_stations_in_one_place_are_refused():
    square = Polygon([(0, 0), (1, 0), (1, 1), (0, 1)])
    with pytest.raises(ValueError, match="share a position"):
        voronoi_precincts([Station("a", "A", 0.5, 0.5), Station("b", "B", 0.5, 0.5)], square)


def test_the_geojson_round_trip_keeps_every_precinct_and_station():
    parsed = parse_geojson(to_geojson(taipei_precincts()))
    assert len(parsed.precincts) == len(parsed.stations) == 14
