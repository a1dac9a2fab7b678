"""An uploaded planned route: GeoJSON or GPX bytes in, (lat, lon) vertices or a refusal out.

One line per file. GeoJSON: a LineString, or a Feature holding one. GPX 1.0 or 1.1:
exactly one track (its segments joined in file order: a track split where the receiver
lost the signal is still one walk) or exactly one route; waypoints are ignored. Two
tracks, two routes, or a track and a route are refused rather than guessed between:
joining them would draw a line the hiker never planned.

XML is read by defusedxml with DTDs refused, so no entity is ever expanded (a billion
laughs) or fetched (an external entity).
"""

import codecs
import json
import re
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree

from geo import route
from geo.rules import Reason

MAX_ROUTE_BYTES = 5 * 1024 * 1024
GPX_NAMESPACES = ("http://www.topografix.com/GPX/1/1", "http://www.topografix.com/GPX/1/0", "")
# xsd:decimal, as the GPX schemas type lat and lon, and an exponent some writers add;
# not float()'s grammar, which also reads "nan", "inf" and "1_0".
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,3})?")

LatLon = route.LatLon


def _refuse(code: str, message: str) -> Reason:
    return Reason(route.FIELD, code, message)


def read_route(data: bytes) -> list[LatLon] | Reason:
    """The vertices of the one line in an uploaded GeoJSON or GPX file, or why it is refused.

    Refusal codes: too_large (over MAX_ROUTE_BYTES), unknown_format, not_json, not_xml,
    unsafe_xml (a DTD or entity), not_gpx, no_line, several_lines, vertex_count, and the
    coordinate codes of `geo.route.vertices_from_geojson` (not_a_line, not_a_position,
    not_a_number, not_finite, out_of_range).
    """
    if len(data) > MAX_ROUTE_BYTES:
        return _refuse("too_large", f"a route file is at most {MAX_ROUTE_BYTES // (1024 * 1024)} MiB")
    data = bytes(data)
    text = data.removeprefix(codecs.BOM_UTF8).lstrip()
    if text.startswith(b"{"):
        return _read_geojson(text)
    if text.startswith(b"<"):
        return _read_gpx(data)
    return _refuse("unknown_format", "a route file must be GeoJSON or GPX")


def _read_geojson(text: bytes) -> list[LatLon] | Reason:
    try:
        document = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _refuse("not_json", "the route file is not valid JSON (UTF-8)")
    return route.vertices_from_geojson(document)


def _read_gpx(data: bytes) -> list[LatLon] | Reason:
    try:
        root = defusedxml.ElementTree.fromstring(data, forbid_dtd=True)
    except defusedxml.DefusedXmlException:
        return _refuse("unsafe_xml", "a GPX file may not declare a DTD or entities")
    except ParseError:
        return _refuse("not_xml", "the route file is not well-formed XML")
    namespace, _, name = root.tag[1:].rpartition("}") if root.tag.startswith("{") else ("", "", root.tag)
    if name != "gpx" or namespace not in GPX_NAMESPACES:
        return _refuse("not_gpx", "the XML file is not GPX 1.0 or 1.1")

    def tag(local: str) -> str:
        return f"{{{namespace}}}{local}" if namespace else local

    lines = [[point for segment in track.findall(tag("trkseg")) for point in segment.findall(tag("trkpt"))]
             for track in root.findall(tag("trk"))]
    lines += [planned.findall(tag("rtept")) for planned in root.findall(tag("rte"))]
    lines = [points for points in lines if points]
    if not lines:
        return _refuse("no_line", "the GPX file has no track or route points")
    if len(lines) > 1:
        return _refuse("several_lines", "the GPX file holds several tracks or routes: keep the planned one")
    return _vertices(lines[0])


def _vertices(points: list[Element]) -> list[LatLon] | Reason:
    if not route.MIN_VERTICES <= len(points) <= route.MAX_VERTICES:
        return _refuse("vertex_count", f"a route has {route.MIN_VERTICES} to {route.MAX_VERTICES:,} points, "
                                       f"not {len(points):,}")
    vertices = []
    for point in points:
        lat_text, lon_text = (point.get("lat") or "").strip(), (point.get("lon") or "").strip()
        if not (_DECIMAL.fullmatch(lat_text) and _DECIMAL.fullmatch(lon_text)):
            return _refuse("not_a_number", "each point needs decimal lat and lon attributes")
        lat, lon = float(lat_text), float(lon_text)
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            return _refuse("out_of_range", "points must have lat in [-90, 90] and lon in [-180, 180]")
        vertices.append((lat, lon))
    return vertices
