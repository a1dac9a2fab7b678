"""The console socket: auth before accept, snapshot then live, actions, visibility, audit, escalation."""

import asyncio
import json
import subprocess
import sys
import time

import httpx
import pytest
import sqlalchemy as sa
import websockets
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.exceptions import InvalidStatus

from server.console.socket import snapshot_frames

from tests.servers import (TAIPEI_101, add_staff, bearer, connect_console, connect_phone, create_user, login, quiet,
                           sos_frame, until_ack, until_type)

BEITOU = (25.1318, 121.4989)


async def raise_sos(server, token, at=TAIPEI_101) -> tuple[object, str]:
    ws, _ = await connect_phone(server, token)
    await ws.send(json.dumps(sos_frame(at=at)))
    return ws, (await until_type(ws, "sos_ack"))["alert_id"]


async def test_console_gets_a_snapshot_then_live_alerts_locations_and_acts_on_them(server, engine):
    await add_staff(engine, "xinyi-desk")
    token = login(server, "xinyi-desk")
    user_id, phone_token = create_user(server, name="Mei Wu")
    phone, first_alert = await raise_sos(server, phone_token)

    console, snapshot = await connect_console(server, token)
    [alert] = snapshot["alerts"]
    assert alert["alert_id"] == first_alert and alert["status"] == "open"
    assert alert["user"] == {"user_id": user_id, "name": "Mei Wu", "phone": "+886912345678"}
    assert alert["precinct"]["id"] == "xinyi" and alert["location"]["quality"] == "fix"
    assert alert["duress"] is False and alert["trip"] is None

    _, other_token = create_user(server, name="Li Na")
    started = time.monotonic()
    other_phone, second_alert = await raise_sos(server, other_token)
    opened = await until_type(console, "alert_opened", timeout_s=1.0)
    assert opened["alert"]["alert_id"] == second_alert
    assert time.monotonic() - started < 1.0

    now_ms = int(time.time() * 1000)
    await other_phone.send(json.dumps({"type": "ping", "seq": 0, "ts": now_ms, "lat": 25.0341, "lon": 121.5650,
                                       "acc": 6.0}))
    moved = await until_type(console, "alert_location", alert_id=second_alert)
    assert (moved["lat"], moved["lon"], moved["acc"]) == (25.0341, 121.5650, 6.0)

    await console.send(json.dumps({"type": "ack", "alert_id": second_alert}))
    updated = await until_type(console, "alert_updated")
    assert updated["alert"]["status"] == "acknowledged" and updated["alert"]["acknowledged_by"] == "xinyi-desk"
    status = await until_type(other_phone, "alert_status")
    assert status == {"type": "alert_status", "alert_id": second_alert, "status": "acknowledged", "by": "xinyi-desk"}

    await console.send(json.dumps({"type": "note", "alert_id": second_alert, "text": "unit 12 dispatched"}))
    noted = await until_type(console, "alert_updated")
    assert noted["alert"]["notes"][0]["text"] == "unit 12 dispatched"

    await console.send(json.dumps({"type": "resolve", "alert_id": second_alert, "outcome": "user safe"}))
    resolved = await until_type(console, "alert_updated")
    assert resolved["alert"]["status"] == "resolved" and resolved["alert"]["outcome"] == "user safe"
    assert (await until_type(other_phone, "alert_status"))["status"] == "resolved"
    assert (await until_type(other_phone, "report_interval"))["interval_s"] is None

    await console.send(json.dumps({"type": "ack", "alert_id": second_alert}))
    assert (await until_type(console, "error"))["code"] == "conflict"
    await console.close()
    console, snapshot = await connect_console(server, token)
    assert [alert["alert_id"] for alert in snapshot["alerts"]] == [first_alert], "resolved alerts leave the snapshot"
    for ws in (console, phone, other_phone):
        await ws.close()


