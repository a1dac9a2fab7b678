"""Push (firebase-admin against a local FCM v1 endpoint) and the CAD webhook, end to end."""

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from http.server import BaseHTTPRequestHandler

import httpx
import pytest
import sqlalchemy as sa

from notifier.fcm import FcmChannel
from tests.endpoints import CadReceiver, FakeFcm, Recorder
from tests.servers import TAIPEI_101, add_staff, bearer, connect_console, connect_phone, create_user, login, \
    receive, sos_frame, until_type
from tests.test_eido import SCHEMA_DIR, eido_validator

PROJECT = "guardian-test"
CAD_SECRET = "a-test-secret-of-some-length"


def fcm_settings(fcm: FakeFcm, **more) -> dict:
    return {"GUARDIAN_FCM_PROJECT_ID": PROJECT, "GUARDIAN_FCM_ENDPOINT": fcm.url,
            "GUARDIAN_FCM_ACCESS_TOKEN": "test-access-token", "GUARDIAN_FCM_TIMEOUT_S": "2", **more}


async def add_officer(server, engine, username: str, fcm_token: str, position=TAIPEI_101, precinct="xinyi") -> None:
    """An officer whose phone has reported its FCM token and where it is."""
    await add_staff(engine, username, role="officer", precinct=precinct)
    session = login(server, username)
    assert httpx.post(f"{server.url}/v1/officer/push-token", json={"fcm_token": fcm_token},
                      headers=bearer(session)).status_code == 204
    assert httpx.post(f"{server.url}/v1/officer/location", json={"lat": position[0], "lon": position[1]},
                      headers=bearer(session)).status_code == 204


@pytest.mark.no_services
async def test_fcm_channel_sends_high_priority_data_and_sorts_out_failed_tokens():
    with FakeFcm(hang_s=0) as fcm:
        channel = FcmChannel(project_id=PROJECT, timeout_s=5, endpoint=fcm.url, access_token="test-access-token")
        try:
            result = await channel.send(tokens=["ok-1", "unregistered-2", "invalid-3", "quota-4"],
                                        data={"type": "sos", "alert_id": "a1"})
        finally:
            await channel.close()
        requests = fcm.wait_for(4)
    assert (result.sent, sorted(result.dead_tokens), result.retry_tokens) == (1, ["invalid-3", "unregistered-2"],
                                                                             ["quota-4"])
    assert result.retry_after_s == 1.0, "FCM's Retry-After is honoured"
    sent = next(request for request in requests if request["body"]["message"]["token"] == "ok-1")
    assert sent["path"] == f"/v1/projects/{PROJECT}/messages:send"
    assert sent["authorization"] == "Bearer test-access-token"
    message = sent["body"]["message"]
    assert message["data"] == {"type": "sos", "alert_id": "a1"}
    assert message["android"]["priority"] == "high"
    assert message["apns"]["headers"]["apns-priority"] == "10"


@pytest.mark.no_services
async def test_fcm_channel_that_hangs_times_out_as_a_value():
    with FakeFcm(hang_s=5) as fcm:
        channel = FcmChannel(project_id=PROJECT, timeout_s=0.5, endpoint=fcm.url, access_token="t")
        started = time.monotonic()
        try:
            result = await channel.send(tokens=["hang-1"], data={"type": "sos"})
        finally:
            await channel.close()
    assert time.monotonic() - started < 2.0
    assert result.retry_tokens == ["hang-1"] and result.sent == 0


