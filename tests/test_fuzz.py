"""Hostile input against a real server process: every field of every phone frame, HTTP body and
console frame, with the boundary values of `tests.hostile`.

Properties: each input is stored or answered with a contract error code; the socket stays
open; nothing is answered 5xx or `unavailable` or closed 1011 for input; nothing leaks into
the log; and a well-behaved phone streaming meanwhile keeps getting its acks in time.
`GUARDIAN_FUZZ_EXAMPLES` sets the examples per surface.
"""

import itertools
import json
import re
import time
import uuid

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from server.core.errors import HTTP_STATUS
from tests import hostile
from tests.servers import PASSWORD, add_staff, bearer, create_user
from tests.witness import LoggedServer, SteadyPhone

CONTRACT_CODES = set(HTTP_STATUS) - {"unavailable"}
PHONE_FRAMES = {"ack", "error", "sos_ack", "alert_status", "report_interval", "trip_started", "trip_ended",
                "trip_status", "are_you_safe", "trip_arrived"}
CONSOLE_FRAMES = {"done", "error", "alert_opened", "alert_updated", "alert_location"}
# The steady phone's usual ack latency is a few ms (a flush every 5 ms); the machine is shared,
# so the bound is generous, yet far below the seconds a stalled or crashed ingest would show.
ACK_BOUND_S = 2.0
PROBE = '{"type":"probe","alert_id":"probe"}'


def report(surface: str, swept: int, random: int) -> None:
    """One line per surface for `make soak`: how many hostile inputs the server took."""
    print(f"fuzz {surface}: {swept + random} inputs ({swept} swept, {random} random), every one answered "
          "by the contract, the steady phone acked in time, nothing leaked")


@pytest.fixture(scope="module")
def logged_server(test_env, tmp_path_factory):
    server = LoggedServer({**test_env, "GUARDIAN_SWEEP_INTERVAL_S": "86400",
                           "GUARDIAN_MAX_CONSECUTIVE_ERRORS": "1000000"},
                          tmp_path_factory.mktemp("fuzz") / "server.log")
    server.start()
    yield server
    server.stop()


def _is_probe_answer(frame: dict) -> bool:
    return frame.get("type") == "error" and frame.get("code") == "unknown_type" and "'probe'" in frame["message"]


def exchange(ws, text: str, timeout_s: float = 10.0) -> list[dict]:
    """Send a frame, then a probe that is always refused: every frame answered in between."""
    ws.send(text)
    ws.send(PROBE)
    frames, deadline = [], time.monotonic() + timeout_s
    while True:
        frame = json.loads(ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))
        if _is_probe_answer(frame):
            return frames
        frames.append(frame)


def exchange_all(ws, texts: list[str], chunk: int = 40) -> list[dict]:
    """`exchange` for many frames, a chunk at a time (a phone that reads nothing is dropped)."""
    frames = []
    for start in range(0, len(texts), chunk):
        *first, last = texts[start:start + chunk]
        for text in first:
            ws.send(text)
        frames += exchange(ws, last)
    return frames


SOS_ID = re.compile(r'"sos_id":"([0-9a-f-]{36})"')


def assert_every_sos_acked(sent: list[tuple[str, str, str]], frames: list[dict]) -> None:
    """An SOS is never refused for a field other than its sos_id (or its type)."""
    acked = {frame["sos_id"] for frame in frames if frame["type"] == "sos_ack"}
    for text, kind, name in sent:
        if kind == "sos" and name not in ("sos_id", "type"):
            assert SOS_ID.search(text).group(1) in acked, text[:300]


def assert_contract_errors(frames: list[dict], kinds: set[str]) -> None:
    for frame in frames:
        assert frame["type"] in kinds, frame
        if frame["type"] == "error":
            assert frame["code"] in CONTRACT_CODES, frame


def assert_steady(steady: SteadyPhone) -> None:
    assert steady.trouble == [] and steady.unacked() == [], (steady.trouble, steady.unacked()[:10])
    assert len(steady.ack_latencies_s) > 5, "the steady phone streamed throughout"
    assert max(steady.ack_latencies_s) < ACK_BOUND_S, sorted(steady.ack_latencies_s)[-5:]


