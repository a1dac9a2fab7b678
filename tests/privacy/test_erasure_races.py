"""The erasure against what writes for the user at the same moment, on the real database:
whichever takes the user's row first, nothing is left behind once both committed."""

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from geo.fix import Fix
from server.positions import history
from server.privacy import erasure
from tests.servers import TAIPEI_101

WAIT_S = 0.5


async def _user(engine) -> tuple[uuid.UUID, uuid.UUID]:
    user_id, device_id = uuid.uuid4(), uuid.uuid4()
    async with engine.begin() as connection:
        await connection.execute(sa.text("INSERT INTO users (user_id, name, phone) VALUES (:u, 'R', '0912345678')"),
                                 {"u": user_id})
        await connection.execute(sa.text("INSERT INTO devices (device_id, user_id, token_sha256) VALUES (:d, :u, :t)"),
                                 {"d": device_id, "u": user_id, "t": device_id.bytes * 2})
    return user_id, device_id


def _fix(user_id: uuid.UUID, device_id: uuid.UUID, seq: int) -> history.NewFix:
    now = datetime.now(UTC)
    return history.NewFix(device_id=device_id, user_id=user_id, seq=seq, received_at=now, suspect=None,
                          fix=Fix(lat=TAIPEI_101[0], lon=TAIPEI_101[1], ts=now, accuracy_m=5.0))


async def _count(engine, table: str, user_id: uuid.UUID) -> int:
    async with engine.connect() as connection:
        return await connection.scalar(sa.text(f"SELECT count(*) FROM {table} WHERE user_id = :u"), {"u": user_id})


async def _store(engine, rows) -> list:
    async with engine.begin() as connection:
        return await history.store(connection=connection, rows=rows)


async def test_a_flush_waiting_on_an_erasure_stores_no_fix_of_the_user_once_it_commits(engine):
    user_id, device_id = await _user(engine)
    other_id, other_device = await _user(engine)
    async with engine.begin() as erasing:
        assert await erasure.erase(connection=erasing, user_id=user_id) is not None
        flush = asyncio.create_task(_store(engine, [_fix(user_id, device_id, 0), _fix(other_id, other_device, 0)]))
        await asyncio.sleep(WAIT_S)
        assert not flush.done(), "the flush waits for the erasure holding the user's row"
    moved = await asyncio.wait_for(flush, timeout=10)
    assert [user for user, _ in moved] == [other_id], "the other user's fix of the same flush is stored"
    assert (await _count(engine, "pings", user_id), await _count(engine, "last_locations", user_id)) == (0, 0)
    assert await _count(engine, "pings", other_id) == 1


async def test_an_erasure_waits_for_a_flush_in_flight_and_then_erases_its_fixes(engine):
    user_id, device_id = await _user(engine)
    async with engine.begin() as flushing:
        await history.store(connection=flushing, rows=[_fix(user_id, device_id, 0)])

        async def erase():
            async with engine.begin() as connection:
                return await erasure.erase(connection=connection, user_id=user_id)

        erasing = asyncio.create_task(erase())
        await asyncio.sleep(WAIT_S)
        assert not erasing.done(), "the erasure waits for the flush that locked the user's row"
    assert await asyncio.wait_for(erasing, timeout=10) is not None
    assert (await _count(engine, "pings", user_id), await _count(engine, "last_locations", user_id)) == (0, 0)


@pytest.mark.parametrize("insert", [
    "INSERT INTO contacts (user_id, position, name, phone) VALUES (:u, 0, 'C', '0911111111')",
    "INSERT INTO pins (user_id, pin_hash, duress_pin_hash) VALUES (:u, 'h', 'd')",
    "INSERT INTO trips (trip_id, user_id, kind) VALUES (gen_random_uuid(), :u, 'walk')",
    "INSERT INTO devices (device_id, user_id, token_sha256) VALUES (gen_random_uuid(), :u, gen_random_uuid()::text::bytea)",
])
async def test_a_write_racing_the_erasure_is_refused_once_it_committed(engine, insert):
    user_id, _ = await _user(engine)

    async def write():
        async with engine.begin() as connection:
            await connection.execute(sa.text(insert), {"u": user_id})

    async with engine.begin() as erasing:
        await erasure.erase(connection=erasing, user_id=user_id)
        racing = asyncio.create_task(write())
        await asyncio.sleep(WAIT_S)
        assert not racing.done()
    with pytest.raises(IntegrityError):
        await asyncio.wait_for(racing, timeout=10)
    with pytest.raises(IntegrityError):
        await write()
    async with engine.connect() as connection:
        assert await connection.scalar(sa.text("SELECT count(*) FROM users WHERE user_id = :u AND erased_at IS NULL"),
                                       {"u": user_id}) == 0


async def test_a_second_erasure_waiting_on_the_first_finds_nothing_left(engine):
    user_id, _ = await _user(engine)

    async def erase():
        async with engine.begin() as connection:
            return await erasure.erase(connection=connection, user_id=user_id)

    async with engine.begin() as first:
        assert await erasure.erase(connection=first, user_id=user_id) is not None
        second = asyncio.create_task(erase())
        await asyncio.sleep(WAIT_S)
        assert not second.done()
    assert await asyncio.wait_for(second, timeout=10) is None


def test_every_table_holding_a_user_id_is_erased_or_kept_as_the_record():
    from server.core.tables import metadata

    erased = {table.name for table, _ in erasure.erased_tables()}
    with_user = {table.name for table in metadata.tables.values() if "user_id" in table.c}
    assert with_user - erased == erasure.RECORD_TABLES | {"users"}
    assert {"push_tokens", "shares", "trip_events"} <= erased, "tables reaching the user through a key"
