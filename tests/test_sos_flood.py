"""One user cannot flood the dispatchers' queue with alerts, and no SOS of theirs is ever refused."""

import asyncio
import json
import os
import uuid

import httpx
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from playwright.async_api import expect
from sqlalchemy.ext.asyncio import create_async_engine

from server.alerts import service as alerts
from server.core import wire
from server.accounts.auth import Device
from server.core.config import Settings
from server.accounts.staff import Staff
from tests.browser import chromium_page, log_in
from tests.servers import (add_staff, bearer, connect_console, connect_phone, create_user, login, quiet, sos_frame,
                           until_type)

CAP = 3  # the default of max_unfinished_alerts_per_user


async def stored(engine, user_id: str) -> dict:
    """The user's alerts (with their repeat counts) and repeats, as PostgreSQL holds them."""
    async with engine.connect() as connection:
        opened = (await connection.execute(sa.text(
            "SELECT CAST(alert_id AS text), CAST(sos_id AS text), status, repeats FROM alerts "
            "WHERE user_id = :u ORDER BY opened_at"), {"u": user_id})).all()
        joined = (await connection.execute(sa.text(
            "SELECT CAST(sos_id AS text), CAST(alert_id AS text), note FROM sos_repeats WHERE user_id = :u"),
            {"u": user_id})).all()
    return {"alerts": [tuple(row) for row in opened], "repeats": {row[0]: (row[1], row[2]) for row in joined}}


def http_sos(server, token: str, frame: dict) -> httpx.Response:
    body = {key: value for key, value in frame.items() if key != "type"}
    return httpx.post(f"{server.url}/v1/sos", json=body, headers=bearer(token), timeout=10)


async def test_sos_past_the_cap_joins_the_newest_alert_once_and_the_console_sees_the_count(server, engine):
    await add_staff(engine, "xinyi-desk")
    user_id, token = create_user(server)
    phone, _ = await connect_phone(server, token)
    opened = []
    for _ in range(CAP):
        await phone.send(json.dumps(sos_frame()))
        opened.append((await until_type(phone, "sos_ack"))["alert_id"])
    newest = opened[-1]
    console, snapshot = await connect_console(server, login(server, "xinyi-desk"))
    assert [alert["alert_id"] for alert in snapshot["alerts"]] == opened
    assert [alert["repeats"] for alert in snapshot["alerts"]] == [0] * CAP

    on_socket = sos_frame(note="he is back")
    await phone.send(json.dumps(on_socket))
    ack = await until_type(phone, "sos_ack")
    assert ack == {"type": "sos_ack", "sos_id": on_socket["sos_id"], "alert_id": newest, "status": "open"}
    updated = await until_type(console, "alert_updated")
    assert (updated["alert"]["alert_id"], updated["alert"]["repeats"]) == (newest, 1)
    await phone.send(json.dumps(on_socket))
    assert await until_type(phone, "sos_ack") == ack, "a retry answers the same alert"

    over_http = sos_frame()
    first = http_sos(server, token, over_http)
    assert (first.status_code, first.json()["alert_id"], first.json()["status"]) == (201, newest, "open")
    updated = await until_type(console, "alert_updated")
    assert (updated["alert"]["alert_id"], updated["alert"]["repeats"]) == (newest, 2)
    retry = http_sos(server, token, over_http)
    assert (retry.status_code, retry.json()) == (200, first.json())
    await phone.send(json.dumps(over_http))
    assert (await until_type(phone, "sos_ack"))["alert_id"] == newest

    later = await quiet(console, 1.0)
    assert [frame["type"] for frame in later if frame["type"] in ("alert_opened", "alert_updated")] == [], \
        "one update per new SOS, none for the retries, no new alert"
    rows = await stored(engine, user_id)
    assert [(alert_id, repeats) for alert_id, _, _, repeats in rows["alerts"]] == \
        [(alert_id, 2 if alert_id == newest else 0) for alert_id in opened], "no new alert row"
    assert rows["repeats"] == {on_socket["sos_id"]: (newest, "he is back"), over_http["sos_id"]: (newest, None)}
    for ws in (phone, console):
        await ws.close()


