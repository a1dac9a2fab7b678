"""SOS on the phone socket and over HTTP: committed before sos_ack, idempotent, never filtered."""

import asyncio
import json
import time
import uuid

import httpx
import pytest
import sqlalchemy as sa

from server.accounts import auth
from server.alerts import service as alerts
from server.alerts import view as alertview
from server.core import wire
from server.core.config import Settings
from tests.servers import (TAIPEI_101, bearer, connect_phone, create_user, quiet, receive, sos_frame, until_ack,
                           until_type)

BANQIAO = (25.0143, 121.4672)  # New Taipei, just outside the city


async def alert_rows(engine, user_id: str) -> list[dict]:
    async with engine.connect() as connection:
        rows = await connection.execute(sa.text(
            "SELECT alert_id, sos_id, status, phone_status, duress, quality, suspect, precinct_id, out_of_area, "
            "ST_Y(location) AS lat, ST_X(location) AS lon FROM alerts WHERE user_id = :user_id"),
            {"user_id": user_id})
        return [dict(row._mapping) for row in rows]


async def test_sos_is_committed_before_its_ack_and_a_retry_returns_the_same_alert(server, engine):
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    frame = sos_frame(note="man following me")
    await ws.send(json.dumps(frame))
    ack = await until_type(ws, "sos_ack")
    assert ack["sos_id"] == frame["sos_id"] and ack["status"] == "open"
    [row] = await alert_rows(engine, user_id)
    assert str(row["alert_id"]) == ack["alert_id"], "committed when acknowledged"
    assert (row["precinct_id"], row["out_of_area"], row["quality"]) == ("xinyi", False, "fix")
    interval = await until_type(ws, "report_interval")
    assert interval["interval_s"] > 0 and interval["alert_id"] == ack["alert_id"]

    await ws.send(json.dumps(frame))
    again = await until_type(ws, "sos_ack")
    assert again == ack
    await ws.close()
    ws, _ = await connect_phone(server, token)  # a retry from a new socket, as after a lost connection
    await ws.send(json.dumps(frame))
    assert await until_type(ws, "sos_ack") == ack
    assert len(await alert_rows(engine, user_id)) == 1, "stored once"
    await ws.close()


@pytest.mark.parametrize("fix, quality, suspect", [
    ({"lat": 95.0, "lon": 121.5}, "last_known", ["invalid_lat"]),
    ({"lat": 25.03, "lon": None}, "last_known", ["partial_fix"]),
    ({}, "last_known", ["no_fix"]),
    ({"lat": TAIPEI_101[0], "lon": TAIPEI_101[1], "acc": 9000.0}, "suspect", ["vague"]),
    ({"lat": TAIPEI_101[0], "lon": TAIPEI_101[1], "ts": "yesterday"}, "suspect", ["bad_ts", "teleport"]),
])
async def test_sos_with_a_bad_fix_is_still_accepted_and_annotated(server, engine, fix, quality, suspect):
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    await ws.send(json.dumps({"type": "ping", "seq": 0, "ts": int(time.time() * 1000), "lat": 25.0478,
                              "lon": 121.5170, "acc": 5.0}))
    await until_ack(ws, 0)
    await ws.send(json.dumps({"type": "sos", "sos_id": str(uuid.uuid4()), **fix}))
    await until_type(ws, "sos_ack")
    [row] = await alert_rows(engine, user_id)
    assert (row["quality"], row["suspect"]) == (quality, suspect)
    if quality == "last_known":
        assert (row["lat"], row["lon"]) == (25.0478, 121.5170), "the last known location stands in"
    await ws.close()


async def test_sos_teleport_is_annotated_not_refused(server, engine):
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    now_ms = int(time.time() * 1000)
    await ws.send(json.dumps({"type": "ping", "seq": 0, "ts": now_ms - 1000, "lat": 25.1318, "lon": 121.4989}))
    await until_ack(ws, 0)
    await ws.send(json.dumps(sos_frame()))
    await until_type(ws, "sos_ack")
    [row] = await alert_rows(engine, user_id)
    assert (row["quality"], row["suspect"], row["precinct_id"]) == ("suspect", ["teleport"], "xinyi")
    await ws.close()


async def test_sos_without_any_location_is_accepted_for_the_command_centre(server, engine):
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    await ws.send(json.dumps({"type": "sos", "sos_id": str(uuid.uuid4())}))
    assert (await until_type(ws, "sos_ack"))["status"] == "open"
    [row] = await alert_rows(engine, user_id)
    assert (row["quality"], row["precinct_id"], row["lat"]) == ("unknown", None, None)
    await ws.close()


