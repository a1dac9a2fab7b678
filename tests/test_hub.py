"""The in-process hub: bounded mailboxes, slow consoles cut loose, repeats dropped, visibility kept."""

import pytest

from notifier.hub import ConsoleSubscriber, Event, Hub, Mailbox

pytestmark = pytest.mark.no_services


def event(alert_id="a1", *, type="alert_opened", precincts=("xinyi",), event_id=None, user_id="u1") -> Event:
    return Event(type=type, alert_id=alert_id, user_id=user_id, precincts=precincts, frame={"type": type},
                 event_id=event_id)


def console(precinct_id="xinyi", *, all_precincts=False, capacity=10) -> ConsoleSubscriber:
    return ConsoleSubscriber(all_precincts=all_precincts, precinct_id=precinct_id, mailbox=Mailbox(capacity))


async def test_a_slow_console_is_marked_for_disconnection_without_slowing_the_others():
    hub, slow, fast = Hub(), console(capacity=2), console(capacity=100)
    hub.add_console(slow)
    hub.add_console(fast)
    for index in range(5):
        hub.publish(event(f"a{index}"))
    assert slow.mailbox.overflowed.is_set()
    assert not fast.mailbox.overflowed.is_set()
    assert [(await fast.mailbox.get()).alert_id for _ in range(5)] == [f"a{i}" for i in range(5)]


async def test_an_event_repeated_by_the_outbox_is_delivered_once():
    hub, desk = Hub(), console()
    hub.add_console(desk)
    assert hub.publish(event(event_id="e1"))
    assert not hub.publish(event(event_id="e1"))
    assert desk.mailbox._queue.qsize() == 1


async def test_consoles_see_their_precinct_and_the_command_centre_sees_all():
    hub, xinyi, beitou, command = Hub(), console("xinyi"), console("beitou"), console(None, all_precincts=True)
    for subscriber in (xinyi, beitou, command):
        hub.add_console(subscriber)
    hub.publish(event(precincts=("xinyi",)))
    assert (xinyi.mailbox._queue.qsize(), beitou.mailbox._queue.qsize(), command.mailbox._queue.qsize()) == (1, 0, 1)


async def test_locations_go_only_to_consoles_that_were_given_the_alert():
    hub, early, late = Hub(), console(), console()
    hub.add_console(early)
    hub.publish(event("a1"))
    hub.add_console(late)
    hub.publish(event("a1", type="alert_location"))
    assert (early.mailbox._queue.qsize(), late.mailbox._queue.qsize()) == (2, 0)


async def test_phones_hear_only_their_users_events():
    hub, heard = Hub(), []
    hub.add_phone("u1", heard.append)
    hub.publish(event(user_id="u1"))
    hub.publish(event(user_id="u2"))
    hub.remove_phone("u1", heard.append)
    hub.publish(event(user_id="u1"))
    assert [item.user_id for item in heard] == ["u1"]


async def test_a_console_told_an_alert_ended_gets_no_more_of_its_moves():
    hub, desk = Hub(), console()
    hub.add_console(desk)
    hub.publish(event("a1"))
    hub.publish(Event(type="alert_updated", alert_id="a1", user_id="u1", precincts=("xinyi",), frame={},
                      finished=True))
    hub.publish(event("a1", type="alert_location"))
    assert [(await desk.mailbox.get()).type for _ in range(2)] == ["alert_opened", "alert_updated"]
    assert desk.mailbox._queue.empty() and desk.ended_alerts == {"a1"}


async def test_a_trips_event_reaches_its_watchers_and_never_a_console_nor_another_trips_watchers():
    hub, command, watched, other, phone = Hub(), console(None, all_precincts=True), [], [], []
    hub.add_console(command)
    hub.add_watcher("t1", watched.append)
    hub.add_watcher("t2", other.append)
    hub.add_phone("u1", phone.append)
    location = Event(type="trip_location", alert_id="", user_id="u1", precincts=(), frame={}, trip_id="t1")
    status = Event(type="trip_status", alert_id="", user_id="u1", precincts=(), frame={}, trip_id="t1")
    hub.publish(location)
    hub.publish(status)
    assert watched == [location, status] and other == []
    assert phone == [status], "a phone hears its trip's status, never a watcher's location"
    assert command.mailbox._queue.empty(), "a console got a watcher's event"
    hub.remove_watcher("t1", watched.append)
    hub.publish(location)
    assert len(watched) == 2 and hub.watcher_count == 1


async def test_an_alerts_event_never_reaches_a_watcher():
    hub, watched, seen = Hub(), [], []
    hub.add_watcher("t1", watched.append)
    hub.observe(seen.append)
    hub.publish(event(user_id="u1"))
    hub.publish(event(type="alert_location", user_id="u1"))
    assert watched == [] and [item.type for item in seen] == ["alert_opened", "alert_location"]
