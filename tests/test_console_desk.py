"""The dispatcher's desk as a dispatcher reads it: nothing hidden takes room, the selected alert's
accuracy circle, track and trip come into view, every age on the desk moves (by one timer), a narrow
window still shows the map, and a trip's plate and driver lead the panel.

Until the backend fills the Alert's `trip` (issue 10), the trip tests add the contract's `trip` to the
Alerts the real server sends, on the console's socket, as the server will send them."""

import asyncio
import json
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from playwright.async_api import Page, expect

from tests.browser import box, chromium_page, inside, log_in
from tests.servers import TAIPEI_101, add_staff, connect_phone, create_user, sos_frame, until_ack, until_type
from tests.test_console_page import BEITOU, HOSTILE_NAMES, queued, raise_sos

# Counts the intervals the page keeps running, so a test can tell one timer from one per row.
COUNT_INTERVALS = """
  window.liveIntervals = new Set();
  const setEvery = window.setInterval, clearEvery = window.clearInterval;
  window.setInterval = function (...args) { const id = setEvery.apply(this, args); liveIntervals.add(id); return id; };
  window.clearInterval = function (id) { liveIntervals.delete(id); return clearEvery.call(this, id); };
"""
# Is any element the page hides with the `hidden` attribute still laid out?
SHOWN_THOUGH_HIDDEN = """() => [...document.querySelectorAll("[hidden]")]
    .filter((element) => getComputedStyle(element).display !== "none").map((element) => element.outerHTML.slice(0, 80))"""
NARROW = {"width": 420, "height": 800}
# Near Taipei Main Station: a ride from Taipei 101 heads there.
MAIN_STATION = (25.0478, 121.5170)


@pytest.fixture
async def page():
    async with chromium_page() as page:
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.errors = errors
        await page.add_init_script(COUNT_INTERVALS)
        yield page