@pytest.mark.parametrize("frame, code", [
    ("not json", "bad_json"),
    (json.dumps({"type": "launch", "alert_id": "x"}), "unknown_type"),
    (json.dumps({"type": "ack"}), "invalid_field"),
    (json.dumps({"type": "ack", "alert_id": "nope"}), "invalid_field"),
    (json.dumps({"type": "ack", "alert_id": "00000000-0000-0000-0000-000000000000"}), "not_found"),
    (json.dumps({"type": "resolve", "alert_id": "00000000-0000-0000-0000-000000000000"}), "invalid_field"),
    (json.dumps({"type": "note", "alert_id": "00000000-0000-0000-0000-000000000000", "text": ""}), "invalid_field"),
])
async def test_bad_console_frames_get_an_error_and_the_socket_stays(server, engine, frame, code):
    await add_staff(engine, "desk")
    console, _ = await connect_console(server, login(server, "desk"))
    await console.send(frame)
    assert (await until_type(console, "error"))["code"] == code
    await console.send(json.dumps({"type": "ack", "alert_id": "00000000-0000-0000-0000-000000000000"}))
    assert (await until_type(console, "error"))["code"] == "not_found"
    await console.close()


async def test_console_from_a_foreign_origin_is_refused_before_accept(server, engine):
    await add_staff(engine, "desk")
    token = login(server, "desk")
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(f"{server.ws_url}/v1/console", additional_headers=bearer(token),
                                 origin="http://evil.example")
    assert refused.value.response.status_code == 403


async def test_phone_tokens_officers_and_strangers_cannot_open_the_console(server, engine):
    _, phone_token = create_user(server)
    await add_staff(engine, "officer-1", role="officer")
    for token in (phone_token, login(server, "officer-1"), "made-up"):
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(f"{server.ws_url}/v1/console", additional_headers=bearer(token),
                                     origin=server.url)
        assert refused.value.response.status_code == 403


async def test_console_tokens_cannot_post_pings_or_raise_sos(server, engine):
    await add_staff(engine, "desk")
    token = login(server, "desk")
    assert httpx.post(f"{server.url}/v1/pings", json={"pings": []}, headers=bearer(token)).status_code == 401
    assert httpx.post(f"{server.url}/v1/sos", json={"sos_id": "x"}, headers=bearer(token)).status_code == 401
    with pytest.raises(Exception):
        await connect_phone(server, token)


async def test_login_refuses_wrong_passwords_and_sessions_expire(fresh_server, engine):
    server = fresh_server(GUARDIAN_CONSOLE_SESSION_TTL_S="1")
    await add_staff(engine, "desk")
    wrong = httpx.post(f"{server.url}/v1/console/login", json={"username": "desk", "password": "nope"})
    unknown = httpx.post(f"{server.url}/v1/console/login", json={"username": "nobody", "password": "nope"})
    assert wrong.status_code == unknown.status_code == 401
    response = httpx.post(f"{server.url}/v1/console/login", json={"username": "desk",
                                                                  "password": "correct horse battery staple"})
    assert response.cookies.get("guardian_session") == response.json()["token"]
    assert httpx.get(f"{server.url}/v1/console/me", headers=bearer(response.json()["token"])).status_code == 200
    time.sleep(1.2)
    assert httpx.get(f"{server.url}/v1/console/me", headers=bearer(response.json()["token"])).status_code == 401


async def test_a_precinct_dispatcher_never_sees_another_precincts_alert(server, engine):
    await add_staff(engine, "beitou-desk", precinct="beitou")
    await add_staff(engine, "command", role="command")
    beitou, snapshot = await connect_console(server, login(server, "beitou-desk"))
    command, _ = await connect_console(server, login(server, "command"))
    _, token = create_user(server)
    phone, alert_id = await raise_sos(server, token)  # Taipei 101: Xinyi
    assert (await until_type(command, "alert_opened"))["alert"]["alert_id"] == alert_id
    await phone.send(json.dumps({"type": "ping", "seq": 0, "ts": int(time.time() * 1000), "lat": 25.0340,
                                 "lon": 121.5646}))
    await until_type(command, "alert_location")
    assert await quiet(beitou, 1.0) == [], "no alert, no location of another precinct"
    await beitou.send(json.dumps({"type": "ack", "alert_id": alert_id}))
    assert (await until_type(beitou, "error"))["code"] == "not_found"
    again, beitou_snapshot = await connect_console(server, login(server, "beitou-desk"))
    assert beitou_snapshot["alerts"] == []
    for ws in (beitou, again, command, phone):
        await ws.close()


