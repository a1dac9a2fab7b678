"""The dispatcher's desk as a dispatcher reads it: nothing hidden takes room, the selected alert's
accuracy circle and track come into view, every age on the desk moves (by one timer), a narrow
window still shows the map, and an alert without a trip shows none."""

import json
import re
import time

import pytest
import sqlalchemy as sa
from playwright.async_api import Page, expect

from tests.browser import box, chromium_page, inside, log_in
from tests.servers import TAIPEI_101, add_staff, until_ack
from tests.test_console_page import BEITOU, queued, raise_sos

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


@pytest.fixture
async def page():
    async with chromium_page() as page:
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.errors = errors
        await page.add_init_script(COUNT_INTERVALS)
        yield page


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


async def test_on_a_narrow_window_the_desk_stacks_and_the_map_still_shows_the_selected_alert(server, engine, page):
    await page.set_viewport_size(NARROW)
    await add_staff(engine, "desk")
    await page.goto(f"{server.url}/console")
    await log_in(page, "desk")
    phone, alert_id = await raise_sos(server, "Mei Wu")
    await select_and_settle(page, alert_id)
    map_box = await box(page, "#map")
    assert map_box["width"] >= 0.9 * NARROW["width"] and map_box["height"] >= 300, f"a usable map: {map_box}"
    assert inside(await box(page, "[data-testid=alert-marker]"), map_box)
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
    _, old_id = phones[0]
    async with engine.begin() as connection:
        await connection.execute(sa.text("UPDATE alerts SET opened_at = opened_at - interval '3 minutes' "
                                         "WHERE alert_id = :id"), {"id": old_id})
    await page.reload()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "online", timeout=5000)
    await expect(queued(page, old_id).locator(".age")).to_have_text(re.compile(r"^opened 3 min \d\d s ago$"))
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
