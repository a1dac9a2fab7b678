"""Jurisdiction shapes: precinct polygons built from police station points.

Where a police force publishes no precinct boundaries, each station's precinct is
approximated by its Voronoi cell (every place belongs to its nearest station),
clipped to the city outline. Cells of a Voronoi diagram tile the outline: every
point inside it lies in exactly one precinct (on a shared edge, the first one).
"""

from collections.abc import Sequence
from dataclasses import dataclass

from shapely import MultiPoint, MultiPolygon, Point, Polygon, voronoi_polygons
from shapely.geometry import mapping, shape


@dataclass(frozen=True, slots=True)
class Station:
    station_id: str
    name: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Precinct:
    precinct_id: str
    name: str
    area: MultiPolygon
    station: Station


def voronoi_precincts(stations: Sequence[Station], outline: Polygon) -> list[Precinct]:
    """One precinct per station: its Voronoi cell (in lon/lat) clipped to the outline."""
    if len({(s.lon, s.lat) for s in stations}) != len(stations):
        raise ValueError("two stations share a position")
    points = MultiPoint([(s.lon, s.lat) for s in stations])
    cells = voronoi_polygons(points, extend_to=outline.envelope.buffer(1.0))
    precincts = []
    for station in stations:
        cell = next(cell for cell in cells.geoms if cell.contains(Point(station.lon, station.lat)))
        clipped = cell.intersection(outline)
        area = clipped if isinstance(clipped, MultiPolygon) else MultiPolygon(
            [part for part in getattr(clipped, "geoms", [clipped]) if isinstance(part, Polygon)])
        precincts.append(Precinct(station.station_id, station.name, area, station))
    return precincts


def to_geojson(precincts: Sequence[Precinct]) -> dict:
    """The import format of `guardian jurisdictions import`: precinct polygons and station points."""
    features = []
    for precinct in precincts:
        features.append({"type": "Feature", "geometry": mapping(precinct.area),
                         "properties": {"kind": "precinct", "id": precinct.precinct_id, "name": precinct.name}})
        station = precinct.station
        features.append({"type": "Feature", "geometry": mapping(Point(station.lon, station.lat)),
                         "properties": {"kind": "station", "id": station.station_id, "name": station.name,
                                        "precinct_id": precinct.precinct_id}})
    return {"type": "FeatureCollection", "features": features}


@dataclass(frozen=True, slots=True)
class Jurisdictions:
    precincts: list[tuple[str, str, MultiPolygon]]  # id, name, area
    stations: list[tuple[str, str, str, Point]]  # id, name, precinct id, location


def parse_geojson(document: dict) -> Jurisdictions:
    """Read the import format. Raises ValueError naming the first bad feature."""
    if document.get("type") != "FeatureCollection" or not isinstance(document.get("features"), list):
        raise ValueError("expected a GeoJSON FeatureCollection")
    precincts, stations = [], []
    for index, feature in enumerate(document["features"]):
        properties = feature.get("properties") or {}
        kind, feature_id, name = properties.get("kind"), properties.get("id"), properties.get("name")
        if not isinstance(feature_id, str) or not feature_id or not isinstance(name, str):
            raise ValueError(f"feature {index}: properties need a string id and name")
        try:
            geometry = shape(feature["geometry"])
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"feature {index}: bad geometry ({error})") from None
        if kind == "precinct":
            if isinstance(geometry, Polygon):
                geometry = MultiPolygon([geometry])
            if not isinstance(geometry, MultiPolygon) or not geometry.is_valid or geometry.is_empty:
                raise ValueError(f"feature {index}: a precinct needs a valid (Multi)Polygon")
            if not _within_wgs84(geometry):
                raise ValueError(f"feature {index}: coordinates must be lon/lat degrees")
            precincts.append((feature_id, name, geometry))
        elif kind == "station":
            if not isinstance(geometry, Point) or not _within_wgs84(geometry):
                raise ValueError(f"feature {index}: a station needs a lon/lat Point")
            precinct_id = properties.get("precinct_id")
            if not isinstance(precinct_id, str):
                raise ValueError(f"feature {index}: a station needs its precinct_id")
            stations.append((feature_id, name, precinct_id, geometry))
        else:
            raise ValueError(f"feature {index}: kind must be precinct or station")
    known = {precinct_id for precinct_id, _, _ in precincts}
    for station_id, _, precinct_id, _ in stations:
        if precinct_id not in known:
            raise ValueError(f"station {station_id}: unknown precinct {precinct_id}")
    if not precincts:
        raise ValueError("no precincts in the file")
    return Jurisdictions(precincts, stations)


def _within_wgs84(geometry) -> bool:
    min_lon, min_lat, max_lon, max_lat = geometry.bounds
    return -180 <= min_lon <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90