def welcome_acked_seq(server, token: str) -> int:
    with connect(f"{server.ws_url}/v1/phone", additional_headers=bearer(token)) as ws:
        return json.loads(ws.recv(timeout=5))["acked_seq"]


def test_hostile_phone_frames_are_stored_or_refused_and_the_socket_stays_open(logged_server):
    _, token = create_user(logged_server)
    _, steady_token = create_user(logged_server, name="Bo Chen", phone="+886923456789")
    seqs = itertools.count(1)
    with (connect(f"{logged_server.ws_url}/v1/phone", additional_headers=bearer(token), max_size=None) as ws,
          SteadyPhone(logged_server.ws_url, steady_token) as steady):
        assert json.loads(ws.recv(timeout=5))["type"] == "welcome"
        sent = list(hostile.phone_sweep(seqs))
        frames = exchange_all(ws, [text for text, _, _ in sent])
        assert_contract_errors(frames, PHONE_FRAMES)
        assert_every_sos_acked(sent, frames)

        random = []

        @hostile.FUZZ
        @given(data=st.data())
        def attack(data):
            text, kind, name = data.draw(hostile.phone_frames(seq=next(seqs)))
            random.append(kind)
            frames = exchange(ws, text)
            assert_contract_errors(frames, PHONE_FRAMES)
            assert_every_sos_acked([(text, kind, name)], frames)

        attack()
        last = next(seqs)
        exchange(ws, json.dumps({"type": "ping", "seq": last, "ts": hostile.now_ms(), "lat": 25.03, "lon": 121.56}))
    deadline = time.monotonic() + 10
    while welcome_acked_seq(logged_server, token) < last and time.monotonic() < deadline:
        time.sleep(0.2)
    assert welcome_acked_seq(logged_server, token) >= last, "the hostile phone's good pings were stored"
    assert_steady(steady)
    assert logged_server.leaks() == []
    report("phone socket frames", len(sent), len(random))


# Each HTTP body: (method, path, the good object afresh, how the object becomes the body, authenticated).
# The sweep tries `SWEPT` values on each (fewer where an answer costs a commit or a PIN hash).
SURFACES = {
    "pings": ("POST", "/v1/pings", lambda: hostile.ping_fields(1), lambda text: f'{{"pings":[{text}]}}', True),
    "batch": ("POST", "/v1/pings", lambda: {"pings": "[]"}, str, True),
    "sos": ("POST", "/v1/sos", hostile.sos_fields, str, True),
    "users": ("POST", "/v1/users", lambda: {"name": '"Ann"', "phone": '"+886912345678"'}, str, False),
    "contacts": ("PUT", "/v1/me/contacts", lambda: {"name": '"Mum"', "phone": '"0912345678"'},
                 lambda text: f'{{"contacts":[{text}]}}', True),
    "pins": ("PUT", "/v1/me/pins", lambda: {"pin": '"1234"', "duress_pin": '"9876"'}, str, True),
    "push": ("POST", "/v1/me/push-token", lambda: {"fcm_token": '"' + "t" * 40 + '"'}, str, True),
    "trips": ("POST", "/v1/trips", hostile.trip_fields, str, True),
    "login": ("POST", "/v1/console/login", lambda: {"username": '"nobody"', "password": '"wrong"'}, str, False),
}

SWEPT = {"sos": (hostile.FEW, True), "trips": (hostile.FEW, True), "pins": (hostile.SHARP, False), "login": (hostile.SHARP, False)}


def post_spoiled(client: httpx.Client, token: str, surface: str, text: str, name: str) -> None:
    """Send one spoiled body and check the answer against the contract."""
    method, path, _, body_of, authenticated = SURFACES[surface]
    headers = {"Content-Type": "application/json", **(bearer(token) if authenticated else {})}
    response = client.request(method, path, content=body_of(text).encode("utf-8", "surrogatepass"), headers=headers)
    assert_contract_answer(response)
    if surface == "sos" and name != "sos_id":
        assert response.status_code in (200, 201), (text[:300], response.text)