async def test_sos_wakes_nearby_officers_and_contacts_and_forgets_dead_tokens(fresh_server, engine):
    with FakeFcm(hang_s=0) as fcm:
        server = fresh_server(**fcm_settings(fcm))
        await add_officer(server, engine, "near", "officer-near-token-0001", position=(25.0350, 121.5650))
        await add_officer(server, engine, "far", "officer-far-token-00001", position=(25.1318, 121.4989),
                          precinct="beitou")
        _, friend = create_user(server, name="Friend", phone="+886911111111")
        _, gone = create_user(server, name="Old phone", phone="+886922222222")
        assert httpx.post(f"{server.url}/v1/me/push-token", json={"fcm_token": "friend-token-0000000001"},
                          headers=bearer(friend)).status_code == 204
        httpx.post(f"{server.url}/v1/me/push-token", json={"fcm_token": "unregistered-token-00001"},
                   headers=bearer(gone))
        _, token = create_user(server)
        contacts = {"contacts": [{"name": "Friend", "phone": "+886911111111"},
                                 {"name": "Old", "phone": "+886922222222"},
                                 {"name": "No app", "phone": "+886933333333"}]}
        assert httpx.put(f"{server.url}/v1/me/contacts", json=contacts, headers=bearer(token)).status_code == 200
        phone, _ = await connect_phone(server, token)
        await phone.send(json.dumps(sos_frame()))
        alert_id = (await until_type(phone, "sos_ack"))["alert_id"]
        requests = fcm.wait_for(3)
        await asyncio.sleep(0.5)
        tokens = sorted(request["body"]["message"]["token"] for request in fcm.requests)
        assert tokens == ["friend-token-0000000001", "officer-near-token-0001", "unregistered-token-00001"]
        assert {request["body"]["message"]["data"]["alert_id"] for request in requests} == {alert_id}
        async with engine.connect() as connection:
            left = set(await connection.scalars(sa.text("SELECT fcm_token FROM push_tokens")))
        assert left == {"friend-token-0000000001"}, "FCM's unregistered token is forgotten"
        await phone.close()


async def test_failing_or_hanging_fcm_never_delays_the_console(fresh_server, engine):
    with FakeFcm(hang_s=10) as fcm:
        server = fresh_server(**fcm_settings(fcm, GUARDIAN_FCM_TIMEOUT_S="8"))
        await add_officer(server, engine, "officer", "hang-officer-token-0001")
        await add_staff(engine, "desk")
        console, _ = await connect_console(server, login(server, "desk"))
        for _ in range(2):  # the second SOS arrives while FCM still hangs on the first
            _, token = create_user(server)
            phone, _ = await connect_phone(server, token)
            started = time.monotonic()
            await phone.send(json.dumps(sos_frame()))
            await until_type(phone, "sos_ack", timeout_s=1)
            await until_type(console, "alert_opened", timeout_s=1)
            assert time.monotonic() - started < 1.0
            await phone.close()
        await console.close()


async def test_quota_errors_are_retried_after_fcms_retry_after(fresh_server, engine):
    with FakeFcm(hang_s=0) as fcm:
        server = fresh_server(**fcm_settings(fcm))
        await add_officer(server, engine, "officer", "quota-officer-token-001")
        _, token = create_user(server)
        phone, _ = await connect_phone(server, token)
        await phone.send(json.dumps(sos_frame()))
        await until_type(phone, "sos_ack")
        requests = fcm.wait_for(2, timeout_s=10)
        assert len(requests) >= 2, "retried"
        assert requests[1]["body"]["message"]["token"] == "quota-officer-token-001"
        await phone.close()


async def test_cad_gets_each_alert_event_as_signed_eido_retried_until_2xx(fresh_server, engine):
    with CadReceiver(fail_first=1) as cad:
        server = fresh_server(GUARDIAN_CAD_ENDPOINTS=json.dumps([f"{cad.url}/cad"]), GUARDIAN_CAD_SECRET=CAD_SECRET)
        await add_staff(engine, "desk")
        console, _ = await connect_console(server, login(server, "desk"))
        _, token = create_user(server)
        phone, _ = await connect_phone(server, token)
        await phone.send(json.dumps(sos_frame()))
        alert_id = (await until_type(phone, "sos_ack"))["alert_id"]
        await until_type(console, "alert_opened")
        await console.send(json.dumps({"type": "ack", "alert_id": alert_id}))
        reply = await receive(console, timeout_s=10)
        while reply["type"] not in ("done", "error"):
            reply = await receive(console, timeout_s=10)
        assert reply == {"type": "done", "action": "ack", "alert_id": alert_id}
        posts = await asyncio.to_thread(cad.wait_for, 2, 20)
        assert cad.seen >= 3, "the first POST failed and was retried"
        assert len(posts) == 2
        event_ids = set()
        for post in posts:
            headers = {name.lower(): value for name, value in post["headers"].items()}
            expected = hmac.new(CAD_SECRET.encode(), headers["x-guardian-timestamp"].encode() + b"." + post["body"],
                                hashlib.sha256).hexdigest()
            assert headers["x-guardian-signature"] == f"sha256={expected}"
            event_ids.add(uuid.UUID(headers["x-guardian-event-id"]))
            document = json.loads(post["body"])
            assert document["incidentComponent"]["internalIncidentId"] == alert_id
            if SCHEMA_DIR.exists():
                assert not list(eido_validator().iter_errors(document))
        assert len(event_ids) == 2, "a unique event id per change"
        kinds = sorted(post["headers"]["X-Guardian-Event-Kind"] for post in posts)
        assert kinds == ["opened", "updated"], "the alert and its change"
        last = json.loads(posts[-1]["body"])
        assert last["incidentComponent"]["incidentStatusInternalText"] == ["acknowledged"]
        await console.close()
        await phone.close()


