"""Live alert events between processes: the local hub first, Redis pub/sub for the others.

A process publishes an event to its own hub at once (so its consoles hear it even
while Redis is down) and to Redis for every other process; what comes back from
Redis with this process's own origin is skipped. Losing a pub/sub message costs
a console at most a refresh (DESIGN rule 6): whenever the subscription may have
missed something (it broke, it went quiet past its keepalive deadline, Redis
reconnected it, or a PUBLISH reached not even this process's own subscription),
this process's consoles reload their snapshot, and the outbox repeats what Redis
did not take.

The fan-out also knows every unfinished alert of every user, so their fresh fixes
are relayed to the consoles as `alert_location`, one per unfinished alert.

Trips' events (`publish_trip`: a watcher's locations, a trip's status, a revoked share)
travel on the same channel and the same subscription, marked with their `trip_id`; the
hub gives them to that trip's watchers only (`sharing.feed` makes them). A process that runs
no outbox workers (the phones role) wakes those of the others after its commits (`wake_outbox`).
"""

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from geo.fix import Fix
from notifier.hub import PHONE_FRAME, Event, Hub
from server.core import db, keys, wire
from server.alerts.view import UNFINISHED, View, updated_at
from server.core.tasks import OwnedTask, cancel_and_wait

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 0.5
# Messages published soon (`_send_soon`) that share one pipeline at most.
SEND_SOON_MAX = 500
RESUBSCRIBE_DELAY_S = 0.5
# The subscriber pings Redis this often while the channel is quiet, and gives the link up when
# nothing (no message, no pong) came back for the deadline: a half-open connection (a lost host,
# a partition) never reports an error by itself.
KEEPALIVE_INTERVAL_S = 1.0
KEEPALIVE_DEADLINE_S = 3.0
# A process that runs no outbox workers (the phones role) committed outbox rows: the processes
# that run them deliver now rather than at their next poll. Never given to the hub.
OUTBOX_DUE = "outbox_due"


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
    trip_id: str | None = None


@dataclass(frozen=True, slots=True)
class Watch:
    """An unfinished alert as the fan-out keeps it."""
    precincts: tuple[str, ...]
    phone_status: str
    updated_at: datetime


class SubscriptionLost(Exception):
    """The subscription may have missed messages without Redis saying so."""


