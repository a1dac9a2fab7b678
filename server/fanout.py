"""Live alert events between processes: the local hub first, Redis pub/sub for the others.

A process publishes an event to its own hub at once (so its consoles hear it even
while Redis is down) and to Redis for every other process; what comes back from
Redis with this process's own origin is skipped. Losing a pub/sub message costs
a console at most a refresh (DESIGN rule 6): consoles resync on reconnect, and
the outbox repeats what was not relayed.

The fan-out also knows which users have an unfinished alert, so their fresh
fixes are relayed to the consoles as `alert_location`.
"""

import asyncio
import logging
import uuid
from collections.abc import Sequence

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from geo.fix import Fix
from notifier.hub import Event, Hub
from server import keys, wire
from server.alertview import UNFINISHED, View
from server.ingest import describe
from server.tasks import OwnedTask

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 0.5
RESUBSCRIBE_DELAY_S = 0.5


class _Message(msgspec.Struct):
    origin: str
    type: str
    alert_id: str
    user_id: str
    precincts: list[str]
    frame: dict
    event_id: str | None = None
    phone_status: str | None = None
    status: str | None = None


class Fanout(OwnedTask):
    task_name = "fanout-listen"

    def __init__(self, *, redis: Redis, subscriber: Redis, hub: Hub):
        """`subscriber`: a client of its own with no read timeout (a quiet channel is not an error)."""
        self._redis = redis
        self._subscriber = subscriber
        self.hub = hub
        self._origin = uuid.uuid4().hex
        self._channel = keys.events_channel(redis.connection_pool.connection_kwargs.get("db", 0))
        # user id → (alert id, precincts) of unfinished alerts: whose fixes go to the consoles.
        self.watched: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(_Message)

    def watch(self, watched: dict[str, tuple[str, tuple[str, ...]]]) -> None:
        """Replace the set of users with unfinished alerts (from PostgreSQL, at start and each sweep)."""
        self.watched = watched

    async def publish_alert(self, view: View, *, kind: str, event_id: str) -> bool:
        """Relay one outbox event. True when every process got it (Redis took it)."""
        message = _Message(
            origin=self._origin, type="alert_opened" if kind == "opened" else "alert_updated",
            alert_id=view.alert["alert_id"], user_id=view.user_id, precincts=list(view.precincts),
            frame={"type": "alert_opened" if kind == "opened" else "alert_updated", "alert": view.alert},
            event_id=event_id, phone_status=view.phone_status, status=view.status)
        self._deliver(message)
        return await self._send(message)

    async def relay_locations(self, moved: Sequence[tuple[uuid.UUID, Fix]]) -> None:
        """Fresh last locations of users with an unfinished alert, to the consoles (best effort)."""
        if not self.watched:
            return
        messages = []
        for user_id, fix in moved:
            watched = self.watched.get(str(user_id))
            if watched is None:
                continue
            alert_id, precincts = watched
            message = _Message(
                origin=self._origin, type="alert_location", alert_id=alert_id, user_id=str(user_id),
                precincts=list(precincts),
                frame={"type": "alert_location", "alert_id": alert_id, "lat": fix.lat, "lon": fix.lon,
                       "acc": fix.accuracy_m, "ts": wire.format_time(fix.ts)})
            self._deliver(message)
            messages.append(message)
        if messages:
            await self._send(*messages)

    def _deliver(self, message: _Message) -> None:
        if message.type != "alert_location":
            if message.status in UNFINISHED:
                self.watched[message.user_id] = (message.alert_id, tuple(message.precincts))
            elif self.watched.get(message.user_id, ("",))[0] == message.alert_id:
                del self.watched[message.user_id]
        self.hub.publish(Event(type=message.type, alert_id=message.alert_id, user_id=message.user_id,
                               precincts=tuple(message.precincts), frame=message.frame,
                               event_id=message.event_id, phone_status=message.phone_status,
                               text=wire.encode(message.frame)))

    async def _send(self, *messages: _Message) -> bool:
        """Publish to the other processes, in one round trip however many."""
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for message in messages:
                        pipe.publish(self._channel, self._encoder.encode(message))
                    await pipe.execute()
        except (RedisError, OSError, TimeoutError) as error:
            log.warning("%d %s event(s) not published to other processes: %s", len(messages), messages[0].type,
                        describe(error))
            return False
        return True

    async def _run(self) -> None:
        """Deliver other processes' events to this hub; resubscribe after Redis comes back."""
        lost = False
        while True:
            try:
                async with self._subscriber.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    if lost:
                        # What other processes published meanwhile is gone: consoles reload.
                        log.warning("event subscription restored; consoles resync")
                        self.hub.resync()
                        lost = False
                    async for raw in pubsub.listen():
                        try:
                            message = self._decoder.decode(raw["data"])
                        except (msgspec.DecodeError, TypeError):
                            continue
                        if message.origin != self._origin:
                            self._deliver(message)
            except (RedisError, OSError, TimeoutError) as error:
                log.warning("event subscription lost (%s); retrying", describe(error))
                lost = True
                # Pooled connections died with it; a stale one would hang the next subscribe.
                await self._subscriber.connection_pool.disconnect()
                await asyncio.sleep(RESUBSCRIBE_DELAY_S)