async def test_unacknowledged_alert_escalates_to_neighbours_once_even_with_two_processes(fresh_server, engine):
    settings = {"GUARDIAN_ESCALATE_AFTER_S": "1", "GUARDIAN_ESCALATE_AGAIN_AFTER_S": "2",
                "GUARDIAN_SWEEP_INTERVAL_S": "0.2"}
    first, second = fresh_server(**settings), fresh_server(**settings)
    await add_staff(engine, "daan-desk", precinct="daan")  # Da'an borders Xinyi
    await add_staff(engine, "beitou-desk", precinct="beitou")  # Beitou does not
    daan, _ = await connect_console(second, login(second, "daan-desk"))
    beitou, _ = await connect_console(second, login(second, "beitou-desk"))
    _, token = create_user(first)
    phone, alert_id = await raise_sos(first, token)
    escalated = await until_type(daan, "alert_updated", timeout_s=5)
    assert escalated["alert"]["alert_id"] == alert_id and escalated["alert"]["escalation_level"] == 1
    again = await until_type(daan, "alert_updated", timeout_s=5)
    assert again["alert"]["escalation_level"] == 2, "re-sent again after the second interval"
    await daan.send(json.dumps({"type": "ack", "alert_id": alert_id}))
    assert (await until_type(daan, "alert_updated"))["alert"]["status"] == "acknowledged"
    await asyncio.sleep(2.5)
    async with engine.connect() as connection:
        kinds = (await connection.execute(sa.text(
            "SELECT kind, count(*) FROM outbox WHERE alert_id = :a AND channel = 'console' GROUP BY kind"),
            {"a": alert_id})).all()
        level = await connection.scalar(sa.text("SELECT escalation_level FROM alerts WHERE alert_id = :a"),
                                        {"a": alert_id})
    assert dict(kinds) == {"opened": 1, "escalated": 2, "updated": 1}, "each step fired once across two sweepers"
    assert level == 2, "an acknowledged alert escalates no further"
    assert await quiet(beitou, 0.3) == []
    for ws in (daan, beitou, phone):
        await ws.close()


async def test_an_alert_keeps_the_escalation_schedule_it_was_raised_with(fresh_server, engine):
    """Raised on a process with short intervals, swept only by a process with the default
    ones (60 s, then 120 s): it escalates after 1 s, and again 2 s later."""
    raiser = fresh_server(GUARDIAN_ESCALATE_AFTER_S="1", GUARDIAN_ESCALATE_AGAIN_AFTER_S="2",
                          GUARDIAN_SWEEP_INTERVAL_S="86400")
    sweeper = fresh_server(GUARDIAN_SWEEP_INTERVAL_S="0.2")
    await add_staff(engine, "daan-desk", precinct="daan")
    daan, _ = await connect_console(sweeper, login(sweeper, "daan-desk"))
    _, token = create_user(raiser)
    phone, alert_id = await raise_sos(raiser, token)
    first = await until_type(daan, "alert_updated", timeout_s=5)
    assert (first["alert"]["alert_id"], first["alert"]["escalation_level"]) == (alert_id, 1)
    again = await until_type(daan, "alert_updated", timeout_s=5)
    assert again["alert"]["escalation_level"] == 2, "re-escalated on the alert's own interval, not the sweeper's"
    for ws in (daan, phone):
        await ws.close()


async def test_every_console_read_of_a_location_is_audited(server, engine, test_env):
    await add_staff(engine, "xinyi-desk")
    _, token = create_user(server)
    phone, first = await raise_sos(server, token)
    console, _ = await connect_console(server, login(server, "xinyi-desk"))  # snapshot read
    _, other = create_user(server, name="Bo Chen")
    other_phone, second = await raise_sos(server, other)
    await until_type(console, "alert_opened")  # live read
    await asyncio.sleep(0.2)
    listing = subprocess.run([sys.executable, "-m", "server", "audit"], env=test_env, check=True,
                             capture_output=True, text=True).stdout.splitlines()
    reads = {(line.split("\t")[1], line.split("\t")[2], line.split("\t")[4]) for line in listing}
    assert reads == {("xinyi-desk", first, "snapshot"), ("xinyi-desk", second, "live")}
    for ws in (console, phone, other_phone):
        await ws.close()