async def test_once_the_users_alerts_are_resolved_the_next_sos_opens_an_alert_and_old_retries_keep_their_answer(
        server, engine):
    await add_staff(engine, "xinyi-desk")
    user_id, token = create_user(server)
    opened = [http_sos(server, token, sos_frame()).json()["alert_id"] for _ in range(CAP)]
    joined_frame = sos_frame()
    joined = http_sos(server, token, joined_frame)
    assert (joined.status_code, joined.json()["alert_id"]) == (201, opened[-1])

    console, _ = await connect_console(server, login(server, "xinyi-desk"))
    for alert_id in opened:
        await console.send(json.dumps({"type": "resolve", "alert_id": alert_id, "outcome": "user safe"}))
        await until_type(console, "alert_updated", timeout_s=5.0)
    fresh = http_sos(server, token, sos_frame())
    assert fresh.status_code == 201 and fresh.json()["alert_id"] not in opened, "a new alert once below the cap"
    opened_frame = await until_type(console, "alert_opened")
    assert (opened_frame["alert"]["alert_id"], opened_frame["alert"]["repeats"]) == (fresh.json()["alert_id"], 0)

    retry = http_sos(server, token, joined_frame)
    assert (retry.status_code, retry.json()["alert_id"], retry.json()["status"]) == (200, opened[-1], "resolved")
    rows = await stored(engine, user_id)
    assert len(rows["alerts"]) == CAP + 1 and list(rows["repeats"]) == [joined_frame["sos_id"]]
    await console.close()


async def test_an_sos_past_the_cap_sent_on_the_socket_and_over_http_at_once_joins_once(server, engine):
    user_id, token = create_user(server)
    newest = [http_sos(server, token, sos_frame()).json()["alert_id"] for _ in range(CAP)][-1]
    phone, _ = await connect_phone(server, token)
    for _ in range(3):
        frame = sos_frame()
        posted = asyncio.create_task(asyncio.to_thread(http_sos, server, token, frame))
        await phone.send(json.dumps(frame))
        ack = await until_type(phone, "sos_ack")
        answer = await posted
        assert ack["alert_id"] == answer.json()["alert_id"] == newest
    rows = await stored(engine, user_id)
    assert len(rows["alerts"]) == CAP and len(rows["repeats"]) == 3
    assert rows["alerts"][-1][3] == 3, "each SOS counted once on the alert it joined"
    await phone.close()


async def test_a_user_whose_only_unfinished_alerts_are_duress_cancelled_still_gets_an_open_alert(fresh_server,
                                                                                                engine):
    """The phone was told `cancelled` of a duress-cancelled alert: a new SOS is told it is open."""
    server = fresh_server(GUARDIAN_MAX_UNFINISHED_ALERTS_PER_USER="1")
    user_id, token = create_user(server)
    assert httpx.put(f"{server.url}/v1/me/pins", json={"pin": "1234", "duress_pin": "9999"}, headers=bearer(token),
                     timeout=10).status_code == 204
    phone, _ = await connect_phone(server, token)
    await phone.send(json.dumps(sos_frame()))
    first = (await until_type(phone, "sos_ack"))["alert_id"]
    await phone.send(json.dumps({"type": "sos_cancel", "alert_id": first, "pin": "9999"}))
    assert (await until_type(phone, "alert_status"))["status"] == "cancelled"
    await phone.send(json.dumps(sos_frame()))
    ack = await until_type(phone, "sos_ack")
    assert ack["alert_id"] != first and ack["status"] == "open"
    assert [status for _, _, status, _ in (await stored(engine, user_id))["alerts"]] == ["open", "open"]
    await phone.close()