def assert_contract_answer(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        body = response.json()
        assert body["type"] == "error" and body["code"] in CONTRACT_CODES, body
        assert response.status_code == HTTP_STATUS[body["code"]] or body["code"] == "not_found", body
        assert isinstance(body["message"], str)


def test_hostile_http_bodies_and_queries_are_answered_with_contract_codes(logged_server):
    _, token = create_user(logged_server)
    _, steady_token = create_user(logged_server, name="Bo Chen", phone="+886923456789")
    with httpx.Client(base_url=logged_server.url, timeout=15) as client, \
            SteadyPhone(logged_server.ws_url, steady_token) as steady:
        swept = 0
        for surface, (_, _, make_fields, _, _) in SURFACES.items():
            values, extra = SWEPT.get(surface, (hostile.SHARP, True))
            for text, name in hostile.sweep(make_fields, values, extra=extra):
                post_spoiled(client, token, surface, text, name)
                swept += 1
        for value in hostile.SHARP:
            for name in ("from", "to", "format"):
                assert_contract_answer(client.get("/v1/me/track", params={name: value.strip('"')},
                                                  headers=bearer(token)))
                swept += 1
        random = []

        @hostile.FUZZ
        @given(data=st.data())
        def attack(data):
            surface = data.draw(st.sampled_from([*SURFACES, "track"]))
            random.append(surface)
            if surface == "track":
                values = data.draw(st.dictionaries(st.sampled_from(["from", "to", "format"]),
                                                   hostile.FRAGMENTS.map(lambda text: text.strip('"')[:2000])))
                assert_contract_answer(client.get("/v1/me/track", params=values, headers=bearer(token)))
                return
            text, name = data.draw(hostile.spoiled(SURFACES[surface][2]()))
            post_spoiled(client, token, surface, text, name)

        attack()
    assert_steady(steady)
    assert logged_server.leaks() == []
    report("HTTP bodies and queries", swept, len(random))


@pytest.fixture
async def dispatcher(engine) -> str:
    await add_staff(engine, "fuzz-dispatcher")
    return "fuzz-dispatcher"


def test_hostile_console_frames_are_refused_with_contract_codes(logged_server, dispatcher):
    _, token = create_user(logged_server)
    answer = httpx.post(f"{logged_server.url}/v1/sos", json={"sos_id": str(uuid.uuid4()), "lat": 25.0339,
                                                             "lon": 121.5645}, headers=bearer(token), timeout=10)
    alert_id = answer.json()["alert_id"]
    session = httpx.post(f"{logged_server.url}/v1/console/login",
                         json={"username": dispatcher, "password": PASSWORD}, timeout=10).json()["token"]
    with connect(f"{logged_server.ws_url}/v1/console", additional_headers=bearer(session),
                 origin=logged_server.url, max_size=None) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "snapshot"

        def fields(kind: str) -> dict[str, str]:
            return hostile.with_type(kind, {"alert_id": json.dumps(alert_id), "outcome": '"false alarm"',
                                            "text": '"on my way"'})

        sent = [text for kind in ("ack", "resolve", "note")
                for text, _ in hostile.sweep(lambda: fields(kind), hostile.SHARP)]
        assert_contract_errors(exchange_all(ws, sent), CONSOLE_FRAMES)

        random = []

        @hostile.FUZZ
        @given(data=st.data())
        def attack(data):
            text, _ = data.draw(hostile.spoiled(fields(data.draw(st.sampled_from(["ack", "resolve", "note"])))))
            random.append(text)
            assert_contract_errors(exchange(ws, text), CONSOLE_FRAMES)

        attack()
        assert exchange(ws, json.dumps({"type": "note", "alert_id": alert_id, "text": "still here"})) != [], \
            "the console still works"
    assert logged_server.leaks() == []
    report("console frames", len(sent), len(random))


def test_a_text_frame_that_is_not_utf8_closes_1007_and_logs_one_line(logged_server):
    _, token = create_user(logged_server)
    with connect(f"{logged_server.ws_url}/v1/phone", additional_headers=bearer(token)) as ws:
        ws.recv(timeout=5)
        ws.send(b'{"type":"ping","note":"\xff\xfe"}', text=True)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
    assert "Invalid UTF-8" in logged_server.log() and logged_server.leaks() == []