async def test_sos_with_json_nan_or_wrong_types_is_salvaged(server, engine):
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    await ws.send('{"type": "sos", "sos_id": "%s", "lat": NaN, "lon": "east", "acc": Infinity}' % uuid.uuid4())
    await until_type(ws, "sos_ack")
    [row] = await alert_rows(engine, user_id)
    assert row["quality"] == "unknown"
    await ws.close()


@pytest.mark.parametrize("frame, field", [
    ({"type": "sos"}, "sos_id"),
    ({"type": "sos", "sos_id": "not-a-uuid", "lat": 25.0, "lon": 121.5}, "sos_id"),
    ({"type": "sos", "sos_id": 42}, "sos_id"),
])
async def test_sos_without_a_usable_sos_id_is_refused_clearly_and_the_socket_stays(server, engine, frame, field):
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    await ws.send(json.dumps(frame))
    error = await until_type(ws, "error")
    assert (error["code"], error["field"]) == ("invalid_field", field)
    await ws.send(json.dumps(sos_frame()))
    await until_type(ws, "sos_ack")
    assert len(await alert_rows(engine, user_id)) == 1
    await ws.close()


async def test_sos_outside_every_precinct_goes_to_the_nearest_station_marked_out_of_area(server, engine):
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    await ws.send(json.dumps(sos_frame(at=BANQIAO)))
    await until_type(ws, "sos_ack")
    [row] = await alert_rows(engine, user_id)
    assert (row["precinct_id"], row["out_of_area"]) == ("wanhua", True)
    await ws.close()


async def test_sos_is_not_queued_behind_the_ping_batch(fresh_server):
    """With pings flushed only every 3 s, an SOS sent after them is acknowledged first."""
    server = fresh_server(GUARDIAN_FLUSH_INTERVAL_MS="3000")
    _, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    now_ms = int(time.time() * 1000)
    await ws.send(json.dumps({"type": "batch", "pings": [
        {"seq": i, "ts": now_ms - 1000 + i, "lat": 25.03, "lon": 121.56} for i in range(200)]}))
    await ws.send(json.dumps(sos_frame()))
    first = await receive(ws, timeout_s=10)
    assert first["type"] == "sos_ack", first
    await until_ack(ws, 199, timeout_s=10)
    await ws.close()


async def test_sos_is_not_held_back_by_a_full_ingest_queue(fresh_server):
    """The ingest queue is full and flushes only every 3 s: the batch that finds no room is
    refused at once, and the SOS behind it is read and acknowledged at once."""
    server = fresh_server(GUARDIAN_FLUSH_INTERVAL_MS="3000", GUARDIAN_INGEST_QUEUE_ROWS="10")
    _, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    now_ms = int(time.time() * 1000)
    batches = [{"type": "batch", "pings": [
        {"seq": first + i, "ts": now_ms - 1000 + first + i, "lat": 25.03, "lon": 121.56} for i in range(100)]}
        for first in (0, 100)]
    for batch in batches:  # the second finds the queue full
        await ws.send(json.dumps(batch))
    started = time.monotonic()
    await ws.send(json.dumps(sos_frame()))
    answers = [await receive(ws, timeout_s=10), await receive(ws, timeout_s=10)]
    assert answers[0]["type"] == "error" and answers[0]["code"] == "rate_limited", answers
    assert answers[1]["type"] == "sos_ack" and time.monotonic() - started < 1.0, answers
    await until_ack(ws, 99, timeout_s=15)
    await ws.send(json.dumps(batches[1]))
    await until_ack(ws, 199, timeout_s=15)
    await ws.close()


async def test_a_full_queue_never_sheds_the_pings_of_a_user_in_an_alert(fresh_server):
    """Dispatchers follow that track live: while the queue is full, other phones are told
    rate_limited, the alerting phone's pings are all stored."""
    server = fresh_server(GUARDIAN_FLUSH_INTERVAL_MS="1000", GUARDIAN_INGEST_QUEUE_ROWS="1")
    _, token = create_user(server)
    _, other_token = create_user(server, name="Bo Chen")
    ws, _ = await connect_phone(server, token)
    other, _ = await connect_phone(server, other_token)
    await ws.send(json.dumps(sos_frame()))
    await until_type(ws, "sos_ack")
    now_ms = int(time.time() * 1000)
    for seq in range(20):
        fields = {"seq": seq, "ts": now_ms - 20_000 + seq * 1000, "lat": 25.0339 + seq * 1e-5, "lon": 121.5645}
        await other.send(json.dumps({"type": "ping", **fields}))
        await ws.send(json.dumps({"type": "ping", **fields}))
    frames = await until_ack(ws, 19, timeout_s=10)
    assert [frame for frame in frames if frame["type"] == "error"] == []
    others = await until_ack(other, 19, timeout_s=10)
    assert any(frame.get("code") == "rate_limited" for frame in others), "the queue never filled"
    await ws.close()
    await other.close()