async def test_cad_gets_the_taxi_of_an_alert_raised_during_a_ride_as_the_eidos_vehicle(fresh_server, engine,
                                                                                        test_env):
    from tests.test_sos_trip import check_in

    with CadReceiver() as cad:
        server = fresh_server(GUARDIAN_CAD_ENDPOINTS=json.dumps([f"{cad.url}/cad"]), GUARDIAN_CAD_SECRET=CAD_SECRET)
        user_id, token = create_user(server)
        trip = await check_in(engine, test_env, user_id)
        phone, _ = await connect_phone(server, token)
        await phone.send(json.dumps(sos_frame()))
        alert_id = (await until_type(phone, "sos_ack"))["alert_id"]
        posts = await asyncio.to_thread(cad.wait_for, 1, 20)
        await phone.close()
    assert posts, "the CAD endpoint heard of the alert"
    document = json.loads(posts[0]["body"])
    assert document["incidentComponent"]["internalIncidentId"] == alert_id
    [vehicle] = document["vehicleComponent"]
    assert document["incidentComponent"]["vehicleReference"] == [{"$ref": vehicle["$id"]}]
    assert vehicle["ncVehicleComponent"]["identification"][0]["identificationId"] == [{"value": "ABC-1234"}]
    assert vehicle["ncVehicleComponent"]["makeName"] == [{"value": "Toyota Wish"}]
    assert vehicle["ncVehicleComponent"]["conveyanceColorPrimary"] == [{"value": "yellow"}]
    [note] = [note["notesActionComments"] for note in document["notesComponent"]
              if note["$id"] == vehicle["notesReference"][0]["$ref"]]
    assert "driver Chen Wei" in note and "planned route" in note and str(trip.trip_id) in vehicle["$id"]
    if SCHEMA_DIR.exists():
        assert not list(eido_validator().iter_errors(document))


async def test_a_process_without_a_channel_leaves_its_rows_to_one_that_has_it(fresh_server, engine):
    """A server with no CAD endpoint (or no FCM) must never mark those rows done undelivered."""
    from server.alerts import service as alerts
    from server.core import wire
    from server.accounts.auth import Device
    from server.core.config import Settings
    from tests.conftest import TEST_ENV

    server = fresh_server()  # neither CAD nor FCM configured
    user_id, _ = create_user(server)
    async with engine.connect() as connection:
        device_id = await connection.scalar(sa.text("SELECT device_id FROM devices WHERE user_id = :u"),
                                            {"u": user_id})
    elsewhere = Settings(database_url=TEST_ENV["GUARDIAN_DATABASE_URL"], fcm_project_id=PROJECT,
                         fcm_endpoint="http://127.0.0.1:9", fcm_access_token="t",
                         cad_endpoints=["http://127.0.0.1:9/cad"], cad_secret=CAD_SECRET)
    raised = await alerts.raise_alert(engine=engine, settings=elsewhere, device=Device(device_id, uuid.UUID(user_id)),
                                      sos=wire.SosFields(sos_id=str(uuid.uuid4())))
    await asyncio.sleep(2.5)  # more than two polls of every worker
    async with engine.connect() as connection:
        pending = dict((await connection.execute(sa.text(
            "SELECT channel, count(*) FROM outbox WHERE alert_id = :a AND done_at IS NULL GROUP BY channel"),
            {"a": raised.alert_id})).all())
    assert pending == {"push": 1, "cad": 1}, "the console row is delivered; push and CAD wait for their process"


