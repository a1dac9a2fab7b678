"""Token buckets: pings per device (shared by the socket and HTTP), registrations per client
address, phone socket connects per device token (by its digest, before any database work)."""

import ipaddress
import itertools
import time
from collections.abc import Hashable



class Bucket:
    __slots__ = ("tokens", "stamp")

    def __init__(self, tokens: float, stamp: float):
        self.tokens = tokens
        self.stamp = stamp


class RateLimiter:
    """`rate_per_s` tokens per second per key (a device, a client address, a token's digest),
    bursts up to `burst`. At most `max_keys` buckets are kept, so a flood of new keys cannot grow
    memory without end: full buckets are forgotten first, then the least recently used (which
    then start full again: leniency towards a forgotten key, never a refusal of a new one)."""

    def __init__(self, *, rate_per_s: float, burst: int, max_keys: int = 200_000):
        self._rate = rate_per_s
        self._burst = float(burst)
        self._max_keys = max_keys
        self._buckets: dict[Hashable, Bucket] = {}

    @property
    def key_count(self) -> int:
        return len(self._buckets)

    def take(self, key: Hashable, count: int = 1) -> bool:
        """Spend `count` tokens if the key has them; False means rate limited."""
        bucket = self._refilled(key)
        if bucket.tokens < count:
            return False
        bucket.tokens -= count
        return True

    def retry_after_s(self, key: Hashable, count: int = 1) -> float:
        """How long until `count` tokens are there for this key (0 if they are now)."""
        bucket = self._refilled(key)
        return max(0.0, (min(count, self._burst) - bucket.tokens) / self._rate)

    def _refilled(self, key: Hashable) -> Bucket:
        now = time.monotonic()
        # Popped and put back: the map stays in order of last use, so the oldest are the idlest.
        bucket = self._buckets.pop(key, None)
        if bucket is not None:
            self._buckets[key] = bucket
        else:
            if len(self._buckets) >= self._max_keys:
                self._forget_full(now)
            bucket = self._buckets[key] = Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.stamp) * self._rate)
        bucket.stamp = now
        return bucket

    def _forget_full(self, now: float) -> None:
        # A bucket that has refilled completely carries no state worth keeping.
        refill_s = self._burst / self._rate
        self._buckets = {key: b for key, b in self._buckets.items() if now - b.stamp < refill_s}
        keep = self._max_keys - max(1, self._max_keys // 4)
        if len(self._buckets) > keep:
            # Keys all in use (a flood of fresh ones): the idlest go, down to three quarters, so
            # the next scan is a quarter of the map's new keys away (O(1) per key on average).
            for key in list(itertools.islice(self._buckets, len(self._buckets) - keep)):
                del self._buckets[key]


def client_key(host: str | None) -> str:
    """The key a client address is limited under: an IPv4 address, or an IPv6 address's /64
    (one subscriber's prefix: a host picks any address inside it at will)."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return host or "unknown"
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
