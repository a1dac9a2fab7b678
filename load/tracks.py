"""Plausible synthetic movement: each phone walks or drives around Taipei."""

import math
import random

TAIPEI_CENTRE = (25.0478, 121.5319)
METRES_PER_DEGREE_LAT = 111_320.0


class Track:
    """A phone moving at a steady speed with gentle turns; `step` advances it one fix."""

    __slots__ = ("lat", "lon", "heading_deg", "speed_mps", "_rng")

    def __init__(self, seed: int):
        self._rng = random.Random(seed)
        self.lat = TAIPEI_CENTRE[0] + self._rng.uniform(-0.05, 0.05)
        self.lon = TAIPEI_CENTRE[1] + self._rng.uniform(-0.05, 0.05)
        self.heading_deg = self._rng.uniform(0, 360)
        self.speed_mps = self._rng.choice((1.4, 4.0, 12.0))

    def step(self, interval_s: float) -> tuple[float, float]:
        self.heading_deg = (self.heading_deg + self._rng.uniform(-15, 15)) % 360
        metres = self.speed_mps * interval_s
        heading = math.radians(self.heading_deg)
        self.lat += metres * math.cos(heading) / METRES_PER_DEGREE_LAT
        self.lon += metres * math.sin(heading) / (METRES_PER_DEGREE_LAT * math.cos(math.radians(self.lat)))
        return self.lat, self.lon
