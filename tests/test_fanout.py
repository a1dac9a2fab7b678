"""The Redis fan-out between server processes, against the real Redis."""

import asyncio

from redis.asyncio import Redis

from notifier.hub import ConsoleSubscriber, Hub, Mailbox
from server.alertview import View
from server.fanout import Fanout
from tests.conftest import TEST_ENV

OTHER_DATABASE = 13  # another deployment on the same Redis server


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
        view = View(alert={"alert_id": "a1", "status": "open", "updated_at": "2026-12-01T09:00:00Z"}, user_id="u1",
                    precincts=("xinyi",),
                    phone_status="open", status="open")
        assert await sender.publish_alert(view, kind="opened", event_id="e1")
        async with asyncio.timeout(5):
            heard = await peer_desk.mailbox.get()
        assert (heard.type, heard.alert_id) == ("alert_opened", "a1")
        await asyncio.sleep(0.3)
        assert stranger_desk.mailbox._queue.empty(), "an alert crossed into another deployment"
    finally:
        for fanout, clients in ((sender, sender_clients), (peer, peer_clients), (stranger, stranger_clients)):
            await fanout.close()
            for client in clients:
                await client.aclose()