async def test_sos_over_http_is_201_then_200_for_the_retry(server, engine):
    user_id, token = create_user(server)
    body = {key: value for key, value in sos_frame().items() if key != "type"}
    first = httpx.post(f"{server.url}/v1/sos", json=body, headers=bearer(token), timeout=5)
    assert first.status_code == 201, first.text
    assert first.json()["type"] == "sos_ack" and first.json()["status"] == "open"
    retry = httpx.post(f"{server.url}/v1/sos", json=body, headers=bearer(token), timeout=5)
    assert (retry.status_code, retry.json()) == (200, first.json())
    assert len(await alert_rows(engine, user_id)) == 1


@pytest.mark.parametrize("content, status, code", [
    (b"{not json", 400, "bad_json"),
    (b'{"lat": 25.0}', 422, "invalid_field"),
    (b'[1, 2]', 422, "invalid_field"),
])
async def test_bad_sos_over_http_gets_a_clear_error(server, content, status, code):
    _, token = create_user(server)
    response = httpx.post(f"{server.url}/v1/sos", content=content, headers=bearer(token), timeout=5)
    assert (response.status_code, response.json()["code"]) == (status, code)


async def test_sos_over_http_needs_a_device_token(server):
    body = {"sos_id": str(uuid.uuid4())}
    assert httpx.post(f"{server.url}/v1/sos", json=body, timeout=5).status_code == 401
    assert httpx.post(f"{server.url}/v1/sos", json=body, headers=bearer("nope"), timeout=5).status_code == 401


def set_pins(server, token, pin="1234", duress_pin="9999") -> httpx.Response:
    return httpx.put(f"{server.url}/v1/me/pins", json={"pin": pin, "duress_pin": duress_pin},
                     headers=bearer(token), timeout=10)


@pytest.mark.parametrize("pin, duress_pin", [("1234", "1234"), ("12a4", "9999"), ("123", "9999"),
                                             ("123456789", "9999")])
async def test_pins_must_be_four_to_eight_different_digits(server, pin, duress_pin):
    _, token = create_user(server)
    response = set_pins(server, token, pin, duress_pin)
    assert (response.status_code, response.json()["code"]) == (422, "invalid_field")


async def raise_on(ws) -> str:
    await ws.send(json.dumps(sos_frame()))
    return (await until_type(ws, "sos_ack"))["alert_id"]


async def alert_with_pins(server) -> tuple[str, object, str]:
    """A user with PINs set (1234, duress 9999) and an open alert: (user id, phone socket, alert id)."""
    user_id, token = create_user(server)
    assert set_pins(server, token).status_code == 204
    ws, _ = await connect_phone(server, token)
    return user_id, ws, await raise_on(ws)


async def test_normal_pin_cancels_the_alert(server, engine):
    user_id, ws, alert_id = await alert_with_pins(server)
    await ws.send(json.dumps({"type": "sos_cancel", "alert_id": alert_id, "pin": "1234"}))
    status = await until_type(ws, "alert_status")
    assert (status["alert_id"], status["status"]) == (alert_id, "cancelled")
    [row] = await alert_rows(engine, user_id)
    assert (row["status"], row["duress"]) == ("cancelled", False)
    assert (await until_type(ws, "report_interval", interval_s=None))["alert_id"] == alert_id
    await ws.close()


async def test_duress_pin_shows_cancelled_to_the_phone_while_the_alert_goes_on(server, engine):
    user_id, ws, alert_id = await alert_with_pins(server)
    await ws.send(json.dumps({"type": "sos_cancel", "alert_id": alert_id, "pin": "9999"}))
    status = await until_type(ws, "alert_status")
    assert status == {"type": "alert_status", "alert_id": alert_id, "status": "cancelled"}
    [row] = await alert_rows(engine, user_id)
    assert (row["status"], row["phone_status"], row["duress"]) == ("open", "cancelled", True)
    # The phone is told what a normal cancel tells it (issue 9, item 16): the alert goes on for
    # the dispatchers only, who keep its live track from the phone's ordinary reports.
    assert (await until_type(ws, "report_interval"))["interval_s"] is None
    await ws.close()


