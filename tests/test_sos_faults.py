"""Faults around an SOS: a crash between commit and notification, Redis gone, PostgreSQL gone."""

import asyncio
import json
import time
import uuid

import sqlalchemy as sa
import websockets

from server.alerts import service as alerts
from server.core import wire
from server.accounts.auth import Device
from server.core.config import Settings
from tests.conftest import TEST_ENV
from tests.proxy import CuttableProxy, port_of, through
from tests.servers import add_staff, connect_console, connect_phone, create_user, login, quiet, sos_frame, until_type


async def alerts_shown(console, timeout_s: float) -> set[str]:
    """Alert ids a console is shown within the time: live, or in a fresh snapshot (a resync)."""
    shown: set[str] = set()
    for frame in await quiet(console, timeout_s):
        if frame["type"] == "alert_opened":
            shown.add(frame["alert"]["alert_id"])
        elif frame["type"] == "snapshot":
            shown.update(alert["alert_id"] for alert in frame["alerts"])
    return shown


async def undelivered(engine, alert_id: str) -> int:
    async with engine.connect() as connection:
        return await connection.scalar(sa.text(
            "SELECT count(*) FROM outbox WHERE alert_id = :a AND channel = 'console' AND done_at IS NULL"),
            {"a": alert_id})


async def test_alert_committed_before_a_crash_is_delivered_after_restart(fresh_server, engine):
    """The state a SIGKILL between commit and notification leaves: the alert and its outbox rows,
    nothing relayed. The process that starts next delivers it."""
    server = fresh_server()
    user_id, _ = create_user(server)
    await add_staff(engine, "desk")
    token = login(server, "desk")
    server.kill()
    async with engine.connect() as connection:
        device_id = await connection.scalar(sa.text("SELECT device_id FROM devices WHERE user_id = :u"),
                                            {"u": user_id})
    settings = Settings(database_url=TEST_ENV["GUARDIAN_DATABASE_URL"])
    raised = await alerts.raise_alert(engine=engine, settings=settings, device=Device(device_id, uuid.UUID(user_id)),
                                      sos=wire.SosFields(**{k: v for k, v in sos_frame().items() if k != "type"}))
    assert await undelivered(engine, str(raised.alert_id)) == 1

    server.start()
    console, snapshot = await connect_console(server, token)
    seen = [alert["alert_id"] for alert in snapshot["alerts"]]
    seen += [frame["alert"]["alert_id"] for frame in await quiet(console, 2.0) if frame["type"] == "alert_opened"]
    assert str(raised.alert_id) in seen
    assert await undelivered(engine, str(raised.alert_id)) == 0, "the relay delivered the outbox row"
    await console.close()


async def test_sigkill_right_after_sos_ack_loses_nothing(fresh_server, engine):
    server = fresh_server()
    await add_staff(engine, "desk")
    token = login(server, "desk")
    _, phone_token = create_user(server)
    phone, _ = await connect_phone(server, phone_token)
    await phone.send(json.dumps(sos_frame()))
    alert_id = (await until_type(phone, "sos_ack"))["alert_id"]
    server.kill()
    server.start()
    console, snapshot = await connect_console(server, token)
    assert [alert["alert_id"] for alert in snapshot["alerts"]] == [alert_id]
    await console.close()


async def test_sos_while_redis_is_down_is_acknowledged_and_reaches_consoles(fresh_server, engine):
    with CuttableProxy(target_port=port_of(TEST_ENV["GUARDIAN_REDIS_URL"])) as proxy:
        redis_url = through(proxy, TEST_ENV["GUARDIAN_REDIS_URL"])
        first, second = fresh_server(GUARDIAN_REDIS_URL=redis_url), fresh_server(GUARDIAN_REDIS_URL=redis_url)
        await add_staff(engine, "command", role="command")
        local, _ = await connect_console(first, login(first, "command"))
        remote, _ = await connect_console(second, login(second, "command"))
        _, token = create_user(first)
        phone, _ = await connect_phone(first, token)
        proxy.cut()
        started = time.monotonic()
        await phone.send(json.dumps(sos_frame()))
        alert_id = (await until_type(phone, "sos_ack", timeout_s=3))["alert_id"]
        assert time.monotonic() - started < 1.0, "Redis is not on the SOS path"
        assert (await until_type(local, "alert_opened", timeout_s=2))["alert"]["alert_id"] == alert_id
        proxy.restore()
        assert alert_id in await alerts_shown(remote, timeout_s=10), \
            "the other process's console gets it once Redis is back (live, or by a resync)"
        assert [frame for frame in await quiet(local, 1.5) if frame["type"] == "alert_opened"] == [], \
            "and this process's console does not get it twice"
        for ws in (local, remote, phone):
            await ws.close()