async def test_two_processes_deliver_each_alert_once_to_every_console(fresh_server, engine):
    first, second = fresh_server(), fresh_server()
    await add_staff(engine, "command", role="command")
    consoles = [(await connect_console(server, login(server, "command")))[0] for server in (first, second, second)]
    _, token = create_user(first)
    phone, alert_id = await raise_sos(first, token)
    for console in consoles:
        frames = await quiet(console, 1.5)
        opened = [frame for frame in frames if frame["type"] == "alert_opened"]
        assert [frame["alert"]["alert_id"] for frame in opened] == [alert_id], "exactly once per console"
        await console.close()
    await phone.close()


async def test_phone_reconnecting_during_an_alert_is_asked_to_report_fast(server):
    _, token = create_user(server)
    phone, alert_id = await raise_sos(server, token)
    await phone.close()
    await asyncio.sleep(0.2)
    phone, _ = await connect_phone(server, token)
    assert (await until_type(phone, "report_interval"))["alert_id"] == alert_id
    await phone.send(json.dumps({"type": "ping", "seq": 0, "ts": int(time.time() * 1000), "lat": 25.03,
                                 "lon": 121.56}))
    await until_ack(phone, 0)
    await phone.close()


async def test_duress_cancel_keeps_the_alert_on_the_console_marked_and_hides_what_follows_from_the_phone(
        server, engine):
    await add_staff(engine, "desk")
    console, _ = await connect_console(server, login(server, "desk"))
    _, token = create_user(server)
    assert httpx.put(f"{server.url}/v1/me/pins", json={"pin": "1234", "duress_pin": "9999"},
                     headers=bearer(token)).status_code == 204
    phone, alert_id = await raise_sos(server, token)
    await until_type(console, "alert_opened")
    await phone.send(json.dumps({"type": "sos_cancel", "alert_id": alert_id, "pin": "9999"}))
    assert (await until_type(phone, "alert_status"))["status"] == "cancelled"
    updated = await until_type(console, "alert_updated")
    assert (updated["alert"]["status"], updated["alert"]["duress"]) == ("open", True)
    await console.send(json.dumps({"type": "ack", "alert_id": alert_id}))
    assert (await until_type(console, "alert_updated"))["alert"]["status"] == "acknowledged"
    heard = await quiet(phone, 1.0)
    assert [frame for frame in heard if frame["type"] == "alert_status"] == [], \
        "the phone (perhaps in an attacker's hand) hears nothing more"
    await console.close()
    console, snapshot = await connect_console(server, login(server, "desk"))
    assert [(alert["alert_id"], alert["duress"]) for alert in snapshot["alerts"]] == [(alert_id, True)]
    for ws in (console, phone):
        await ws.close()


async def test_a_console_that_stops_reading_is_disconnected_and_never_slows_the_others(fresh_server, engine):
    server = fresh_server(GUARDIAN_CONSOLE_QUEUE_FRAMES="5")
    await add_staff(engine, "slow")
    await add_staff(engine, "fast")
    slow = await websockets.connect(f"{server.ws_url}/v1/console", additional_headers=bearer(login(server, "slow")),
                                    origin=server.url, max_queue=1)  # reads one frame ahead, then stops
    fast, _ = await connect_console(server, login(server, "fast"))
    _, token = create_user(server)
    phone, alert_id = await raise_sos(server, token)
    await until_type(fast, "alert_opened")
    # Every note re-sends the whole alert, notes included: frames grow until the slow socket's buffers fill.
    text = "x" * 1990
    started = time.monotonic()
    for index in range(150):
        await fast.send(json.dumps({"type": "note", "alert_id": alert_id, "text": f"{index} {text}"}))
        updated = await until_type(fast, "alert_updated", timeout_s=5)
        assert len(updated["alert"]["notes"]) == index + 1
    assert time.monotonic() - started < 60, "the fast console kept its pace"
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(10):
            while True:
                await slow.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    for ws in (fast, phone):
        await ws.close()


