"""Per-device token buckets over pings, shared by the socket and HTTP."""

import time
import uuid


class Bucket:
    __slots__ = ("tokens", "stamp")

    def __init__(self, tokens: float, stamp: float):
        self.tokens = tokens
        self.stamp = stamp


class RateLimiter:
    """`rate_per_s` pings per second per device, bursts up to `burst`."""

    def __init__(self, *, rate_per_s: float, burst: int, max_devices: int = 200_000):
        self._rate = rate_per_s
        self._burst = float(burst)
        self._max_devices = max_devices
        self._buckets: dict[uuid.UUID, Bucket] = {}

    def take(self, device_id: uuid.UUID, count: int = 1) -> bool:
        """Spend `count` tokens if the device has them; False means rate limited."""
        now = time.monotonic()
        bucket = self._buckets.get(device_id)
        if bucket is None:
            if len(self._buckets) >= self._max_devices:
                self._forget_full(now)
            bucket = self._buckets[device_id] = Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.stamp) * self._rate)
        bucket.stamp = now
        if bucket.tokens < count:
            return False
        bucket.tokens -= count
        return True

    def _forget_full(self, now: float) -> None:
        # A bucket that has refilled completely carries no state worth keeping.
        refill_s = self._burst / self._rate
        self._buckets = {key: b for key, b in self._buckets.items() if now - b.stamp < refill_s}