async def test_sos_while_postgresql_is_down_gets_an_error_and_the_retry_succeeds(fresh_server, engine):
    with CuttableProxy(target_port=port_of(TEST_ENV["GUARDIAN_DATABASE_URL"])) as proxy:
        server = fresh_server(GUARDIAN_DATABASE_URL=through(proxy, TEST_ENV["GUARDIAN_DATABASE_URL"]))
        user_id, token = create_user(server)
        phone, _ = await connect_phone(server, token)
        frame = sos_frame()
        proxy.cut()
        await phone.send(json.dumps(frame))
        answer = await until_type(phone, "error", timeout_s=40)
        assert (answer["code"], answer["sos_id"]) == ("unavailable", frame["sos_id"]), "never a false sos_ack"
        proxy.restore()
        for _ in range(20):  # the phone retries the same frame until it is acknowledged
            await phone.send(json.dumps(frame))
            reply = json.loads(await asyncio.wait_for(phone.recv(), 10))
            if reply["type"] == "sos_ack":
                break
            await asyncio.sleep(0.5)
        assert reply["type"] == "sos_ack"
        async with engine.connect() as connection:
            count = await connection.scalar(sa.text("SELECT count(*) FROM alerts WHERE user_id = :u"), {"u": user_id})
        assert count == 1
        await phone.close()


async def test_an_sos_on_a_pooled_connection_that_died_is_acknowledged_not_refused(fresh_server, engine):
    """PostgreSQL dropped the server's idle connections (a restart, a failover): the next SOS
    may find its pooled connection dead, and runs again on a fresh one instead of failing.
    Whether the driver noticed the drop first is a race, so it is tried a few times."""
    others = await guardian_backends(engine)  # the shared server's: left alone
    server = fresh_server()
    _, token = create_user(server)
    phone, _ = await connect_phone(server, token)
    await phone.send(json.dumps(sos_frame()))
    await until_type(phone, "sos_ack")  # the alert pool now holds an idle connection
    for _ in range(5):
        async with engine.connect() as connection:
            dropped = await connection.scalar(sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'guardian' AND datname = current_database() AND pid <> ALL(:others)"),
                {"others": sorted(others)})
        assert dropped > 0
        again = sos_frame()
        await phone.send(json.dumps(again))
        answer = await receive_sos_answer(phone)
        assert answer["type"] == "sos_ack" and answer["sos_id"] == again["sos_id"], answer
    await phone.close()