async def test_wrong_pins_are_limited(server, engine):
    user_id, ws, alert_id = await alert_with_pins(server)
    for _ in range(5):
        await ws.send(json.dumps({"type": "sos_cancel", "alert_id": alert_id, "pin": "0000"}))
        assert (await until_type(ws, "error"))["code"] == "forbidden"
    await ws.send(json.dumps({"type": "sos_cancel", "alert_id": alert_id, "pin": "1234"}))
    assert (await until_type(ws, "error"))["code"] == "rate_limited", "locked even for the right PIN"
    [row] = await alert_rows(engine, user_id)
    assert row["status"] == "open"
    await ws.close()


async def test_cancel_of_someone_elses_alert_is_not_found(server):
    _, token = create_user(server)
    _, other_token = create_user(server, name="Bo Chen")
    set_pins(server, other_token)
    ws, _ = await connect_phone(server, token)
    alert_id = await raise_on(ws)
    other, _ = await connect_phone(server, other_token)
    await other.send(json.dumps({"type": "sos_cancel", "alert_id": alert_id, "pin": "1234"}))
    assert (await until_type(other, "error"))["code"] == "not_found"
    await other.send(json.dumps({"type": "sos_cancel", "alert_id": "zzz", "pin": "1234"}))
    assert (await until_type(other, "error"))["field"] == "alert_id"
    await ws.close()
    await other.close()


async def test_the_view_returned_with_the_sos_commit_is_the_view_the_consoles_read(server, engine, test_env):
    """The consoles are sent the view that comes back with the commit (no read after it): it
    must be the same as a read of the alert, track included."""
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    now_ms = int(time.time() * 1000)
    for seq in range(3):
        await ws.send(json.dumps({"type": "ping", "seq": seq, "ts": now_ms - 3000 + seq * 1000,
                                  "lat": TAIPEI_101[0] + seq * 1e-4, "lon": TAIPEI_101[1]}))
    await until_ack(ws, 2)
    await ws.close()
    settings = Settings(database_url=test_env["GUARDIAN_DATABASE_URL"])
    device = await auth.device_for(engine=engine, token=token)
    raised = await alerts.raise_alert(engine=engine, settings=settings, device=device,
                                      sos=wire.SosFields(sos_id=str(uuid.uuid4()), lat=TAIPEI_101[0],
                                                         lon=TAIPEI_101[1], acc=12.0, note="behind the mall"))
    assert raised.created and raised.view is not None
    async with engine.connect() as connection:
        [read] = await alertview.load(connection=connection, alert_ids=[raised.alert_id],
                                      track_points=settings.alert_track_points)
    assert raised.view == read
    assert len(read.alert["track"]) == 3 and read.alert["precinct"]["id"] and read.alert["user"]["user_id"] == user_id