async def waiting_on_a_lock(engine, relation: str, timeout_s: float = 10.0) -> None:
    """Until a server's statement waits for a lock on this relation (bounded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        async with engine.connect() as connection:
            waiting = await connection.scalar(sa.text(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE NOT l.granted AND l.relation = CAST(:relation AS regclass) "
                "AND a.application_name = 'guardian' AND a.datname = current_database()"), {"relation": relation})
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no server statement waited on {relation}")


async def audit_reads(engine, alert_id: str) -> list[str]:
    async with engine.connect() as connection:
        return list(await connection.scalars(sa.text(
            "SELECT context FROM audit_reads WHERE alert_id = :a ORDER BY audit_id"), {"a": alert_id}))


async def test_an_alert_raised_while_a_console_reads_its_snapshot_is_still_shown_and_audited(server, engine):
    """The snapshot's query ran before the alert was committed, and the alert reached the hub
    before the console's writer ran: it is in neither the snapshot nor, before the fix, the stream."""
    await add_staff(engine, "xinyi-desk")
    token = login(server, "xinyi-desk")
    _, earlier_token = create_user(server)
    earlier_phone, earlier = await raise_sos(server, earlier_token)
    _, phone_token = create_user(server, name="Bo Chen")
    async with engine.connect() as holder:
        # The snapshot's audit rows wait behind this lock, after its alerts were read.
        await holder.execute(sa.text("LOCK TABLE audit_reads IN ACCESS EXCLUSIVE MODE"))
        connecting = asyncio.create_task(connect_console(server, token))
        await waiting_on_a_lock(engine, "audit_reads")
        phone, alert_id = await raise_sos(server, phone_token)
        await holder.rollback()
    console, snapshot = await connecting
    assert [alert["alert_id"] for alert in snapshot["alerts"]] == [earlier]
    opened = await until_type(console, "alert_opened", timeout_s=3)
    assert opened["alert"]["alert_id"] == alert_id
    assert await audit_reads(engine, alert_id) == ["live"], "shown, so audited"
    for ws in (console, phone, earlier_phone):
        await ws.close()


async def test_a_live_frame_is_sent_only_once_its_audit_row_is_committed(server, engine):
    await add_staff(engine, "xinyi-desk")
    console, _ = await connect_console(server, login(server, "xinyi-desk"))
    _, phone_token = create_user(server)
    async with engine.connect() as holder:
        await holder.execute(sa.text("LOCK TABLE audit_reads IN ACCESS EXCLUSIVE MODE"))
        phone, alert_id = await raise_sos(server, phone_token)
        await waiting_on_a_lock(engine, "audit_reads")
        assert await quiet(console, 1.0) == [], "no location shown before its read is on record"
        await holder.rollback()
    opened = await until_type(console, "alert_opened", timeout_s=3)
    assert opened["alert"]["alert_id"] == alert_id
    assert await audit_reads(engine, alert_id) == ["live"]
    await phone.send(json.dumps({"type": "ping", "seq": 0, "ts": int(time.time() * 1000), "lat": 25.0341,
                                 "lon": 121.5650}))
    await until_type(console, "alert_location", alert_id=alert_id)
    assert await audit_reads(engine, alert_id) == ["live", "location"], "the live track is audited too"
    for ws in (console, phone):
        await ws.close()


async def test_a_finished_alert_never_shows_positions_from_after_its_end(server, engine):
    """A note on a resolved alert re-sends it: its track stops where the alert ended."""
    await add_staff(engine, "xinyi-desk")
    console, _ = await connect_console(server, login(server, "xinyi-desk"))
    _, phone_token = create_user(server)
    phone, alert_id = await raise_sos(server, phone_token)
    now_ms = int(time.time() * 1000)
    await phone.send(json.dumps({"type": "ping", "seq": 0, "ts": now_ms, "lat": 25.0341, "lon": 121.5650}))
    await until_ack(phone, 0)
    await console.send(json.dumps({"type": "resolve", "alert_id": alert_id, "outcome": "user safe"}))
    resolved = await until_type(console, "alert_updated", timeout_s=3)
    assert resolved["alert"]["ended_at"] is not None
    await phone.send(json.dumps({"type": "ping", "seq": 1, "ts": now_ms + 1000, "lat": 25.0350, "lon": 121.5660}))
    await until_ack(phone, 1)
    assert [frame for frame in await quiet(console, 0.5) if frame["type"] == "alert_location"] == []
    await console.send(json.dumps({"type": "note", "alert_id": alert_id, "text": "called back later"}))
    noted = await until_type(console, "alert_updated", timeout_s=3)
    assert [(point["lat"], point["lon"]) for point in noted["alert"]["track"]] == [(25.0341, 121.5650)]
    for ws in (console, phone):
        await ws.close()


DAAN = (25.0330, 121.5500)  # 1.5 km west of Taipei 101, across the precinct line


