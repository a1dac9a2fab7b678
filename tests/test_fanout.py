"""The Redis fan-out between server processes, against the real Redis."""

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

from notifier.hub import ConsoleSubscriber, Hub, Mailbox
from server.alerts.service import Unfinished
from server.alerts.view import View
from server.alerts.fanout import Fanout
from tests.conftest import TEST_ENV
from tests.proxy import CuttableProxy, port_of, through
from tests.servers import add_staff, connect_console, connect_phone, create_user, login, sos_frame, until_type

# Another deployment on the same Redis server: the index after this run's own.
OTHER_DATABASE = (int(TEST_ENV["GUARDIAN_REDIS_URL"].rsplit("/", 1)[1]) + 1) % 16


def fanout_on(url: str) -> tuple[Fanout, ConsoleSubscriber, list[Redis]]:
    clients = [Redis.from_url(url), Redis.from_url(url)]
    fanout = Fanout(redis=clients[0], subscriber=clients[1], hub=Hub())
    desk = ConsoleSubscriber(all_precincts=True, precinct_id=None, mailbox=Mailbox(10))
    fanout.hub.add_console(desk)
    fanout.start()
    return fanout, desk, clients


async def test_processes_hear_each_others_alerts_but_another_redis_database_never_does():
    url = TEST_ENV["GUARDIAN_REDIS_URL"]
    other_url = url.rsplit("/", 1)[0] + f"/{OTHER_DATABASE}"
    sender, _, sender_clients = fanout_on(url)
    peer, peer_desk, peer_clients = fanout_on(url)
    stranger, stranger_desk, stranger_clients = fanout_on(other_url)
    try:
        await asyncio.sleep(0.3)  # the listeners subscribe
        # A fresh id: whatever else runs on the other database (a `make run` beside the suite)
        # is not this event.
        alert_id = str(uuid.uuid4())
        view = View(alert={"alert_id": alert_id, "status": "open", "updated_at": "2026-12-01T09:00:00Z"},
                    user_id="u1", precincts=("xinyi",), phone_status="open", status="open")
        assert await sender.publish_alert(view, kind="opened", event_id=str(uuid.uuid4()))
        async with asyncio.timeout(5):
            while (heard := await peer_desk.mailbox.get()).alert_id != alert_id:
                pass
        assert heard.type == "alert_opened"
        await asyncio.sleep(0.3)
        crossed = []
        while not stranger_desk.mailbox._queue.empty():
            crossed.append(stranger_desk.mailbox._queue.get_nowait().alert_id)
        assert alert_id not in crossed, "an alert crossed into another deployment"
    finally:
        for fanout, clients in ((sender, sender_clients), (peer, peer_clients), (stranger, stranger_clients)):
            await fanout.close()
            for client in clients:
                await client.aclose()


def alert_view(alert_id: str, status: str, at: datetime, *, user_id: str = "u1") -> View:
    alert = {"alert_id": alert_id, "status": status, "updated_at": at.isoformat()}
    return View(alert=alert, user_id=user_id, precincts=("xinyi",), phone_status=status, status=status)


async def test_a_read_from_before_an_alert_ended_does_not_bring_back_its_live_track():
    """The sweeper read the unfinished alerts, a dispatcher resolved one, then the read landed."""
    fanout, _, clients = fanout_on(TEST_ENV["GUARDIAN_REDIS_URL"])
    try:
        opened_at = datetime.now(UTC)
        read = [Unfinished("a1", "u1", ("xinyi",), "open", opened_at),
                Unfinished("a2", "u1", ("daan",), "open", opened_at)]
        fanout.watch(read)
        assert sorted(fanout.watched["u1"]) == ["a1", "a2"], "every unfinished alert of the user"
        await fanout.publish_alert(alert_view("a1", "resolved", opened_at + timedelta(seconds=1)), kind="updated",
                                   event_id="e1")
        fanout.watch(read)  # the stale read
        assert sorted(fanout.watched["u1"]) == ["a2"]
        await fanout.publish_alert(alert_view("a3", "open", opened_at + timedelta(seconds=2)), kind="opened",
                                   event_id="e2")
        fanout.watch(read)  # a read that began before a3 was committed
        assert sorted(fanout.watched["u1"]) == ["a2", "a3"]
    finally:
        await fanout.close()
        for client in clients:
            await client.aclose()


async def shown_within(console, alert_id: str, *, timeout_s: float) -> bool:
    """Whether the console is shown the alert within the time: live, or in a (resync's) snapshot."""
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                frame = json.loads(await console.recv())
                if frame["type"] in ("snapshot", "snapshot_more"):
                    if alert_id in {alert["alert_id"] for alert in frame["alerts"]}:
                        return True
                elif frame["type"] == "alert_opened" and frame["alert"]["alert_id"] == alert_id:
                    return True
    except TimeoutError:
        return False


class HalfOpenProxy(CuttableProxy):
    """`strand()` leaves every open link connected at both ends but carrying nothing, forever (a
    host lost behind a partition: no error, no close); new links work."""

    _generation = 0

    async def _pipe(self, reader, writer) -> None:
        born = self._generation
        try:
            while data := await reader.read(65536):
                if self._generation == born:
                    writer.write(data)
                    await writer.drain()
        finally:
            writer.transport.abort()
            self._writers.discard(writer)

    def strand(self) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "_generation", self._generation + 1)


async def test_a_silently_dead_subscription_is_noticed_and_its_consoles_resync(fresh_server, engine):
    """The second process's links to Redis go half-open: its consoles must still get the alert
    the first process raises (live after it resubscribes, or in the resync's snapshot)."""
    redis_url = TEST_ENV["GUARDIAN_REDIS_URL"]
    with HalfOpenProxy(target_port=port_of(redis_url)) as proxy:
        first = fresh_server()
        second = fresh_server(GUARDIAN_REDIS_URL=through(proxy, redis_url))
        await add_staff(engine, "command", role="command")
        console, _ = await connect_console(second, login(second, "command"))
        _, token = create_user(first)
        phone, _ = await connect_phone(first, token)
        proxy.strand()
        await phone.send(json.dumps(sos_frame()))
        alert_id = (await until_type(phone, "sos_ack"))["alert_id"]
        assert await shown_within(console, alert_id, timeout_s=10.0), "the half-open subscription went unnoticed"
        for ws in (console, phone):
            await ws.close()


async def test_an_older_fix_relayed_after_a_newer_one_never_moves_the_consoles_marker_back():
    """Flushes relay their moves in the order they finish, not the order they committed."""
    from geo.fix import Fix

    fanout, desk, clients = fanout_on(TEST_ENV["GUARDIAN_REDIS_URL"])
    user_id = uuid.uuid4()
    try:
        now = datetime.now(UTC)
        fanout.watch([Unfinished("a1", str(user_id), ("xinyi",), "open", now)])
        desk.known_alerts.add("a1")
        for seconds, lat in ((2, 25.0352), (1, 25.0351), (3, 25.0353)):
            await fanout.relay_locations([(user_id, Fix(lat=lat, lon=121.5645, ts=now + timedelta(seconds=seconds)))])
        heard = []
        while not desk.mailbox._queue.empty():
            heard.append(desk.mailbox._queue.get_nowait().frame["lat"])
        assert heard == [25.0352, 25.0353], "the older fix was not sent after the newer one"
    finally:
        await fanout.close()
        for client in clients:
            await client.aclose()