def taxi_ride(opened_at: str, **fields) -> dict:
    """The contract's `trip` of a taxi ride from Taipei 101 to Main Station, checked in 5 min before the SOS."""
    started = (datetime.fromisoformat(opened_at) - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    return {"kind": "taxi", "plate": "ABC-1234", "driver_name": "Wang Da-ming",
            "vehicle": {"make": "Toyota Wish", "colour": "yellow"}, "started_at": started,
            "destination": {"lat": MAIN_STATION[0], "lon": MAIN_STATION[1]},
            "planned_route": {"type": "LineString", "coordinates": [[121.5645, 25.0339], [121.5500, 25.0420],
                                                                    [MAIN_STATION[1], MAIN_STATION[0]]]},
            "track": [{"lat": 25.0300, "lon": 121.5700, "ts": started},
                      {"lat": 25.0339, "lon": 121.5645, "ts": opened_at}],
            "status": "active", **fields}


async def give_trips(page: Page, trips: dict) -> None:
    """The console's socket, each Alert of a user named in `trips` carrying `trips[name](opened_at)`."""
    def with_trips(message):
        frame = json.loads(message)
        for alert in frame.get("alerts", []) + ([frame["alert"]] if "alert" in frame else []):
            if alert["user"]["name"] in trips:
                alert["trip"] = trips[alert["user"]["name"]](alert["opened_at"])
        return json.dumps(frame)

    async def relay(route):
        upstream = route.connect_to_server()
        upstream.on_message(lambda message: route.send(with_trips(message)))

    await page.route_web_socket(re.compile(r".*/v1/console$"), relay)


async def ping(phone, seq: int, lat: float, lon: float, acc: float, ts_ms: int | None = None) -> None:
    await phone.send(json.dumps({"type": "ping", "seq": seq, "ts": ts_ms or int(time.time() * 1000), "lat": lat,
                                 "lon": lon, "acc": acc}))
    await until_ack(phone, seq)


async def metres_per_pixel(page: Page) -> float:
    """The map's scale as its scale bar states it (the bar's metres over its width in pixels)."""
    bar = page.locator(".leaflet-control-scale-line")
    text = await bar.text_content()
    number, unit = re.fullmatch(r"(\d+) (m|km)", text.strip()).groups()
    return int(number) * (1000 if unit == "km" else 1) / (await box(page, ".leaflet-control-scale-line"))["width"]


async def out_of_view(page: Page, parts: tuple[str, ...], timeout_s: float = 3.0) -> list[str]:
    """The parts (test ids) not inside the map, once they all are or `timeout_s` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        map_box = await box(page, "#map")
        out = [part for part in parts if not inside(await box(page, f"[data-testid={part}]"), map_box)]
        if not out or time.monotonic() > deadline:
            return out
        await asyncio.sleep(0.1)


async def select_and_settle(page: Page, alert_id: str) -> None:
    await queued(page, alert_id).click()
    await expect(page.locator("#map")).to_have_attribute("data-settled", alert_id, timeout=5000)


async def test_nothing_the_desk_hides_with_the_hidden_attribute_is_still_on_screen(server, engine, page):
    await add_staff(engine, "desk")
    await page.goto(f"{server.url}/console")
    await expect(page.locator("#login")).to_be_visible()
    assert await page.evaluate(SHOWN_THOUGH_HIDDEN) == [], "before login"
    await log_in(page, "desk")
    phone, alert_id = await raise_sos(server, "Mei Wu")
    await select_and_settle(page, alert_id)
    await page.click("#panel button[data-action=note]")
    await page.click("#note-form [data-cancel]")
    await expect(page.locator("#note-form")).to_be_hidden()
    shown = await page.evaluate(SHOWN_THOUGH_HIDDEN)
    assert shown == [], f"laid out although hidden: {shown}"
    assert (await box(page, "#desk"))["y"] == 0, "the desk starts at the top of the window"
    await phone.close()
    assert page.errors == []


async def test_selecting_an_alert_fits_its_accuracy_circle_of_acc_metres_and_its_track_in_view(server, engine, page):
    await add_staff(engine, "command", role="command")
    await page.goto(f"{server.url}/console")
    await log_in(page, "command")
    accuracy_m = {}
    phones = []
    for name, (lat, lon), acc in (("Mei Wu", BEITOU, 150.0), ("Lan Chen", TAIPEI_101, 40.0)):
        phone, alert_id = await raise_sos(server, name, at=(lat, lon))
        phones.append(phone)
        await expect(queued(page, alert_id)).to_be_visible()
        now_ms = int(time.time() * 1000)
        for seq in range(3):
            await ping(phone, seq, round(lat + 0.001 * (seq + 1), 6), lon, acc, now_ms + 1000 * (seq + 1))
        accuracy_m[alert_id] = acc

    for alert_id, acc in accuracy_m.items():
        await select_and_settle(page, alert_id)
        map_box = await box(page, "#map")
        for part in ("[data-testid=alert-marker]", "[data-testid=alert-accuracy]", "[data-testid=alert-track]"):
            assert inside(await box(page, part), map_box), f"{part} of the selected alert is in view"
        circle = await box(page, "[data-testid=alert-accuracy]")
        drawn_m = circle["width"] * await metres_per_pixel(page)
        assert abs(drawn_m - 2 * acc) <= 0.15 * 2 * acc, f"the circle spans {drawn_m:.0f} m, the fix says ±{acc} m"
        assert circle["width"] >= 20, "close enough to see the circle"
    for phone in phones:
        await phone.close()
    assert page.errors == []


async def test_a_window_narrowed_stacks_the_desk_and_its_map_still_shows_the_selected_alert(server, engine, page):
    await add_staff(engine, "desk")
    await give_trips(page, {"Mei Wu": taxi_ride})  # a ride across town: wider than a narrow map at this zoom
    await page.goto(f"{server.url}/console")
    await log_in(page, "desk")
    phone, alert_id = await raise_sos(server, "Mei Wu")
    now_ms = int(time.time() * 1000)
    for seq in range(2):
        await ping(phone, seq, TAIPEI_101[0] + 0.001 * (seq + 1), TAIPEI_101[1], 30.0, now_ms + 1000 * seq)
    await select_and_settle(page, alert_id)
    await expect(page.locator("[data-testid=alert-track]")).to_have_attribute("data-points", "2")
    await page.set_viewport_size(NARROW)  # the dispatcher puts the console in half the screen
    map_box = await box(page, "#map")
    assert map_box["width"] >= 0.9 * NARROW["width"] and map_box["height"] >= 300, f"a usable map: {map_box}"
    out = await out_of_view(page, ("alert-marker", "alert-accuracy", "alert-track", "trip-route", "trip-destination"))
    assert out == [], f"cut off by the narrower map: {out}"
    sideways = await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert sideways <= 0, f"the page scrolls sideways by {sideways} px"
    await page.click("#panel button[data-action=ack]")
    await expect(queued(page, alert_id)).to_have_attribute("data-status", "acknowledged")
    await phone.close()
    assert page.errors == []


async def test_queued_ages_count_minutes_the_last_fix_ages_in_the_panel_and_one_timer_keeps_them(server, engine, page):
    await add_staff(engine, "desk")
    await page.goto(f"{server.url}/console")
    await log_in(page, "desk")
    phones = [await raise_sos(server, name) for name in ("Mei Wu", "Lan Chen", "Chen Jia-hao")]
    (_, old_id), (_, yesterday_id) = phones[0], phones[2]
    async with engine.begin() as connection:
        for alert_id, back in ((old_id, timedelta(minutes=3)), (yesterday_id, timedelta(hours=26))):
            await connection.execute(sa.text("UPDATE alerts SET opened_at = opened_at - make_interval(secs => :back_s) "
                                             "WHERE alert_id = :id"), {"id": alert_id, "back_s": back.total_seconds()})
    await page.reload()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "online", timeout=5000)
    await expect(queued(page, old_id).locator(".age")).to_have_text(re.compile(r"^opened 3 min \d\d s ago$"))
    await expect(queued(page, yesterday_id).locator(".age")).to_have_text(re.compile(r"^opened 26 h 0\d min ago$"))
    day = await queued(page, yesterday_id).locator(".age").evaluate("e => new Date(e.dataset.since).toLocaleDateString()")
    await expect(queued(page, yesterday_id).locator(".meta")).to_contain_text(day)  # not only a time of day
    assert await page.evaluate("liveIntervals.size") == 1, "one timer for every age, not one per row"

    phone, alert_id = phones[1]
    await select_and_settle(page, alert_id)
    fix = page.locator("#facts .fix")
    await expect(fix).to_have_text(re.compile(r"^Last fix .+ ±8 m · \d+ s ago$"))
    first = await fix.text_content()
    await expect(fix).not_to_have_text(first, timeout=3000)
    await ping(phone, 0, TAIPEI_101[0] + 0.0005, TAIPEI_101[1], 23.0)
    await expect(fix).to_have_text(re.compile(r"^Last fix .+ ±23 m · \d+ s ago$"))
    for phone, _ in phones:
        await phone.close()
    assert page.errors == []


async def test_an_alert_without_a_trip_shows_no_trip_in_the_queue_the_panel_or_the_map(server, engine, page):
    await add_staff(engine, "desk")
    await page.goto(f"{server.url}/console")
    await log_in(page, "desk")
    phone, alert_id = await raise_sos(server, "Mei Wu")
    await select_and_settle(page, alert_id)
    await expect(page.locator("#facts .trip")).to_be_hidden()
    await expect(page.locator("#queue .trip")).to_have_count(0)
    for part in ("trip-route", "trip-track", "trip-destination"):
        await expect(page.locator(f"[data-testid={part}]")).to_have_count(0)
    await expect(page.locator("[data-testid=alert-marker]")).to_be_visible()
    await phone.close()
    assert page.errors == []


async def test_a_taxi_alerts_plate_and_driver_lead_the_panel_and_its_route_and_destination_come_into_view(
        server, engine, page):
    await add_staff(engine, "command", role="command")
    await give_trips(page, {"Lan Chen": taxi_ride})
    await page.goto(f"{server.url}/console")
    await log_in(page, "command")
    walker, walker_id = await raise_sos(server, "Mei Wu", at=BEITOU)
    rider, rider_id = await raise_sos(server, "Lan Chen")
    await expect(queued(page, rider_id).locator(".trip")).to_have_text("Taxi ride ABC-1234")
    await select_and_settle(page, walker_id)
    await select_and_settle(page, rider_id)

    trip = page.locator("#facts .trip")
    await expect(trip.locator(".plate")).to_have_text("ABC-1234")
    await expect(trip.locator(".driver")).to_have_text("Driver Wang Da-ming")
    await expect(trip.locator(".vehicle")).to_have_text("Vehicle Toyota Wish, yellow")
    await expect(trip.locator(".kind")).to_have_text(re.compile(r"^Taxi ride · active · checked in .+ \(5 min \d\d s ago\)$"))
    plate, name = await box(page, "#facts .trip .plate"), await box(page, "#facts h3")
    assert plate["y"] < name["y"], "the plate comes first in the panel"
    assert await trip.locator(".plate").evaluate("e => parseFloat(getComputedStyle(e).fontSize)") >= 1.5 * \
        await page.locator("#facts h3").evaluate("e => parseFloat(getComputedStyle(e).fontSize)"), "the plate is large"

    map_box = await box(page, "#map")
    for part in ("alert-marker", "trip-route", "trip-track", "trip-destination"):
        assert inside(await box(page, f"[data-testid={part}]"), map_box), f"{part} is in view"
    route = page.locator("[data-testid=trip-route]")
    assert await route.get_attribute("stroke-dasharray"), "the planned route is dashed, unlike the track"
    destination = page.locator("[data-testid=trip-destination]")
    await expect(destination).to_have_attribute("data-lat", str(MAIN_STATION[0]))
    await page.screenshot(path="/tmp/page-desk-taxi.png")

    await page.click("#panel button[data-action=ack]")
    await expect(queued(page, rider_id)).to_have_attribute("data-status", "acknowledged")
    await expect(trip.locator(".plate")).to_have_text("ABC-1234")
    await walker.close()
    await rider.close()
    assert page.errors == []


def hostile_trip(opened_at: str) -> dict:
    """Every text of a trip as a hostile phone could fill it, and every geometry out of shape."""
    return taxi_ride(opened_at, plate=HOSTILE_NAMES[0], driver_name=HOSTILE_NAMES[1], status=HOSTILE_NAMES[3],
                     vehicle={"make": HOSTILE_NAMES[2], "colour": None}, kind="taxi",
                     planned_route={"type": "Point", "coordinates": [121.5, 25.0]},
                     destination={"lat": 250.0, "lon": "<b>x</b>"},
                     track=[{"lat": None, "lon": 121.5, "ts": None}, None])


def broken_route(opened_at: str) -> dict:
    return taxi_ride(opened_at, planned_route={"type": "LineString", "coordinates": [None, [121.5, "x"], [121.5, 25.0]]})


def odd_trip(opened_at: str) -> dict:
    return {"kind": '<svg onload="window.pwned=1">', "plate": None, "driver_name": None, "vehicle": None,
            "started_at": None, "destination": None, "planned_route": None, "track": [], "status": None}


async def test_whatever_the_phone_sent_about_a_trip_is_shown_as_text_and_bad_geometry_is_not_drawn(
        server, engine, page):
    await add_staff(engine, "command", role="command")
    await give_trips(page, {"Lan Chen": hostile_trip, "Mei Wu": odd_trip, "Chen Jia-hao": broken_route})
    await page.goto(f"{server.url}/console")
    await log_in(page, "command")
    odd, odd_id = await raise_sos(server, "Mei Wu", at=BEITOU)
    hostile, hostile_id = await raise_sos(server, "Lan Chen")
    broken, broken_id = await raise_sos(server, "Chen Jia-hao")
    await select_and_settle(page, broken_id)
    await expect(page.locator("[data-testid=trip-route]")).to_have_count(0)  # one real point is no line
    await expect(page.locator("[data-testid=trip-destination]")).to_be_visible()
    await select_and_settle(page, hostile_id)
    trip = page.locator("#facts .trip")
    await expect(trip.locator(".plate")).to_have_text(HOSTILE_NAMES[0])
    await expect(trip.locator(".driver")).to_have_text(f"Driver {HOSTILE_NAMES[1]}")
    await expect(trip.locator(".vehicle")).to_have_text(f"Vehicle {HOSTILE_NAMES[2]}")
    await expect(trip.locator(".status")).to_have_text(HOSTILE_NAMES[3])
    for part in ("trip-route", "trip-track", "trip-destination"):
        await expect(page.locator(f"[data-testid={part}]")).to_have_count(0)
    overflow = await page.evaluate("(e => e.scrollWidth - e.clientWidth)(document.querySelector('#panel'))")
    assert overflow <= 0, f"the panel scrolls sideways by {overflow} px"

    await select_and_settle(page, odd_id)
    await expect(trip.locator(".kind")).to_have_text('<svg onload="window.pwned=1">')
    await expect(queued(page, odd_id).locator(".trip")).to_have_text('<svg onload="window.pwned=1">')
    assert await page.evaluate("window.pwned") is None, "nothing the phone sent ran in the dispatcher's page"
    for phone in (odd, hostile, broken):
        await phone.close()
    assert page.errors == []


async def test_logging_out_while_the_map_zooms_and_flies_leaves_no_page_error_and_a_working_desk(server, engine, page):
    await add_staff(engine, "command", role="command")
    await page.goto(f"{server.url}/console")
    await log_in(page, "command")
    phone, alert_id = await raise_sos(server, "Mei Wu", at=BEITOU)
    await expect(queued(page, alert_id)).to_be_visible()
    await page.click(".leaflet-control-zoom-in")  # a zoom animation under way
    await page.click("#logout")
    await expect(page.locator("#login")).to_be_visible()
    await log_in(page, "command")
    await queued(page, alert_id).click()  # a flight under way
    await page.click("#logout")
    await expect(page.locator("#login")).to_be_visible()
    await page.wait_for_timeout(1500)  # past the end of both animations
    await log_in(page, "command")
    await select_and_settle(page, alert_id)
    assert inside(await box(page, "[data-testid=alert-marker]"), await box(page, "#map"))
    await phone.close()
    assert page.errors == []


async def test_an_sos_during_a_real_taxi_ride_shows_its_plate_driver_route_and_destination_on_the_desk(
        server, engine, page):
    """End to end, no frame rewritten: the phone checks in a taxi (plate typed loosely, a planned
    route, a destination), drives, raises an SOS; the dispatcher sees the ride."""
    await add_staff(engine, "command", role="command")
    await page.goto(f"{server.url}/console")
    await log_in(page, "command")
    _, token = create_user(server, name="Lin Mei")
    phone, _ = await connect_phone(server, token)
    route = [[TAIPEI_101[1], TAIPEI_101[0]], [121.545, 25.040], [MAIN_STATION[1], MAIN_STATION[0]]]
    eta = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    await phone.send(json.dumps({"type": "trip_start", "kind": "taxi", "plate": "abc 1234", "driver_name": "Wang Da-ming",
                                 "vehicle": {"make": "Toyota Wish", "colour": "yellow"}, "eta": eta,
                                 "destination": {"lat": MAIN_STATION[0], "lon": MAIN_STATION[1]},
                                 "planned_route": {"type": "LineString", "coordinates": route}}))
    await until_type(phone, "trip_started")
    now_ms = int(time.time() * 1000)
    for seq in range(3):
        await ping(phone, seq, TAIPEI_101[0] + 0.0005 * seq, TAIPEI_101[1] - 0.001 * seq, 8.0, now_ms + seq)
    await phone.send(json.dumps(sos_frame()))
    alert_id = (await until_type(phone, "sos_ack"))["alert_id"]
    await expect(queued(page, alert_id).locator(".trip")).to_have_text("Taxi ride ABC-1234")
    await select_and_settle(page, alert_id)
    trip = page.locator("#facts .trip")
    await expect(trip.locator(".plate")).to_have_text("ABC-1234")
    await expect(trip.locator(".driver")).to_have_text("Driver Wang Da-ming")
    await expect(trip.locator(".vehicle")).to_have_text("Vehicle Toyota Wish, yellow")
    map_box = await box(page, "#map")
    for part in ("alert-marker", "trip-route", "trip-destination"):
        assert inside(await box(page, f"[data-testid={part}]"), map_box), f"{part} is in view"
    assert await page.locator("[data-testid=trip-route]").get_attribute("stroke-dasharray")
    await page.screenshot(path="/tmp/page-desk-real-taxi.png")
    await phone.close()
    assert page.errors == []
