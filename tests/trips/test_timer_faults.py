"""Each step of a trip's timers fires once: across restarts between the steps (graceful and
SIGKILL), and with two processes sweeping the same trips. Alerts and pushes are counted."""

import asyncio
import time

from tests.endpoints import FakeFcm
from tests.servers import connect_phone
from tests.test_channels import fcm_settings
from tests.trips.timing import (FAST, count, friend_with_app, make_due, make_unanswered, rider, start_trip,
                                start_walk_over_http, trip_row, until_status)


def overdue_pushes(fcm: FakeFcm) -> int:
    return sum(request["body"]["message"]["data"]["type"] == "trip_overdue" for request in fcm.requests)


async def pushed(engine, trip_id: str, timeout_s: float = 20.0) -> None:
    """The trip's push is recorded as delivered (a restart before that may push it again: at least once)."""
    deadline = time.monotonic() + timeout_s
    while await count(engine, "SELECT count(*) FROM trip_events WHERE trip_id = :t AND done_at IS NOT NULL",
                      t=trip_id) == 0:
        assert time.monotonic() < deadline, "the overdue push was never delivered"
        await asyncio.sleep(0.1)


async def test_a_restart_between_the_steps_neither_loses_nor_repeats_one(fresh_server, engine):
    with FakeFcm(hang_s=0) as fcm:
        settings = {**FAST, **fcm_settings(fcm)}
        server = fresh_server(**settings)
        friend_with_app(server)
        user_id, token = rider(server, contact="+886911111111")
        phone, _ = await connect_phone(server, token)
        trip_id = (await start_trip(phone))["trip_id"]
        await phone.close()
        server.kill()

        await make_due(engine, trip_id)  # while no server runs: the next one to start takes the step
        server = fresh_server(**settings)
        overdue = await until_status(engine, trip_id, "overdue")
        await pushed(engine, trip_id)
        server.stop()
        server = fresh_server(**settings)
        await asyncio.sleep(1.5)
        assert (await trip_row(engine, trip_id))["answer_by"] == overdue["answer_by"], "not asked twice"
        assert await count(engine, "SELECT count(*) FROM trip_events WHERE trip_id = :t", t=trip_id) == 1
        assert overdue_pushes(fcm) == 1
        server.kill()

        await make_unanswered(engine, trip_id)
        server = fresh_server(**settings)
        alerted = await until_status(engine, trip_id, "alert")
        server.kill()
        server = fresh_server(**settings)
        await asyncio.sleep(1.5)
        assert (await trip_row(engine, trip_id))["alert_id"] == alerted["alert_id"]
        assert await count(engine, "SELECT count(*) FROM alerts WHERE user_id = :u", u=user_id) == 1
        assert await count(engine, "SELECT count(*) FROM alerts WHERE user_id = :u AND reason = 'overdue'",
                           u=user_id) == 1
        assert overdue_pushes(fcm) == 1
        server.stop()


async def test_two_processes_sweeping_the_same_trips_fire_each_step_once(fresh_server, engine):
    trips_count = 6
    with FakeFcm(hang_s=0) as fcm:
        settings = {**FAST, "GUARDIAN_SWEEP_INTERVAL_S": "0.05", **fcm_settings(fcm)}
        first, second = fresh_server(**settings), fresh_server(**settings)
        friend_with_app(first)
        trip_ids = []
        for index in range(trips_count):
            _, token = rider(first, phone=f"+8869200000{index:02d}", contact="+886911111111")
            trip_ids.append(start_walk_over_http(second if index % 2 else first, token))
        for trip_id in trip_ids:
            await make_due(engine, trip_id)
        for trip_id in trip_ids:
            await until_status(engine, trip_id, "overdue")
        fcm.wait_for(trips_count)
        await asyncio.sleep(1.0)
        assert await count(engine, "SELECT count(*) FROM trip_events") == trips_count
        assert overdue_pushes(fcm) == trips_count

        for trip_id in trip_ids:
            await make_unanswered(engine, trip_id)
        for trip_id in trip_ids:
            await until_status(engine, trip_id, "alert")
        await asyncio.sleep(1.0)
        assert await count(engine, "SELECT count(*) FROM alerts WHERE reason = 'overdue'") == trips_count
        assert await count(engine, "SELECT count(DISTINCT user_id) FROM alerts") == trips_count
        assert await count(engine, "SELECT count(*) FROM outbox WHERE kind = 'opened' AND channel = 'console'") \
            == trips_count
        assert overdue_pushes(fcm) == trips_count
