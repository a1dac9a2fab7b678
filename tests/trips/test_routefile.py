"""server.trips.routefile: uploaded GeoJSON and GPX routes, and the hostile ones refused."""

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geo.rules import Reason
from server.trips import routefile

pytestmark = pytest.mark.no_services

GPX11 = "http://www.topografix.com/GPX/1/1"
GPX10 = "http://www.topografix.com/GPX/1/0"


def gpx(body: str, namespace: str = GPX11) -> bytes:
    xmlns = f' xmlns="{namespace}"' if namespace else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<gpx version="1.1" creator="test"{xmlns}>'
            f"{body}</gpx>").encode()


def points(tag: str, vertices) -> str:
    return "".join(f'<{tag} lat="{lat}" lon="{lon}"><ele>100</ele></{tag}>' for lat, lon in vertices)


def track(*segments) -> str:
    return "<trk><name>t</name>" + "".join(f"<trkseg>{points('trkpt', s)}</trkseg>" for s in segments) + "</trk>"


def planned(vertices) -> str:
    return f"<rte><name>r</name>{points('rtept', vertices)}</rte>"


def refused(data: bytes) -> str:
    reason = routefile.read_route(data)
    assert isinstance(reason, Reason), reason
    assert reason.field == "planned_route" and reason.message
    return reason.code


A, B, C, D = (25.0, 121.5), (25.01, 121.51), (25.02, 121.5), (25.03, 121.49)


def test_a_gpx_track_gives_its_points_in_order_with_its_segments_joined():
    data = gpx('<wpt lat="1" lon="2"/>' + track([A, B], [C, D]))
    assert routefile.read_route(data) == [A, B, C, D]


def test_a_gpx_1_0_route_gives_its_route_points():
    assert routefile.read_route(gpx(planned([A, B, C]), GPX10)) == [A, B, C]


def test_a_gpx_without_a_namespace_and_an_empty_track_beside_its_route_is_read():
    assert routefile.read_route(gpx("<trk><trkseg/></trk>" + planned([A, B]), "")) == [A, B]