async def escalated(console, alert_id: str, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            frame = await receive(console, timeout_s)
            if frame["type"] == "alert_updated" and frame["alert"]["alert_id"] == alert_id \
                    and frame["alert"]["escalation_level"] >= 1:
                return


def as_the_phone_sees(frames: list[dict], alert_id: str) -> list[dict]:
    """Frames with the ids (which differ by design: two users, two SOS) blanked out."""
    return [{key: ("<id>" if value == alert_id or key == "sos_id" else value) for key, value in frame.items()}
            for frame in frames]


async def test_a_duress_cancel_looks_to_the_phone_exactly_like_a_normal_one(fresh_server, engine):
    """The same frames in the same order after each PIN, while the dispatchers act on the duress
    alert (acknowledge, note, an escalation), and again after the phone reconnects."""
    from tests.servers import add_staff, connect_console, login

    server = fresh_server(GUARDIAN_ESCALATE_AFTER_S="0.5", GUARDIAN_SWEEP_INTERVAL_S="0.2")
    await add_staff(engine, "command", role="command")
    console, _ = await connect_console(server, login(server, "command"))
    heard = {}
    for pin in ("1234", "9999"):
        _, token = create_user(server)
        assert set_pins(server, token).status_code == 204
        ws, _ = await connect_phone(server, token)
        await ws.send(json.dumps(sos_frame()))
        frames = [await receive(ws), await receive(ws)]  # sos_ack, report_interval
        alert_id = frames[0]["alert_id"]
        await ws.send(json.dumps({"type": "sos_cancel", "alert_id": alert_id, "pin": pin}))
        frames += await quiet(ws, 1.0)
        if pin == "9999":
            await escalated(console, alert_id)
        for action in ({"type": "ack", "alert_id": alert_id},
                       {"type": "note", "alert_id": alert_id, "text": "unit on its way"}):
            await console.send(json.dumps(action))
        frames += await quiet(ws, 1.0)
        await ws.close()
        ws, welcome = await connect_phone(server, token)
        frames += [{"type": "welcome"}] + await quiet(ws, 1.0)
        await ws.close()
        heard[pin] = as_the_phone_sees(frames, alert_id)
    async with engine.connect() as connection:
        duress = (await connection.execute(sa.text(
            "SELECT status, duress, escalation_level FROM alerts WHERE duress"))).one()
    assert duress[:2] == ("acknowledged", True) and duress[2] >= 1, "the dispatchers saw the duress alert go on"
    assert heard["9999"] == heard["1234"]
    assert [frame["type"] for frame in heard["1234"]] == [
        "sos_ack", "report_interval", "alert_status", "report_interval", "welcome"]
    await console.close()


async def _note_and_suspect(engine, alert_id: str) -> tuple[str | None, list[str] | None]:
    async with engine.connect() as connection:
        row = (await connection.execute(sa.text("SELECT note, suspect FROM alerts WHERE alert_id = :a"),
                                        {"a": alert_id})).one()
    return row.note, row.suspect


SOS_ID_TEXT = "7b0f7c4e-0000-4000-8000-00000000000{}"
DEEP = "[" * 1000 + "]" * 1000


@pytest.mark.parametrize(("fields", "note", "suspect"), [
    ('"note":"help\\u0000 me"', "help me", ["no_fix", "note_cleaned"]),
    ('"note":"help \\ud800"', "help \ufffd", ["no_fix", "note_cleaned"]),
    ('"note":{"deep":' + DEEP + "}", None, ["no_fix", "unreadable_note"]),
    ('"extra":' + DEEP + ',"note":"ok"', "ok", ["no_fix"]),
])
async def test_an_sos_is_stored_whatever_its_note_or_extra_fields_hold(server, engine, fields, note, suspect):
    """On the socket and over HTTP: cleaned or dropped, annotated, never refused (and the socket stays)."""
    _, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    await ws.send(f'{{"type":"sos","sos_id":"{SOS_ID_TEXT.format(1)}",{fields}}}')
    ack = await until_type(ws, "sos_ack")
    assert await _note_and_suspect(engine, ack["alert_id"]) == (note, suspect)
    response = httpx.post(f"{server.url}/v1/sos", content=f'{{"sos_id":"{SOS_ID_TEXT.format(2)}",{fields}}}',
                          headers=bearer(token), timeout=10)
    assert response.status_code == 201, response.text
    assert await _note_and_suspect(engine, response.json()["alert_id"]) == (note, suspect)
    await ws.send(json.dumps({"type": "ping", "seq": 0, "ts": int(time.time() * 1000), "lat": 25.03, "lon": 121.56}))
    await until_ack(ws, 0)
    await ws.close()


@pytest.mark.parametrize(("fields", "suspect"), [
    ('"lat":25.0339,"lon":121.5645,"ts":"9999-12-31T23:30:00-01:00"', ["bad_ts"]),
    ('"lat":25.0339,"lon":121.5645,"ts":"0001-01-01T00:30:00+01:00"', ["bad_ts"]),
    ('"lat":' + "9" * 400 + ',"lon":121.5645', ["invalid_lat"]),
    # Past 4,300 digits the standard library refuses the whole text: read as infinite instead.
    ('"lat":' + "9" * 5000 + ',"lon":121.5645', ["invalid_lat"]),
    ('"lat":25.0339,"lon":121.5645,"ts":' + "1" * 5000, ["unreadable_ts"]),
    ('"lat":25.0339,"lon":121.5645,"ts":"0001-01-01T00:00:00Z"', ["bad_ts"]),
    ('"lat":"25.03","lon":121.5645', ["unreadable_lat", "partial_fix"]),
])
async def test_an_sos_with_a_fix_past_any_range_is_stored_annotated_over_http_and_the_socket(
        server, engine, fields, suspect):
    user_id, token = create_user(server)
    response = httpx.post(f"{server.url}/v1/sos", content=f'{{"sos_id":"{SOS_ID_TEXT.format(3)}",{fields}}}',
                          headers=bearer(token), timeout=10)
    assert response.status_code == 201, response.text
    ws, _ = await connect_phone(server, token)
    await ws.send(f'{{"type":"sos","sos_id":"{SOS_ID_TEXT.format(4)}",{fields}}}')
    await until_type(ws, "sos_ack")
    await ws.close()
    rows = await alert_rows(engine, user_id)
    assert len(rows) == 2 and all(row["suspect"] == suspect for row in rows), rows
