"""The production layout (`load.deployment`): an alerts process, a phones process with two
workers, and the real nginx in front (`ops/proxy.sh`), each on a free loopback port."""

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import websockets

from load.deployment import Deployment
from server.core import roles
from tests.endpoints import CadReceiver
from tests.sharing.watching import NEAR_101, move, shared, start_trip, watch
from tests.servers import TAIPEI_101, add_staff, bearer, connect_console, connect_phone, create_user, login, \
    quiet, sos_frame, stored_pings, until_ack, until_type

CAD_SECRET = "a-test-secret-of-some-length"
TEMPLATE = Path(__file__).resolve().parent.parent / "ops" / "nginx.conf.template"


@pytest.fixture(scope="module")
def deployment(test_env):
    started = Deployment(test_env, workers=2)
    started.start()
    yield started
    started.stop()


def ping(seq: int, at: tuple[float, float] = TAIPEI_101, **extra) -> dict:
    return {"type": "ping", "seq": seq, "ts": int(time.time() * 1000), "lat": at[0], "lon": at[1], "acc": 8.0,
            **extra}


def listening_sockets(port: int) -> int:
    """How many sockets listen on this loopback port (one per SO_REUSEPORT worker)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == "0A" and int(local.split(":")[1], 16) == port:
            count += 1
    return count


async def alerts_of(engine, user_id: str) -> list:
    async with engine.connect() as connection:
        return list(await connection.scalars(sa.text("SELECT alert_id FROM alerts WHERE user_id = :user_id"),
                                              {"user_id": user_id}))


def test_the_proxy_routes_the_alerts_process_by_the_prefixes_the_roles_serve():
    routed = re.findall(r"location (\S+) \{ proxy_pass http://alerts;", TEMPLATE.read_text())
    assert tuple(routed) == roles.ALERT_PREFIXES


async def test_a_route_of_the_other_role_is_not_served_by_a_roles_process(deployment):
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.post(f"{deployment.alerts.url}/v1/users", json={"name": "A", "phone": "+1"})).status_code \
            == 404
        assert (await client.post(f"{deployment.alerts.url}/v1/pings", json={})).status_code == 404
        assert (await client.post(f"{deployment.phones.url}/v1/sos", json={})).status_code == 404
        assert (await client.get(f"{deployment.phones.url}/console")).status_code == 404
        assert (await client.get(f"{deployment.alerts.url}/console")).status_code == 200
        assert (await client.get(f"{deployment.url}/console")).status_code == 200
        # Each /healthz names its own role's work only.
        alerts_health = (await client.get(f"{deployment.alerts.url}/healthz")).json()
        phones_health = (await client.get(f"{deployment.phones.url}/healthz")).json()
    assert "consoles" in alerts_health and "ingest_queued_rows" not in alerts_health
    assert "ingest_queued_rows" in phones_health and "consoles" not in phones_health
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(f"{deployment.alerts.ws_url}/v1/phone")
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(f"{deployment.phones.ws_url}/v1/console")


async def test_two_workers_serve_one_port_and_a_phones_pings_are_stored_once_whichever_takes_them(deployment, engine):
    assert listening_sockets(deployment.phones.port) == 2
    user_id, token = create_user(deployment)
    start_ms = int(time.time() * 1000) - 60_000
    fixes = [{"seq": seq, "ts": start_ms + seq * 1000, "lat": TAIPEI_101[0] + seq * 1e-4, "lon": TAIPEI_101[1],
              "acc": 8.0} for seq in range(8)]
    # Reconnects and HTTP posts land on either worker (the kernel spreads them), each with a
    # ledger of its own: the same pings resent on every path, to any worker, are stored once.
    async with httpx.AsyncClient(timeout=5) as client:
        for round_ in range(4):
            phone, welcome = await connect_phone(deployment, token)
            assert welcome["acked_seq"] == 2 * round_ - 1
            for fix in fixes[2 * round_:2 * round_ + 2]:
                await phone.send(json.dumps({"type": "ping", **fix}))
            await until_ack(phone, 2 * round_ + 1)
            posted = await client.post(f"{deployment.url}/v1/pings", headers=bearer(token),
                                       json={"pings": fixes[:2 * round_ + 2]})
            assert posted.status_code == 200, posted.text
            assert posted.json()["seq"] == 2 * round_ + 1
            await phone.close()
    assert [row["seq"] for row in await stored_pings(engine, user_id)] == list(range(8))


async def test_sos_over_http_through_the_proxy_reaches_a_console_of_the_alerts_process_with_live_positions(
        deployment, engine):
    await add_staff(engine, "desk")
    console, _ = await connect_console(deployment, login(deployment, "desk"), origin=deployment.url)
    user_id, token = create_user(deployment)
    phone, _ = await connect_phone(deployment, token)
    await phone.send(json.dumps({**ping(0), "ts": int(time.time() * 1000) - 20_000}))
    await until_ack(phone, 0)
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=5) as client:
        answer = await client.post(f"{deployment.url}/v1/sos", json=sos_frame(), headers=bearer(token))
    acked_s = time.monotonic() - started
    assert answer.status_code == 201, answer.text
    alert_id = answer.json()["alert_id"]
    opened = await until_type(console, "alert_opened")
    print(f"SOS over HTTP through the proxy: sos_ack {acked_s * 1000:.0f} ms, "
          f"console {(time.monotonic() - started) * 1000:.0f} ms")
    assert opened["alert"]["alert_id"] == alert_id
    # The phone hears it is in an alert (from the alerts process, through Redis to the phones one).
    await until_type(phone, "report_interval", alert_id=alert_id)
    # Its positions, sent on the socket to the phones process, reach the console (111 m in 20 s).
    moved = (TAIPEI_101[0] + 0.001, TAIPEI_101[1])
    await phone.send(json.dumps(ping(1, moved)))
    location = await until_type(console, "alert_location", alert_id=alert_id)
    assert (location["lat"], location["lon"]) == moved
    # The dispatcher's acknowledgement reaches the phone.
    await console.send(json.dumps({"type": "ack", "alert_id": alert_id}))
    status = await until_type(phone, "alert_status", alert_id=alert_id)
    assert status["status"] == "acknowledged" and status["by"] == "desk"
    await phone.close()
    await console.close()


@pytest.mark.parametrize("first", ["socket", "http"])
async def test_the_same_sos_id_on_the_socket_and_over_http_is_one_alert(deployment, engine, first):
    user_id, token = create_user(deployment)
    phone, _ = await connect_phone(deployment, token)
    frame = sos_frame()

    async def on_socket() -> str:
        await phone.send(json.dumps(frame))
        return (await until_type(phone, "sos_ack"))["alert_id"]

    async def over_http() -> str:
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.post(f"{deployment.url}/v1/sos", json=frame, headers=bearer(token))
        assert answer.status_code in (200, 201), answer.text
        return answer.json()["alert_id"]

    paths = [on_socket, over_http] if first == "socket" else [over_http, on_socket]
    # Raced: the second leaves at once, without waiting for the first's answer.
    first_task = asyncio.create_task(paths[0]())
    await asyncio.sleep(0)
    ids = await asyncio.gather(first_task, paths[1]())
    assert ids[0] == ids[1]
    assert [str(alert_id) for alert_id in await alerts_of(engine, user_id)] == [ids[0]]
    await phone.close()


async def test_the_client_address_reaches_the_servers_through_the_proxy_and_cannot_be_forged(test_env):
    deployment = Deployment({**test_env, "GUARDIAN_REGISTER_BURST": "2", "GUARDIAN_REGISTER_PER_HOUR": "1"})
    deployment.start()
    try:
        def register(source: str, **headers) -> int:
            with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=5) as client:
                return client.post(f"{deployment.url}/v1/users", json={"name": "Ann Lin", "phone": "+886912345678"},
                                   headers=headers).status_code

        assert [register("127.0.0.5"), register("127.0.0.5")] == [201, 201]
        # The registrations are counted under the phone's address, not the proxy's ...
        assert register("127.0.0.5") == 429
        assert register("127.0.0.6") == 201
        # ... and a header the client sends does not change it.
        assert register("127.0.0.5", **{"X-Forwarded-For": "203.0.113.9"}) == 429
        assert register("127.0.0.5", **{"X-Forwarded-For": "127.0.0.7, 203.0.113.9", "Forwarded": "for=1.2.3.4"}) \
            == 429
    finally:
        deployment.stop()


async def test_killing_the_alerts_process_loses_no_acknowledged_sos_and_a_restarted_one_delivers_them(
        test_env, engine):
    with CadReceiver() as cad:
        deployment = Deployment({**test_env, "GUARDIAN_CAD_ENDPOINTS": json.dumps([f"{cad.url}/cad"]),
                                 "GUARDIAN_CAD_SECRET": CAD_SECRET})
        deployment.start()
        try:
            await add_staff(engine, "desk")
            streamer_id, streamer_token = create_user(deployment, phone="+886900000001")
            streamer, _ = await connect_phone(deployment, streamer_token)
            users = [create_user(deployment, phone=f"+88691000000{index}") for index in range(3)]
            phones = [(await connect_phone(deployment, token))[0] for _, token in users]
            deployment.kill_alerts()
            # The phones process goes on: acks, and SOS acknowledged on the phones' sockets.
            for seq in range(5):
                await streamer.send(json.dumps(ping(seq)))
                await until_ack(streamer, seq)
            acknowledged = set()
            for phone in phones:
                await phone.send(json.dumps(sos_frame()))
                acknowledged.add((await until_type(phone, "sos_ack"))["alert_id"])
            # The HTTP path answers the contract's JSON while its process is down (nginx's, not HTML).
            refused = httpx.post(f"{deployment.url}/v1/sos", json={"sos_id": str(uuid.uuid4())},
                                 headers=bearer(users[0][1]), timeout=10)
            assert refused.status_code == 503 and refused.json()["code"] == "unavailable"
            assert refused.headers["retry-after"] == "1"
            deployment.start_alerts()
            console, snapshot = await connect_console(deployment, login(deployment, "desk"), origin=deployment.url)
            frames = await quiet(console, 3.0)
            shown = [alert["alert_id"] for alert in snapshot["alerts"]]
            shown += [frame["alert"]["alert_id"] for frame in frames if frame["type"] == "alert_opened"]
            assert sorted(shown) == sorted(acknowledged), "each once on the console"
            # CAD from the outbox: what the phones process committed while nobody could post it.
            posts = await asyncio.to_thread(cad.wait_for, len(acknowledged), 15)
            for alert_id in acknowledged:
                assert sum(alert_id in post["body"].decode() for post in posts) == 1, "each posted once"
            assert [row["seq"] for row in await stored_pings(engine, streamer_id)] == list(range(5))
            for phone in [streamer, *phones]:
                await phone.close()
            await console.close()
        finally:
            deployment.stop()


async def test_an_sos_committed_by_the_phones_process_wakes_the_alerts_processes_outbox_at_once(test_env, engine):
    with CadReceiver() as cad:
        # Polling only every minute: a row delivered within seconds was woken for.
        deployment = Deployment({**test_env, "GUARDIAN_CAD_ENDPOINTS": json.dumps([f"{cad.url}/cad"]),
                                 "GUARDIAN_CAD_SECRET": CAD_SECRET, "GUARDIAN_OUTBOX_POLL_INTERVAL_S": "60"})
        deployment.start()
        try:
            delays_s = []
            for index in range(5):
                _, token = create_user(deployment, phone=f"+88692000000{index}")
                phone, _ = await connect_phone(deployment, token)
                await phone.send(json.dumps(sos_frame()))
                await until_type(phone, "sos_ack")
                acked = time.monotonic()
                deadline = acked + 5
                while len(cad.requests) <= index and time.monotonic() < deadline:
                    await asyncio.sleep(0.005)
                delays_s.append(time.monotonic() - acked)
                await phone.close()
            print("sos_ack (phones process) -> CAD post (alerts process) ms:",
                  [round(delay_s * 1000) for delay_s in delays_s])
            assert max(delays_s) < 5, delays_s
            # A cancel the phones process commits (no rush: the console worker publishes it).
            await add_staff(engine, "desk")
            console, _ = await connect_console(deployment, login(deployment, "desk"), origin=deployment.url)
            _, token = create_user(deployment, phone="+886920000009")
            assert httpx.put(f"{deployment.url}/v1/me/pins", json={"pin": "1234", "duress_pin": "9999"},
                             headers=bearer(token), timeout=5).status_code == 204
            phone, _ = await connect_phone(deployment, token)
            await phone.send(json.dumps(sos_frame()))
            alert_id = (await until_type(phone, "sos_ack"))["alert_id"]
            await until_type(console, "alert_opened", timeout_s=5)
            await phone.send(json.dumps({"type": "sos_cancel", "alert_id": alert_id, "pin": "1234"}))
            await until_type(phone, "alert_status", status="cancelled")
            cancelled = time.monotonic()
            updated = await until_type(console, "alert_updated", timeout_s=5)
            assert updated["alert"]["status"] == "cancelled"
            print(f"sos_cancel (phones process) -> console (alerts process): "
                  f"{(time.monotonic() - cancelled) * 1000:.0f} ms after the phone's answer")
            await phone.close()
            await console.close()
        finally:
            deployment.stop()


async def test_a_reconnect_closes_the_devices_old_socket_whichever_worker_holds_it(deployment):
    _, token = create_user(deployment)
    old, _ = await connect_phone(deployment, token)
    # The kernel spreads connections over the two workers: within a few reconnects one lands on
    # the other worker than the socket before it, which must close all the same.
    for _ in range(6):
        new, _ = await connect_phone(deployment, token)
        async with asyncio.timeout(5):
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await old.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001, closed.value
        await old.close()
        old = new
    await old.close()


async def test_a_watcher_on_the_alerts_process_follows_a_ride_the_phones_process_takes(deployment):
    _, token = create_user(deployment)
    phone, _ = await connect_phone(deployment, token)
    trip_id = await start_trip(phone)
    link = shared(deployment, token, trip_id)
    watcher, first = await watch(deployment, link["token"])
    assert first["type"] == "trip" and first["status"] == "active"
    await move(phone, 0, *NEAR_101)
    location = await until_type(watcher, "location")
    assert (location["lat"], location["lon"]) == NEAR_101
    await phone.send(json.dumps({"type": "trip_end", "trip_id": trip_id}))
    assert (await until_type(watcher, "trip_status"))["status"] == "ended"
    await watcher.close()
    await phone.close()


def niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_the_phones_processes_run_below_the_alerts_process(deployment):
    workers = [int(pid) for pid in Path(f"/proc/{deployment.phones.pid}/task/{deployment.phones.pid}/children")
               .read_text().split()]
    assert len(workers) == 2
    ours = niceness(os.getpid())  # what the servers inherit
    assert [niceness(pid) for pid in [deployment.phones.pid, *workers]] == [min(ours + 5, 19)] * 3
    assert niceness(deployment.alerts.pid) == ours


@pytest.mark.parametrize("role", ["alerts", "all"])
def test_workers_are_refused_for_a_role_other_than_phones(test_env, role):
    ran = subprocess.run([sys.executable, "-m", "server", "serve", "--role", role, "--workers", "2"],
                         env={**test_env, "COLUMNS": "300"},  # the message on one line
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 2 and "for GUARDIAN_ROLE=phones only" in ran.stderr, ran.stderr


async def test_a_worker_that_dies_is_started_again_and_the_port_keeps_serving(deployment):
    children = Path(f"/proc/{deployment.phones.pid}/task/{deployment.phones.pid}/children")
    before = [int(pid) for pid in children.read_text().split()]
    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = [int(pid) for pid in children.read_text().split()]
        if len(now) == 2 and before[0] not in now:
            break
        await asyncio.sleep(0.2)
    assert len(now) == 2 and before[1] in now and before[0] not in now
    # Its socket was kept: what arrived meanwhile waited in its backlog for the new worker.
    _, token = create_user(deployment)
    for _ in range(6):  # on either worker
        phone, _ = await connect_phone(deployment, token)
        await phone.close()


async def test_two_sockets_of_a_device_opened_at_once_on_two_workers_leave_one_open(deployment):
    """Each new socket tells every process to close the device's older ones: two that open at
    the same instant (on two workers, their takeover frames crossing) must agree on which one
    stays, never close each other with 4001 (which tells the phone not to reconnect)."""
    async def trial() -> list:
        _, token = create_user(deployment)
        sockets = [socket for socket, _ in await asyncio.gather(connect_phone(deployment, token),
                                                                connect_phone(deployment, token))]
        await asyncio.sleep(1.0)  # both takeover frames have gone round
        open_ones = []
        for socket in sockets:
            try:
                await asyncio.wait_for(socket.recv(), 0.05)
            except TimeoutError:
                pass
            except websockets.ConnectionClosed:
                pass
            open_ones.append(socket.close_code is None)
            await socket.close()
        return open_ones

    outcomes = [await trial() for _ in range(12)] + list(await asyncio.gather(*(trial() for _ in range(12))))
    assert all(sum(outcome) == 1 for outcome in outcomes), outcomes