class Fanout(OwnedTask):
    task_name = "fanout-listen"

    def __init__(self, *, redis: Redis, subscriber: Redis, hub: Hub):
        """`subscriber`: a client of its own with no read timeout (the keepalive bounds the wait)."""
        self._redis = redis
        self._subscriber = subscriber
        self.hub = hub
        self._origin = uuid.uuid4().hex
        self._channel = keys.events_channel(redis.connection_pool.connection_kwargs.get("db", 0))
        # user id → alert id → its watch, for every unfinished alert: whose fixes go to the consoles.
        self.watched: dict[str, dict[str, Watch]] = {}
        # Alerts heard to end (an end is final): a read of PostgreSQL that began before the end
        # cannot bring them back. Forgotten once a read no longer lists them.
        self._ended: set[str] = set()
        # Alerts heard of since the last read: one that read did not list may be newer than it.
        self._heard: set[str] = set()
        # alert id → the time of the newest fix sent to consoles: flushes (and processes) relay
        # in the order they finish, so an older fix arriving later must not move the marker back.
        self._located: dict[str, datetime] = {}
        self._stale = asyncio.Event()
        self._sending: set[asyncio.Task] = set()
        self._outgoing: list[_Message] = []  # for `_send_soon`, in order
        self._sender: asyncio.Task | None = None
        # Called with the channels named by another process's `publish_outbox_due`.
        self.on_outbox_due: Callable[[list[str]], None] | None = None
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(_Message)

    def in_alert(self, user_id: str) -> bool:
        return bool(self.watched.get(user_id))

    def phone_alerts(self, user_id: str) -> list[str]:
        """The user's unfinished alerts that the phone was not told are over (a duress cancel
        tells it `cancelled`, exactly as a normal one)."""
        return [alert_id for alert_id, watch in self.watched.get(user_id, {}).items()
                if watch.phone_status in UNFINISHED]

    def watch(self, unfinished) -> None:
        """Merge a read of every unfinished alert (`alerts.Unfinished`, at start and each sweep).

        What this process heard meanwhile wins over the read where it is newer: an alert heard
        to end stays ended, one heard to open after the read began stays watched."""
        listed = {alert.alert_id for alert in unfinished}
        for alert in unfinished:
            self._note(alert.alert_id, alert.user_id, Watch(alert.precincts, alert.phone_status, alert.updated_at))
        kept = listed | self._heard
        for user_id, alerts in list(self.watched.items()):
            for alert_id in [alert_id for alert_id in alerts if alert_id not in kept]:
                del alerts[alert_id]
            if not alerts:
                del self.watched[user_id]
        self._ended &= listed
        self._heard = set()

    def _note(self, alert_id: str, user_id: str, watch: Watch | None) -> None:
        """One report of an alert: `watch` None when it ended."""
        alerts = self.watched.get(user_id, {})
        if watch is None:
            self._ended.add(alert_id)
            alerts.pop(alert_id, None)
        elif alert_id not in self._ended:
            current = alerts.get(alert_id)
            if current is None or current.updated_at <= watch.updated_at:
                alerts[alert_id] = watch
        if alerts:
            self.watched[user_id] = alerts
        else:
            self.watched.pop(user_id, None)

    async def publish_alert(self, view: View, *, kind: str, event_id: str) -> bool:
        """Relay one outbox event. True when every process got it (Redis took it)."""
        message = _Message(
            origin=self._origin, type="alert_opened" if kind == "opened" else "alert_updated",
            alert_id=view.alert["alert_id"], user_id=view.user_id, precincts=list(view.precincts),
            frame={"type": "alert_opened" if kind == "opened" else "alert_updated", "alert": view.alert},
            event_id=event_id, phone_status=view.phone_status, status=view.status)
        self._deliver(message)
        return await self._send(message)

    async def publish_to_phone(self, *, user_id: str, frame: dict) -> bool:
        """A frame for the user's phones, on every process (never a console's): a trip's question
        or news. True when every process got it (Redis took it). Best effort: what a phone must
        not miss is also sent when it connects (trips' own hook)."""
        message = self._phone_message(user_id, frame)
        self._deliver(message)
        return await self._send(message)

    def wake_outbox(self, channels: Sequence[str]) -> None:
        """Wake the outbox workers of these channels in the other processes (best effort: they poll)."""
        self._send_soon(_Message(origin=self._origin, type=OUTBOX_DUE, alert_id="", user_id="", precincts=[],
                                 frame={"channels": list(channels)}))

    def publish_soon_to_phone(self, *, user_id: str, frame: dict) -> None:
        """`publish_to_phone` to this hub now, to the others without waiting for Redis."""
        message = self._phone_message(user_id, frame)
        self._deliver(message)
        self._send_soon(message)

    def _phone_message(self, user_id: str, frame: dict) -> _Message:
        return _Message(origin=self._origin, type=PHONE_FRAME, alert_id="", user_id=user_id, precincts=[], frame=frame)

    async def relay_locations(self, moved: Sequence[tuple[uuid.UUID, Fix]]) -> None:
        """Fresh last locations of users with unfinished alerts, to the consoles of each (best effort)."""
        if not self.watched:
            return
        messages = []
        for user_id, fix in moved:
            for alert_id, watch in self.watched.get(str(user_id), {}).items():
                message = _Message(
                    origin=self._origin, type="alert_location", alert_id=alert_id, user_id=str(user_id),
                    precincts=list(watch.precincts),
                    frame={"type": "alert_location", "alert_id": alert_id, "lat": fix.lat, "lon": fix.lon,
                           "acc": fix.accuracy_m, "ts": wire.format_time(fix.ts)})
                self._deliver(message)
                messages.append(message)
        if messages:
            await self._send(*messages)

    async def publish_trip(self, *events: Event) -> bool:
        """Trip events (each with its `trip_id`) to this process's hub at once, then to the others
        in one round trip (best effort: a lost one costs a watcher at most its next recheck)."""
        messages = [_Message(origin=self._origin, type=event.type, alert_id="", user_id=event.user_id, precincts=[],
                             frame=event.frame, trip_id=event.trip_id) for event in events]
        for message in messages:
            self._deliver(message)
        return await self._send(*messages) if messages else True

    def _deliver(self, message: _Message) -> None:
        if message.type == OUTBOX_DUE:
            if self.on_outbox_due is not None:
                self.on_outbox_due(message.frame.get("channels") or [])
            return
        if message.trip_id is not None:
            self.hub.publish(Event(type=message.type, alert_id="", user_id=message.user_id, precincts=(),
                                   frame=message.frame, text=wire.encode(message.frame), trip_id=message.trip_id))
            return
        finished = False
        if message.type == "alert_location":
            at = datetime.fromisoformat(message.frame["ts"])
            newest = self._located.get(message.alert_id)
            if newest is not None and at <= newest:
                return
            self._located[message.alert_id] = at
        elif message.type != PHONE_FRAME:  # an alert's event (a phone's frame touches no alert)
            finished = message.status not in UNFINISHED
            if finished:
                self._located.pop(message.alert_id, None)
            self._heard.add(message.alert_id)
            self._note(message.alert_id, message.user_id, None if finished else Watch(
                tuple(message.precincts), message.phone_status or "open", updated_at(message.frame["alert"])))
        self.hub.publish(Event(type=message.type, alert_id=message.alert_id, user_id=message.user_id,
                               precincts=tuple(message.precincts), frame=message.frame,
                               event_id=message.event_id, phone_status=message.phone_status,
                               text=wire.encode(message.frame), finished=finished))

    async def _send(self, *messages: _Message) -> bool:
        """Publish to the other processes, in one round trip however many. True when Redis took
        every message and at least this process's own subscription heard each."""
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for message in messages:
                        pipe.publish(self._channel, self._encoder.encode(message))
                    receivers = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as error:
            log.warning("%d %s event(s) not published to other processes: %s", len(messages),
                        "/".join(sorted({message.type for message in messages})), db.describe(error))
            return False
        if min(receivers) < 1:
            # Not even this process's subscription is on Redis: nobody else's may be either.
            log.warning("%d %s event(s) reached no subscriber; resubscribing", len(messages), messages[0].type)
            self._stale.set()
            return False
        return True

    def _send_soon(self, message: _Message) -> None:
        """Publish without waiting. Messages sent soon go out together, in order, one pipeline at a
        time: a reconnect storm's takeover frames (one per phone that connects) would otherwise
        each take a Redis connection of their own at once, and time out. Owned here, cancelled at
        close; a failure is logged by `_send`."""
        self._outgoing.append(message)
        if self._sender is None or self._sender.done():  # done: it found nothing left (no await since)
            self._sender = asyncio.create_task(self._send_outgoing(), name="fanout-send-soon")
            self._sending.add(self._sender)
            self._sender.add_done_callback(self._sending.discard)

    async def _send_outgoing(self) -> None:
        while self._outgoing:
            messages, self._outgoing = self._outgoing[:SEND_SOON_MAX], self._outgoing[SEND_SOON_MAX:]
            await self._send(*messages)

    async def close(self) -> None:
        await cancel_and_wait(*self._sending)
        await super().close()

    def _reconnected(self, connection) -> None:
        """redis-py reconnected the subscription by itself: what was published meanwhile is gone."""
        self._stale.set()

    async def _abandon(self, pubsub) -> None:
        """Drop a subscription without a round trip: its link may be the half-open one."""
        connection = pubsub.connection
        if connection is not None:
            pubsub.connection = None
            connection.deregister_connect_callback(self._reconnected)
            connection.deregister_connect_callback(pubsub.on_connect)
            await connection.disconnect(nowait=True)
            await pubsub.connection_pool.release(connection)

    async def _listen(self, pubsub) -> None:
        last_heard = asyncio.get_running_loop().time()
        last_ping = last_heard
        while True:
            if self._stale.is_set():
                raise SubscriptionLost("the subscription missed messages")
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=KEEPALIVE_INTERVAL_S / 2)
            now = asyncio.get_running_loop().time()
            if message is not None:
                last_heard = now
                if message["type"] == "message":
                    self._take(message["data"])
            if now - last_heard > KEEPALIVE_DEADLINE_S:
                raise SubscriptionLost(f"nothing from Redis for {KEEPALIVE_DEADLINE_S:g} s")
            if now - last_ping >= KEEPALIVE_INTERVAL_S:
                last_ping = now
                await pubsub.ping()

    def _take(self, data) -> None:
        try:
            message = self._decoder.decode(data)
        except (msgspec.DecodeError, TypeError):
            return
        if message.origin != self._origin:
            self._deliver(message)

    async def _run(self) -> None:
        """Deliver other processes' events to this hub; resubscribe (and resync consoles) whenever
        the subscription may have missed something."""
        lost = False
        while True:
            pubsub = self._subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                try:
                    async with asyncio.timeout(KEEPALIVE_DEADLINE_S):
                        await pubsub.subscribe(self._channel)
                    pubsub.connection.register_connect_callback(self._reconnected)
                    self._stale.clear()
                    if lost:
                        # What other processes published meanwhile is gone: consoles reload.
                        log.warning("event subscription restored; consoles resync")
                        self.hub.resync()
                        lost = False
                    await self._listen(pubsub)
                finally:
                    await self._abandon(pubsub)
            except (RedisError, OSError, TimeoutError, SubscriptionLost) as error:
                reason = str(error) if isinstance(error, SubscriptionLost) else db.describe(error)
                log.warning("event subscription lost (%s); retrying", reason)
                lost = True
                # Pooled connections died with it; a stale one would hang the next subscribe.
                await self._subscriber.connection_pool.disconnect()
                await asyncio.sleep(RESUBSCRIBE_DELAY_S)
