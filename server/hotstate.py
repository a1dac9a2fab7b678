"""The hot copy of last locations in Redis, and its rebuild from PostgreSQL.

Writes are conditional on the fix time inside Redis (one script call per flush),
so flushes that finish out of order, or a rebuild racing live traffic, can never
move a last location backwards.
"""

import logging
import uuid
from collections.abc import Sequence

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from geo.fix import Fix
from server import history, keys, wire

log = logging.getLogger(__name__)

# Redis geo indexes refuse latitudes beyond this (Web Mercator's limit).
GEO_MAX_LAT = 85.05112878

_WRITE_NEWER = """
local geo = KEYS[1]
for i = 2, #KEYS do
  local a = (i - 2) * 6
  local ts_ms = tonumber(ARGV[a + 5])
  local current = tonumber(redis.call('HGET', KEYS[i], 'ts_ms') or '-1')
  if ts_ms > current then
    redis.call('HSET', KEYS[i], 'lat', ARGV[a + 3], 'lon', ARGV[a + 2], 'acc', ARGV[a + 4],
               'ts_ms', ARGV[a + 5], 'ts', ARGV[a + 6])
    if math.abs(tonumber(ARGV[a + 3])) <= %s then
      redis.call('GEOADD', geo, ARGV[a + 2], ARGV[a + 3], ARGV[a + 1])
    end
  end
end
return #KEYS - 1
""" % GEO_MAX_LAT


async def write(*, redis: Redis, fixes: Sequence[tuple[uuid.UUID, Fix]]) -> None:
    """Copy last locations to Redis where they are newer than what Redis holds."""
    if not fixes:
        return
    script_keys = [keys.LAST_LOCATIONS_GEO]
    args: list[str | float | int] = []
    for user_id, fix in fixes:
        script_keys.append(keys.last_location(user_id))
        args += [str(user_id), repr(fix.lon), repr(fix.lat), "" if fix.accuracy_m is None else repr(fix.accuracy_m),
                 wire.epoch_ms(fix.ts), wire.format_time(fix.ts)]
    await redis.register_script(_WRITE_NEWER)(keys=script_keys, args=args)


async def rebuild(*, redis: Redis, engine: AsyncEngine, chunk_rows: int = 5000) -> int:
    """Copy every last location from PostgreSQL into Redis; returns how many users."""
    count = 0
    async with engine.connect() as connection:
        async for chunk in history.all_last_locations(connection=connection, chunk_rows=chunk_rows):
            await write(redis=redis, fixes=chunk)
            count += len(chunk)
    await redis.set(keys.HOT_STATE_READY, "1")
    return count


async def ensure(*, redis: Redis, engine: AsyncEngine) -> None:
    """Rebuild the hot state if Redis lost it (start-up)."""
    if await redis.exists(keys.HOT_STATE_READY):
        return
    count = await rebuild(redis=redis, engine=engine)
    log.info("hot state rebuilt from PostgreSQL: %d last locations", count)