async def test_a_second_sos_of_the_user_keeps_the_first_alerts_live_track(server, engine):
    """SOS in Xinyi, a walk into Da'an, a second SOS: both precincts keep the user's moves."""
    await add_staff(engine, "xinyi-desk")
    await add_staff(engine, "daan-desk", precinct="daan")
    xinyi, _ = await connect_console(server, login(server, "xinyi-desk"))
    daan, _ = await connect_console(server, login(server, "daan-desk"))
    _, phone_token = create_user(server)
    phone, _ = await connect_phone(server, phone_token)
    now_ms = int(time.time() * 1000)
    await phone.send(json.dumps({"type": "ping", "seq": 0, "ts": now_ms - 120_000, "lat": TAIPEI_101[0],
                                 "lon": TAIPEI_101[1]}))
    await phone.send(json.dumps(sos_frame()))
    first = (await until_type(phone, "sos_ack"))["alert_id"]
    await phone.send(json.dumps({"type": "ping", "seq": 1, "ts": now_ms - 60_000, "lat": DAAN[0], "lon": DAAN[1]}))
    await until_ack(phone, 1)
    await phone.send(json.dumps(sos_frame(at=DAAN)))
    second = (await until_type(phone, "sos_ack"))["alert_id"]
    assert (await until_type(daan, "alert_opened"))["alert"]["alert_id"] == second
    await phone.send(json.dumps({"type": "ping", "seq": 2, "ts": now_ms - 30_000, "lat": DAAN[0] + 1e-4,
                                 "lon": DAAN[1]}))
    moved = await until_type(xinyi, "alert_location", timeout_s=3, lat=DAAN[0] + 1e-4)
    assert moved["alert_id"] == first, "the first alert keeps its live track"
    assert (await until_type(daan, "alert_location", timeout_s=3, lat=DAAN[0] + 1e-4))["alert_id"] == second
    for ws in (xinyi, daan, phone):
        await ws.close()


async def test_a_snapshot_larger_than_a_clients_frame_limit_comes_in_parts(server, engine):
    """Six open alerts with 200 KB of notes each: 1.2 MB of snapshot, past the 1 MiB that
    websockets (like most clients) accepts in one frame by default."""
    await add_staff(engine, "xinyi-desk")
    alert_ids = []
    for index in range(6):
        _, phone_token = create_user(server, name=f"User {index}")
        phone, alert_id = await raise_sos(server, phone_token)
        await phone.close()
        alert_ids.append(alert_id)
    async with engine.begin() as connection:
        await connection.execute(sa.text(
            "INSERT INTO alert_notes (alert_id, author, text) "
            "SELECT a, 'xinyi-desk', repeat('x', 2000) "
            "FROM unnest(CAST(:ids AS uuid[])) AS a, generate_series(1, 100)"),
            {"ids": alert_ids})
    console = await websockets.connect(f"{server.ws_url}/v1/console",
                                       additional_headers=bearer(login(server, "xinyi-desk")), origin=server.url)
    first = json.loads(await console.recv())
    assert first["type"] == "snapshot" and first["more"] is True
    shown = [alert["alert_id"] for alert in first["alerts"]]
    frame = first
    for _ in range(len(alert_ids)):
        if not frame["more"]:
            break
        frame = json.loads(await console.recv())
        assert frame["type"] == "snapshot_more"
        shown += [alert["alert_id"] for alert in frame["alerts"]]
    assert frame["more"] is False and sorted(shown) == sorted(alert_ids)
    await console.close()


@pytest.mark.no_services
@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=15_000), max_size=40), st.integers(min_value=35_000,
                                                                                     max_value=200_000))
def test_snapshot_parts_stay_within_their_size_and_keep_every_alert_in_order(note_sizes, max_bytes):
    shown = [{"alert_id": str(index), "note": "é" * size} for index, size in enumerate(note_sizes)]
    frames = snapshot_frames(shown, max_bytes=max_bytes)
    assert all(len(frame.encode()) <= max_bytes for frame in frames)
    decoded = [json.loads(frame) for frame in frames]
    assert [frame["type"] for frame in decoded] == ["snapshot"] + ["snapshot_more"] * (len(frames) - 1)
    assert [alert for frame in decoded for alert in frame["alerts"]] == shown
    if len(frames) > 1:
        assert [frame["more"] for frame in decoded] == [True] * (len(frames) - 1) + [False]
