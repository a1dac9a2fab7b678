"""A user's history rendered as GeoJSON (RFC 7946) or GPX 1.1, whole or piece by piece.

The pieces (`feature`, `gpx_head`, `gpx_point`, `GPX_TAIL`) let the export write a year
of fixes as they come from a cursor; `geojson` and `gpx` are the same pieces put together.
"""

from xml.sax.saxutils import escape

from server.core import wire
from server.positions import history

GPX_NS = "http://www.topografix.com/GPX/1/1"
GEOJSON_HEAD = b'{"type":"FeatureCollection","features":['
GEOJSON_TAIL = b"]}"
GPX_TAIL = b"</trkseg></trk></gpx>"


def feature(stored: history.StoredFix) -> dict:
    """One stored fix as a Point feature, suspect ones marked."""
    return {
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


def geojson(fixes: list[history.StoredFix]) -> dict:
    """Every stored fix as a Point feature, oldest first."""
    return {"type": "FeatureCollection", "features": [feature(stored) for stored in fixes]}


def gpx_head(*, name: str) -> bytes:
    """The GPX document up to its one track segment's first point."""
    return (f"<?xml version='1.0' encoding='utf-8'?>\n<gpx xmlns=\"{GPX_NS}\" version=\"1.1\" creator=\"Guardian\">"
            f"<trk><name>{escape(name)}</name><trkseg>").encode()


def gpx_point(stored: history.StoredFix) -> bytes:
    """One plausible fix as a track point; a suspect one is left out (GPX has no place for suspicion)."""
    if stored.suspect:
        return b""
    elevation = "" if stored.fix.altitude_m is None else f"<ele>{stored.fix.altitude_m!r}</ele>"
    return (f'<trkpt lat="{stored.fix.lat!r}" lon="{stored.fix.lon!r}">{elevation}'
            f"<time>{wire.format_time(stored.fix.ts)}</time></trkpt>").encode()


def gpx(fixes: list[history.StoredFix], *, name: str) -> bytes:
    """The plausible fixes as one GPX track segment."""
    return gpx_head(name=name) + b"".join(gpx_point(stored) for stored in fixes) + GPX_TAIL