async def test_the_console_page_shows_how_many_more_sos_an_alert_got(server, engine):
    await add_staff(engine, "desk")
    _, token = create_user(server, name="Mei Wu")
    newest = [http_sos(server, token, sos_frame()).json()["alert_id"] for _ in range(CAP)][-1]
    async with chromium_page() as page:
        await page.goto(f"{server.url}/console")
        await log_in(page, "desk")
        meta = page.locator(f"#queue li[data-alert-id='{newest}'] .meta")
        await expect(meta).not_to_contain_text("more SOS")
        for _ in range(2):
            assert http_sos(server, token, sos_frame()).json()["alert_id"] == newest
        await expect(meta).to_contain_text("2 more SOS")
        assert await page.locator("#queue li").count() == CAP


# A step of the property: ("new",), ("retry", which earlier SOS), ("resolve", which unfinished alert).
STEPS = st.one_of(st.tuples(st.just("new")), st.tuples(st.just("retry"), st.integers(0, 30)),
                  st.tuples(st.just("resolve"), st.integers(0, 30)))


async def add_device(engine) -> Device:
    user_id, device_id = uuid.uuid4(), uuid.uuid4()
    async with engine.begin() as connection:
        await connection.execute(sa.text("INSERT INTO users (user_id, name, phone) VALUES (:u, 'Ann Lin', '+886900')"),
                                 {"u": user_id})
        await connection.execute(sa.text(
            "INSERT INTO devices (device_id, user_id, token_sha256) VALUES (:d, :u, :t)"),
            {"d": device_id, "u": user_id, "t": os.urandom(32)})
    return Device(device_id, user_id)


async def play(steps: list[tuple], *, database_url: str, cap: int) -> None:
    """Run the steps one after another against PostgreSQL and check the invariants after each."""
    engine = create_async_engine(database_url, pool_size=2)
    config = Settings(database_url=database_url, max_unfinished_alerts_per_user=cap)
    command = Staff(uuid.uuid4(), "property-command", "command", None)
    try:
        device = await add_device(engine)
        answers: dict[str, str] = {}  # sos_id -> the alert_id its first sos_ack named
        for step in steps:
            if step[0] == "resolve":
                unfinished = [row[0] for row in (await stored(engine, str(device.user_id)))["alerts"]
                              if row[2] in ("open", "acknowledged")]
                if unfinished:
                    await alerts.resolve(engine=engine, settings=config, member=command,
                                         alert_id=unfinished[step[1] % len(unfinished)], outcome="safe")
                continue
            if step[0] == "retry" and answers:
                sos_id = list(answers)[step[1] % len(answers)]
            else:
                sos_id = str(uuid.uuid4())
            raised = await alerts.raise_alert(engine=engine, settings=config, device=device,
                                              sos=wire.SosFields(sos_id=sos_id, lat=25.0339, lon=121.5645))
            if sos_id in answers:
                assert str(raised.alert_id) == answers[sos_id] and not raised.stored_now, "a retry, same answer"
            else:
                assert raised.stored_now, "a new sos_id is stored"
                answers[sos_id] = str(raised.alert_id)
            rows = await stored(engine, str(device.user_id))
            unfinished = [row for row in rows["alerts"] if row[2] in ("open", "acknowledged")]
            assert len(unfinished) <= cap, "sequential SOS never pass the cap"
        rows = await stored(engine, str(device.user_id))
        kept = [sos_id for _, sos_id, _, _ in rows["alerts"]] + list(rows["repeats"])
        assert sorted(kept) == sorted(answers), "every acknowledged sos_id stored exactly once"
        assert {sos_id: alert_id for alert_id, sos_id, _, _ in rows["alerts"]} | \
            {sos_id: alert_id for sos_id, (alert_id, _) in rows["repeats"].items()} == answers
        counts = {alert_id: repeats for alert_id, _, _, repeats in rows["alerts"]}
        for alert_id in counts:
            assert counts[alert_id] == sum(joined == alert_id for joined, _ in rows["repeats"].values())
    finally:
        await engine.dispose()


def test_every_acknowledged_sos_is_stored_once_and_retries_keep_their_answer_whatever_the_sequence(test_env):
    database_url = test_env["GUARDIAN_DATABASE_URL"]

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(steps=st.lists(STEPS, max_size=25), cap=st.integers(1, 3))
    def sequence(steps, cap):
        asyncio.run(play(steps, database_url=database_url, cap=cap))

    sequence()
