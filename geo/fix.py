"""One position fix as the rules see it."""

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Fix:
    """A position reported by a device, in WGS 84 degrees, with device time (aware UTC)."""

    lat: float
    lon: float
    ts: datetime
    accuracy_m: float | None = None
    altitude_m: float | None = None
    speed_mps: float | None = None
    heading_deg: float | None = None
    battery_pct: float | None = None
