"""In-process fan-out of live events to consoles, phones and watchers, with bounded mailboxes.

The hub never waits on a subscriber: an event is offered to each mailbox, and a
mailbox that is full marks its owner as too slow to keep (the owner disconnects
it). Events that arrive twice (the outbox is at-least-once across processes) are
recognised by their id and delivered once.

A trip's event (one with a `trip_id`) goes to that trip's watchers only, and a
`trip_status` also to its user's phones: never to a console. An alert's event never
reaches a watcher (what the police see is not the family's to see).
"""

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Event:
    """A live message. `event_id` is None for events that are never repeated (locations)."""

    type: str  # alert_opened, alert_updated, alert_location, or PHONE_FRAME
    alert_id: str
    user_id: str
    precincts: tuple[str, ...]  # who may see it, besides the command centre
    frame: dict  # what a console receives
    event_id: str | None = None
    phone_status: str | None = None
    text: str = ""  # the frame as JSON, encoded once for every console that gets it
    finished: bool = False  # the alert is resolved or cancelled: its consoles get no more of its moves
    trip_id: str | None = None  # a trip's event (trip_location, trip_status, ...): for its watchers


RESYNC = Event(type="resync", alert_id="", user_id="", precincts=(), frame={})
# A frame for the user's phones only, sent to them as it is (`text`): a trip's `are_you_safe` or
# `trip_arrived`. No console ever gets one, not even the command centre's.
PHONE_FRAME = "phone_frame"


class Mailbox:
    """A bounded queue of frames for one console; `overflowed` once an offer found it full."""

    def __init__(self, capacity: int):
        self._queue: asyncio.Queue = asyncio.Queue(capacity)
        self.overflowed = asyncio.Event()

    def offer(self, item) -> bool:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed.set()
            return False
        return True

    async def get(self):
        return await self._queue.get()


@dataclass(eq=False)
class ConsoleSubscriber:
    """One connected console: which precincts it sees, and its mailbox."""

    all_precincts: bool
    precinct_id: str | None
    mailbox: Mailbox
    # Unfinished alerts this console has been given (its sender audits each before sending): it
    # gets their moves, and no more once it has been told an alert ended.
    known_alerts: set[str] = field(default_factory=set)
    # Alerts it was told ended while connected: a snapshot read before the end cannot revive them.
    ended_alerts: set[str] = field(default_factory=set)

    def sees(self, precincts: tuple[str, ...]) -> bool:
        return self.all_precincts or self.precinct_id in precincts


class Hub:
    def __init__(self, *, remembered_events: int = 10_000):
        self._consoles: set[ConsoleSubscriber] = set()
        self._phones: dict[str, set[Callable[[Event], None]]] = {}
        self._watchers: dict[str, set[Callable[[Event], None]]] = {}
        self._observers: list[Callable[[Event], None]] = []
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._remembered = remembered_events

    def add_console(self, console: ConsoleSubscriber) -> None:
        self._consoles.add(console)

    def remove_console(self, console: ConsoleSubscriber) -> None:
        self._consoles.discard(console)

    def add_phone(self, user_id: str, deliver: Callable[[Event], None]) -> None:
        self._phones.setdefault(user_id, set()).add(deliver)

    def remove_phone(self, user_id: str, deliver: Callable[[Event], None]) -> None:
        callbacks = self._phones.get(user_id)
        if callbacks is not None:
            callbacks.discard(deliver)
            if not callbacks:
                del self._phones[user_id]

    def add_watcher(self, trip_id: str, deliver: Callable[[Event], None]) -> None:
        self._watchers.setdefault(trip_id, set()).add(deliver)

    def remove_watcher(self, trip_id: str, deliver: Callable[[Event], None]) -> None:
        callbacks = self._watchers.get(trip_id)
        if callbacks is not None:
            callbacks.discard(deliver)
            if not callbacks:
                del self._watchers[trip_id]

    def observe(self, callback: Callable[[Event], None]) -> None:
        """`callback` sees every event published (once, before its receivers): the trip feed
        learns of alerts opened and of other processes' trip changes this way."""
        self._observers.append(callback)

    @property
    def watcher_count(self) -> int:
        return sum(len(callbacks) for callbacks in self._watchers.values())

    def resync(self) -> None:
        """Live events may have been lost (the cross-process link was down): every console is
        asked to reload its snapshot."""
        for console in self._consoles:
            console.mailbox.offer(RESYNC)

    @property
    def console_count(self) -> int:
        return len(self._consoles)

    def publish(self, event: Event) -> bool:
        """Offer the event to every console that may see it and every phone of its user (a trip's
        event: to its watchers, and a `trip_status` to its user's phones).

        Returns False when the event was already delivered (a repeat of its id).
        """
        if event.event_id is not None:
            if event.event_id in self._seen:
                return False
            self._seen[event.event_id] = None
            if len(self._seen) > self._remembered:
                self._seen.popitem(last=False)
        for observer in self._observers:
            observer(event)
        if event.trip_id is not None:
            for deliver in tuple(self._watchers.get(event.trip_id, ())):
                deliver(event)
            if event.type == "trip_status":
                for deliver in tuple(self._phones.get(event.user_id, ())):
                    deliver(event)
            return True
        for console in self._consoles:
            if event.type == PHONE_FRAME or not console.sees(event.precincts):
                continue
            if event.type == "alert_location":
                if event.alert_id not in console.known_alerts:
                    continue
            elif event.finished:
                console.known_alerts.discard(event.alert_id)
                console.ended_alerts.add(event.alert_id)
            else:
                # Its frame carries the alert (and location), which the console audits before sending.
                console.known_alerts.add(event.alert_id)
            console.mailbox.offer(event)
        for deliver in self._phones.get(event.user_id, ()):
            deliver(event)
        return True
