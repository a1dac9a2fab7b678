"""The hot copy of last locations (and officers' positions) in Redis, and its rebuild from PostgreSQL.

Writes are conditional on the fix time inside Redis (one script call per flush),
so flushes that finish out of order, or a rebuild racing live traffic, can never
move a last location backwards. Officers' positions are committed in PostgreSQL
before Redis is told, so a wiped Redis gets them back with the rebuild.
"""

import logging
import uuid
from collections.abc import Sequence

import msgspec
import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncEngine

from geo.fix import Fix
from server.core import db, keys, wire
from server.positions import history
from server.core.tables import officer_positions, point

log = logging.getLogger(__name__)

# Redis geo indexes refuse latitudes beyond this (Web Mercator's limit).
GEO_MAX_LAT = 85.05112878

# KEYS: the geo index, then each user's hash; ARGV[1]: a JSON list, per user
# [user id, lon, lat, acc, ts_ms, ts], all strings. One argument, encoded in C, rather
# than six per user packed one by one in Python (which cost a seventh of the ingest's CPU).
_WRITE_NEWER = """
local geo = KEYS[1]
local rows = cjson.decode(ARGV[1])
for i = 2, #KEYS do
  local row = rows[i - 1]
  local current = tonumber(redis.call('HGET', KEYS[i], 'ts_ms') or '-1')
  if tonumber(row[5]) > current then
    redis.call('HSET', KEYS[i], 'lat', row[3], 'lon', row[2], 'acc', row[4], 'ts_ms', row[5], 'ts', row[6])
    if math.abs(tonumber(row[3])) <= %s then
      redis.call('GEOADD', geo, row[2], row[3], row[1])
    end
  end
end
return #KEYS - 1
""" % GEO_MAX_LAT

_encoder = msgspec.json.Encoder()


async def write(*, redis: Redis, fixes: Sequence[tuple[uuid.UUID, Fix]]) -> None:
    """Copy last locations to Redis where they are newer than what Redis holds."""
    if not fixes:
        return
    script_keys = [keys.LAST_LOCATIONS_GEO]
    rows = []
    for user_id, fix in fixes:
        script_keys.append(keys.last_location(user_id))
        rows.append((user_id, repr(fix.lon), repr(fix.lat), "" if fix.accuracy_m is None else repr(fix.accuracy_m),
                     str(wire.epoch_ms(fix.ts)), wire.format_time(fix.ts)))
    await redis.register_script(_WRITE_NEWER)(keys=script_keys, args=[_encoder.encode(rows)])


async def rebuild(*, redis: Redis, engine: AsyncEngine, chunk_rows: int = 5000) -> int:
    """Copy every last location and officer's position from PostgreSQL into Redis; returns how
    many users. The ready mark is set last, so a rebuild cut short is run again."""
    count = 0
    async with engine.connect() as connection:
        async for chunk in history.all_last_locations(connection=connection, chunk_rows=chunk_rows):
            await write(redis=redis, fixes=chunk)
            count += len(chunk)
        officers = (await connection.execute(sa.select(
            officer_positions.c.staff_id, sa.func.ST_Y(officer_positions.c.location).label("lat"),
            sa.func.ST_X(officer_positions.c.location).label("lon")))).all()
    if officers:
        await redis.geoadd(keys.OFFICERS_GEO, [value for row in officers
                                               for value in (row.lon, row.lat, str(row.staff_id))])
    await redis.set(keys.HOT_STATE_READY, "1")
    return count


async def is_ready(*, redis: Redis) -> bool:
    """False once Redis lost the hot state (restarted empty, flushed)."""
    return bool(await redis.exists(keys.HOT_STATE_READY))


async def place_officer(*, engine: AsyncEngine, redis: Redis, staff_id: uuid.UUID, lat: float, lon: float) -> None:
    """Record an officer's position: committed in PostgreSQL, then copied to the geo index that push
    searches. Raises the storage or Redis error; the officer's phone reports again."""
    async with db.autocommit(engine) as connection:
        await connection.execute(
            pg.insert(officer_positions).values(staff_id=staff_id, location=point(lat, lon))
            .on_conflict_do_update(index_elements=[officer_positions.c.staff_id],
                                   set_={"location": point(lat, lon), "reported_at": sa.func.now()}))
    await redis.geoadd(keys.OFFICERS_GEO, (lon, lat, str(staff_id)))


async def ensure(*, redis: Redis, engine: AsyncEngine) -> None:
    """Rebuild the hot state if Redis lost it (start-up)."""
    if await is_ready(redis=redis):
        return
    count = await rebuild(redis=redis, engine=engine)
    log.info("hot state rebuilt from PostgreSQL: %d last locations", count)