class SlowCad(Recorder):
    """A CAD receiver that answers 204 after `delay_s` (longer than the timeout: a dead endpoint)."""

    def __init__(self, delay_s: float):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.record({"headers": dict(self.headers), "body": body, "at": time.monotonic()})
                time.sleep(receiver.delay_s)
                try:
                    self.send_response(204)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except (BrokenPipeError, ConnectionResetError):
                    pass

        super().__init__(Handler)
        self.delay_s = delay_s


def cad_settings(*urls: str, **more) -> dict:
    return {"GUARDIAN_CAD_ENDPOINTS": json.dumps(list(urls)), "GUARDIAN_CAD_SECRET": CAD_SECRET, **more}


async def test_a_dead_cad_endpoint_never_delays_another(fresh_server):
    with SlowCad(delay_s=10) as dead, CadReceiver() as alive:
        server = fresh_server(**cad_settings(f"{dead.url}/cad", f"{alive.url}/cad"))
        for _ in range(3):
            _, token = create_user(server)
            started = time.monotonic()
            response = httpx.post(f"{server.url}/v1/sos", json=sos_frame(), headers=bearer(token), timeout=10)
            assert response.status_code == 201
            count = len(alive.requests) + 1
            await asyncio.to_thread(alive.wait_for, count, 3)
            assert len(alive.requests) == count, "the live endpoint got the alert"
            assert time.monotonic() - started < 2.0, "without waiting for the dead one"


async def test_a_slow_cad_post_is_never_leased_and_posted_twice(fresh_server, engine):
    """Six alerts waiting when two processes configured for the same endpoint start: the one
    that leases them posts for longer than the lease, which it renews, so the other never takes
    (and posts again) a row in flight."""
    from server.alerts import service as alerts
    from server.core import wire
    from server.accounts.auth import Device
    from server.core.config import Settings
    from tests.conftest import TEST_ENV

    with SlowCad(delay_s=0.8) as cad:
        url = f"{cad.url}/cad"
        plain = fresh_server()
        raising = Settings(database_url=TEST_ENV["GUARDIAN_DATABASE_URL"], cad_endpoints=[url], cad_secret=CAD_SECRET)
        for _ in range(6):
            user_id, _ = create_user(plain)
            async with engine.connect() as connection:
                device_id = await connection.scalar(sa.text("SELECT device_id FROM devices WHERE user_id = :u"),
                                                    {"u": user_id})
            await alerts.raise_alert(engine=engine, settings=raising, device=Device(device_id, uuid.UUID(user_id)),
                                     sos=wire.SosFields(sos_id=str(uuid.uuid4())))
        settings = cad_settings(url, GUARDIAN_OUTBOX_LEASE_S="3", GUARDIAN_CAD_TIMEOUT_S="1")
        fresh_server(**settings), fresh_server(**settings)
        posts = await asyncio.to_thread(cad.wait_for, 6, 20)
        await asyncio.sleep(4)  # past a lease: a row leased twice would be posted again by now
        event_ids = [post["headers"]["X-Guardian-Event-Id"] for post in cad.requests]
    assert len(posts) >= 6
    assert sorted(event_ids) == sorted(set(event_ids)), "every event posted once"


async def test_an_alert_raised_where_cad_is_not_configured_reaches_cad_through_a_process_that_is(fresh_server):
    with CadReceiver() as cad:
        plain = fresh_server()
        fresh_server(**cad_settings(f"{cad.url}/cad"))
        _, token = create_user(plain)
        response = httpx.post(f"{plain.url}/v1/sos", json=sos_frame(), headers=bearer(token), timeout=10)
        alert_id = response.json()["alert_id"]
        posts = await asyncio.to_thread(cad.wait_for, 1, 10)
    assert [json.loads(post["body"])["incidentComponent"]["internalIncidentId"] for post in posts] == [alert_id]