def test_a_geojson_line_string_and_feature_are_read_behind_a_byte_order_mark():
    line = {"type": "LineString", "coordinates": [[121.5, 25.0], [121.51, 25.01, 30]]}
    assert routefile.read_route(json.dumps(line).encode()) == [A, B]
    feature = {"type": "Feature", "properties": {"name": "x"}, "geometry": line}
    assert routefile.read_route(b"\xef\xbb\xbf\n " + json.dumps(feature).encode()) == [A, B]


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<gpx xmlns="http://www.topografix.com/GPX/1/1"><trk><name>&lol9;</name><trkseg>
<trkpt lat="25.0" lon="121.5"/><trkpt lat="25.1" lon="121.5"/></trkseg></trk></gpx>"""


def test_an_xml_billion_laughs_bomb_is_refused_without_expanding_it():
    started = time.monotonic()
    assert refused(BILLION_LAUGHS) == "unsafe_xml"
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("doctype", [
    b'<!DOCTYPE gpx [<!ENTITY secret SYSTEM "file:///etc/passwd">]>',
    b'<!DOCTYPE gpx SYSTEM "http://127.0.0.1:9/gpx.dtd">',
    b'<!DOCTYPE gpx [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/x"> %remote;]>',
    b"<!DOCTYPE gpx>",
])
def test_an_external_entity_or_any_dtd_is_refused(doctype):
    body = gpx(track([A, B])).replace(b"<trk><name>t</name>", b"<trk><name>&secret;</name>")
    assert refused(body.replace(b"?>\n", b"?>\n" + doctype + b"\n", 1)) == "unsafe_xml"


@pytest.mark.parametrize(("data", "code"), [
    (gpx(track([A, B])).replace(b"</gpx>", b""), "not_xml"),
    (b'<gpx><trk><trkseg><trkpt lat=25 lon=121/></trkseg></trk></gpx>', "not_xml"),
    (b"<gpx>\xff\xfe</gpx>", "not_xml"),
    (b"lat,lon\n25.0,121.5\n25.1,121.5\n", "unknown_format"),
    (b"\x00\x01\x02PK\x03\x04", "unknown_format"),
    (b"", "unknown_format"),
    (b'<kml xmlns="http://www.opengis.net/kml/2.2"><Document/></kml>', "not_gpx"),
    (gpx(track([A, B]), "http://example.com/not-gpx"), "not_gpx"),
    (gpx('<wpt lat="25.0" lon="121.5"/>'), "no_line"),
    (gpx("<trk><trkseg/></trk><rte/>"), "no_line"),
    (gpx(track([A])), "vertex_count"),
    (gpx(track([A, B]) + track([C, D])), "several_lines"),
    (gpx(track([A, B]) + planned([C, D])), "several_lines"),
    (gpx(planned([A, B]) + planned([C, D])), "several_lines"),
    (gpx(track([A, (91.0, 121.5)])), "out_of_range"),
    (gpx(track([A, (25.0, -180.5)])), "out_of_range"),
    (gpx(track([A, ("1e999", 121.5)])), "out_of_range"),
    (gpx(track([A, ("nan", 121.5)])), "not_a_number"),
    (gpx(track([A, (25.0, "inf")])), "not_a_number"),
    (gpx(track([A, ("25,0", 121.5)])), "not_a_number"),
    (gpx(track([A, ("2_5", 121.5)])), "not_a_number"),
    (gpx('<trk><trkseg><trkpt lat="25.0" lon="121.5"/><trkpt lat="25.1"/></trkseg></trk>'), "not_a_number"),
])
def test_a_gpx_that_is_not_xml_not_gpx_or_not_one_line_of_points_in_range_is_refused(data, code):
    assert refused(data) == code


def line_json(coordinates) -> bytes:
    return json.dumps({"type": "LineString", "coordinates": coordinates}).encode()


@pytest.mark.parametrize(("data", "code"), [
    (b'{"type": "Point", "coordinates": [121.5, 25.0]}', "not_a_line"),
    (b'{"type": "MultiLineString", "coordinates": [[[121.5, 25.0], [121.6, 25.1]]]}', "not_a_line"),
    (b'{"type": "FeatureCollection", "features": []}', "not_a_line"),
    (line_json([[121.5, 25.0]] * 10_001), "vertex_count"),
    (line_json([[121.5, 25.0], [181.0, 25.0]]), "out_of_range"),
    (line_json([[121.5, 25.0], [121.5, 90.1]]), "out_of_range"),
    (b'{"type": "LineString", "coordinates": [[121.5, 25.0], [NaN, 25.0]]}', "not_finite"),
    (b'{"type": "LineString", "coordinates": [[121.5, 25.0], [121.5, -Infinity]]}', "not_finite"),
    (b'{"type": "LineString", "coordinates": [[121.5, 25.0], [121.5, 1e999]]}', "not_finite"),
    (b'{"type": "LineString", "coordinates": [[121.5, 25.0], ["121.5", "25.0"]]}', "not_a_number"),
    (b'{"type": "LineString", "coordinates": [[121.5, 25.0], [true, false]]}', "not_a_number"),
    (b'{"type": "LineString", "coordinates": [[121.5, 25.0], [1' + b"0" * 5_000 + b', 25.0]]}', "not_json"),
    (b'{"type": "LineString", "coordinates": [[121.5, 25.0], [121.5, 25.0]]', "not_json"),
    (b'{"type": "LineString", "coordinates": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "not_json"),
    (b'{"type": "LineString", "name": "\xff"}', "not_json"),
])
def test_a_geojson_that_is_not_one_line_string_of_numbers_in_range_is_refused(data, code):
    assert refused(data) == code


def test_a_file_over_five_mib_is_refused_before_it_is_parsed_and_one_of_five_mib_is_read():
    line = line_json([[121.5, 25.0], [121.51, 25.01]])
    exactly = line + b" " * (routefile.MAX_ROUTE_BYTES - len(line))
    assert routefile.read_route(exactly) == [A, B]
    assert refused(exactly + b" ") == "too_large"
    six_mib = gpx(track([A, B]) + "<!--" + "x" * (6 * 1024 * 1024) + "-->")
    assert refused(six_mib) == "too_large"


def test_ten_thousand_points_are_a_route_and_ten_thousand_and_one_are_not():
    vertices = [(25.0 + i * 1e-5, 121.5) for i in range(10_000)]
    assert routefile.read_route(gpx(track(vertices[:5_000], vertices[5_000:]))) == vertices
    assert refused(gpx(track(vertices, [A]))) == "vertex_count"


vertex_lists = st.lists(st.tuples(st.floats(-90, 90), st.floats(-180, 180)), min_size=2, max_size=50)


@settings(max_examples=100, deadline=None)
@given(vertices=vertex_lists, as_route=st.booleans())
def test_any_valid_line_reads_back_the_same_from_gpx_and_from_geojson(vertices, as_route):
    written = gpx(planned(vertices) if as_route else track(vertices))
    assert routefile.read_route(written) == vertices
    assert routefile.read_route(line_json([[lon, lat] for lat, lon in vertices])) == vertices


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300),
                 st.binary(max_size=200).map(lambda tail: gpx(track([A, B]))[:60] + tail),
                 st.binary(max_size=200).map(lambda tail: b'{"type": "LineString", "coordinates": [' + tail)))
def test_any_bytes_are_read_or_refused_never_raised(data):
    result = routefile.read_route(data)
    assert isinstance(result, Reason) or (isinstance(result, list) and len(result) >= 2)
