"""A user's history rendered as GeoJSON (RFC 7946) or GPX 1.1."""

from xml.etree import ElementTree as ET

from server.core import wire
from server.positions import history

GPX_NS = "http://www.topografix.com/GPX/1/1"


def geojson(fixes: list[history.StoredFix]) -> dict:
    """Every stored fix as a Point feature, suspect ones marked, oldest first."""
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [stored.fix.lon, stored.fix.lat]},
                "properties": {
                    "seq": stored.seq,
                    "ts": wire.format_time(stored.fix.ts),
                    "received_at": wire.format_time(stored.received_at),
                    "acc": stored.fix.accuracy_m,
                    "alt": stored.fix.altitude_m,
                    "speed": stored.fix.speed_mps,
                    "heading": stored.fix.heading_deg,
                    "battery": stored.fix.battery_pct,
                    "suspect": stored.suspect,
                },
            }
            for stored in fixes
        ],
    }


def gpx(fixes: list[history.StoredFix], *, name: str) -> bytes:
    """The plausible fixes as one GPX track segment (GPX has no place for suspicion)."""
    ET.register_namespace("", GPX_NS)
    root = ET.Element(f"{{{GPX_NS}}}gpx", {"version": "1.1", "creator": "Guardian"})
    track = ET.SubElement(root, f"{{{GPX_NS}}}trk")
    ET.SubElement(track, f"{{{GPX_NS}}}name").text = name
    segment = ET.SubElement(track, f"{{{GPX_NS}}}trkseg")
    for stored in fixes:
        if stored.suspect:
            continue
        point = ET.SubElement(segment, f"{{{GPX_NS}}}trkpt", {"lat": repr(stored.fix.lat), "lon": repr(stored.fix.lon)})
        if stored.fix.altitude_m is not None:
            ET.SubElement(point, f"{{{GPX_NS}}}ele").text = repr(stored.fix.altitude_m)
        ET.SubElement(point, f"{{{GPX_NS}}}time").text = wire.format_time(stored.fix.ts)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