async def guardian_backends(engine) -> set[int]:
    async with engine.connect() as connection:
        return set(await connection.scalars(sa.text(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'guardian' AND datname = current_database()")))


async def receive_sos_answer(phone) -> dict:
    """The next sos_ack or error."""
    while True:
        frame = json.loads(await asyncio.wait_for(phone.recv(), 10))
        if frame["type"] in ("sos_ack", "error"):
            return frame


PHONES, SOS_PER_PHONE = 4, 5


async def sos_until_acknowledged(phone, frame: dict, attempts: int = 20) -> dict:
    """Send an SOS and resend the same frame until it is acknowledged, as the phone app does."""
    for _ in range(attempts):
        await phone.send(json.dumps(frame))
        answer = await receive_sos_answer(phone)
        if answer["type"] == "sos_ack":
            assert answer["sos_id"] == frame["sos_id"]
            return answer
        await asyncio.sleep(0.2)
    raise AssertionError(f"SOS {frame['sos_id']} never acknowledged")


async def collect(console, into: list[dict]) -> None:
    try:
        while True:
            into.append(json.loads(await console.recv()))
    except websockets.ConnectionClosed:
        return


def alerts_in(frames: list[dict]) -> tuple[set[str], dict[str, int]]:
    """Every alert a console was shown (live or in a snapshot), and how often each came as alert_opened."""
    shown, opened = set(), {}
    for frame in frames:
        if frame["type"] in ("snapshot", "snapshot_more"):
            shown.update(alert["alert_id"] for alert in frame["alerts"])
        elif frame["type"] == "alert_opened":
            alert_id = frame["alert"]["alert_id"]
            shown.add(alert_id)
            opened[alert_id] = opened.get(alert_id, 0) + 1
    return shown, opened


async def test_sos_stream_through_a_redis_cut_and_a_flush_keeps_every_invariant(fresh_server, engine, redis):
    """Phones on two processes raise SOS while Redis is cut, comes back, and is flushed. Counted
    afterwards: every acknowledged SOS stored once, every retry answered with the same alert,
    every console shown every alert, none twice as new."""
    with CuttableProxy(target_port=port_of(TEST_ENV["GUARDIAN_REDIS_URL"])) as proxy:
        url = through(proxy, TEST_ENV["GUARDIAN_REDIS_URL"])
        servers = [fresh_server(GUARDIAN_REDIS_URL=url), fresh_server(GUARDIAN_REDIS_URL=url)]
        await add_staff(engine, "command", role="command")
        consoles = [(await connect_console(server, login(server, "command")))[0] for server in servers for _ in "ab"]
        heard: list[list[dict]] = [[] for _ in consoles]
        collectors = [asyncio.create_task(collect(console, frames)) for console, frames in zip(consoles, heard)]
        phones = []
        for index in range(PHONES):
            _, token = create_user(servers[index % 2], name=f"Phone {index}")
            phones.append((await connect_phone(servers[index % 2], token))[0])
        sent: list[list[dict]] = [[] for _ in phones]
        acks: dict[str, str] = {}

        async def stream(index: int) -> None:
            for _ in range(SOS_PER_PHONE):
                frame = sos_frame()
                sent[index].append(frame)
                acks[frame["sos_id"]] = (await sos_until_acknowledged(phones[index], frame))["alert_id"]
                await asyncio.sleep(0.6)

        async def faults() -> None:
            await asyncio.sleep(0.8)
            proxy.cut()
            await asyncio.sleep(1.2)
            proxy.restore()
            await asyncio.sleep(0.8)
            await redis.flushdb()

        await asyncio.gather(faults(), *(stream(index) for index in range(PHONES)))
        for index, phone in enumerate(phones):  # every SOS resent after the faults
            for frame in sent[index]:
                assert (await sos_until_acknowledged(phone, frame))["alert_id"] == acks[frame["sos_id"]]
        assert len(acks) == PHONES * SOS_PER_PHONE

        async with engine.connect() as connection:
            stored = dict((await connection.execute(sa.text(
                "SELECT CAST(sos_id AS text), count(*) FROM (SELECT sos_id FROM alerts UNION ALL "
                "SELECT sos_id FROM sos_repeats) AS kept GROUP BY sos_id"))).all())
        assert stored == {sos_id: 1 for sos_id in acks}, "every acknowledged SOS stored once, nothing else"

        expected = set(acks.values())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(alerts_in(frames)[0] >= expected for frames in heard):
            await asyncio.sleep(0.2)
        for number, frames in enumerate(heard):
            shown, opened = alerts_in(frames)
            assert expected - shown == set(), f"console {number} never shown {len(expected - shown)} alerts"
            assert {alert_id: count for alert_id, count in opened.items() if count > 1} == {}, \
                f"console {number} was told of an alert as new twice"
        for ws in (*consoles, *phones):
            await ws.close()
        await asyncio.gather(*collectors)
    print(f"soak sos through Redis faults: {len(acks)} SOS from {PHONES} phones on 2 processes acknowledged and "
          f"resent after the faults (Redis cut once, flushed once), each stored once; {len(consoles)} consoles "
          "shown every alert, 0 missing, 0 told twice")
