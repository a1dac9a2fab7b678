"""The watcher page in headless Chromium: the ride moves on the map, its end shows, and the page goes
dead when its link expires. The screenshots (a taxi, a hike with its planned route, wide and narrow)
are saved for a person to look at."""

import asyncio
import os
import re
import time

import pytest
from playwright.async_api import expect

from tests.browser import chromium_page
from tests.servers import connect_phone, create_user
from tests.sharing.watching import NEAR_101, hike, move, north, shared, start_trip, taxi

SHOTS = os.environ.get("GUARDIAN_SHOTS", "/tmp")
NARROW = {"width": 400, "height": 800}


@pytest.fixture
async def page():
    async with chromium_page() as page:
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.errors = errors
        yield page


async def shoot(page, name: str) -> None:
    await page.screenshot(path=f"{SHOTS}/share-{name}-wide.png")
    await page.set_viewport_size(NARROW)
    await page.wait_for_timeout(300)
    await page.screenshot(path=f"{SHOTS}/share-{name}-narrow.png")
    await page.set_viewport_size({"width": 1280, "height": 800})


async def test_the_watcher_sees_the_ride_move_and_end(server, page):
    _, token = create_user(server)
    phone, _ = await connect_phone(server, token)
    trip_id = await start_trip(phone, taxi(driver_name="Chen Wei <b>bold</b>"))
    for seq in range(4):
        await move(phone, seq, *north(seq))
    link = shared(server, token, trip_id)
    await page.goto(link["url"])
    watch = page.locator("#watch")
    await expect(watch).to_have_attribute("data-state", "live")
    await expect(watch).to_have_attribute("data-points", "4")
    await expect(page.locator("#plate")).to_have_text("ABC-1234")
    await expect(page.locator("#driver")).to_have_text("Driver: Chen Wei <b>bold</b>")  # text, not HTML
    await expect(page.locator("#vehicle")).to_have_text("yellow Toyota Prius")
    await expect(page.locator("#status")).to_have_attribute("data-status", "active")
    await expect(page.locator("#age")).to_have_text(re.compile(r"\((just now|\d+ (s|min) ago)\)"))

    await move(phone, 4, *north(4))
    await expect(watch).to_have_attribute("data-points", "5")
    await expect(watch).to_have_attribute("data-lat", str(north(4)[0]))
    await shoot(page, "taxi")

    await phone.send('{"type": "trip_end", "trip_id": "%s"}' % trip_id)
    await expect(page.locator("#status")).to_have_attribute("data-status", "ended")
    await expect(page.locator("#status")).to_have_text("Trip ended")
    assert page.errors == []
    await phone.close()


async def test_the_page_goes_dead_when_the_link_expires(server, page):
    _, token = create_user(server)
    phone, _ = await connect_phone(server, token)
    trip_id = await start_trip(phone, hike())
    await move(phone, 0, *NEAR_101)
    await move(phone, 1, 25.0336, 121.5650)
    await move(phone, 2, 25.0332, 121.5656)
    link = shared(server, token, trip_id, expires_in_s=4)
    await page.goto(link["url"])
    await expect(page.locator("#watch")).to_have_attribute("data-state", "live")
    await expect(page.locator("#kind")).to_have_text("Hike")
    await expect(page.locator("path.leaflet-interactive[stroke-dasharray]")).to_have_count(1)  # the planned route
    await shoot(page, "hike")
    await expect(page.locator("#watch")).to_have_attribute("data-state", "dead", timeout=8000)
    await expect(page.locator("#dead")).to_be_visible()
    await expect(page.locator("#dead")).to_contain_text("This link has expired")
    await page.screenshot(path=f"{SHOTS}/share-expired.png")
    await page.wait_for_timeout(2500)
    await expect(page.locator("#watch")).to_have_attribute("data-state", "dead")  # it does not reconnect
    await page.reload()
    await expect(page.locator("body")).to_contain_text("This link has expired")
    assert page.errors == [] or all("410" in error for error in page.errors), page.errors
    await phone.close()


async def test_the_watcher_sees_the_ride_arrive_at_its_destination(fresh_server, page):
    server = fresh_server(GUARDIAN_TRIP_ARRIVAL_DWELL_S="1", GUARDIAN_SWEEP_INTERVAL_S="0.2")
    _, token = create_user(server)
    phone, _ = await connect_phone(server, token)
    destination = north(3)
    trip_id = await start_trip(phone, taxi(destination={"lat": destination[0], "lon": destination[1]}))
    await move(phone, 0, *north(0), ts_ms=int(time.time() * 1000))
    await page.goto(shared(server, token, trip_id)["url"])
    await expect(page.locator("#watch")).to_have_attribute("data-state", "live")
    await expect(page.locator("#status")).to_have_attribute("data-status", "active")
    # At the destination (a plausible walk's pace away), and still there after the dwell: the
    # ride ends by itself.
    await asyncio.sleep(1.0)
    await move(phone, 1, *destination, ts_ms=int(time.time() * 1000) + 60_000)
    await move(phone, 2, *destination, ts_ms=int(time.time() * 1000) + 62_000)
    await expect(page.locator("#status")).to_have_attribute("data-status", "arrived", timeout=10_000)
    await expect(page.locator("#status")).to_have_text("Arrived")
    assert page.errors == []
    await phone.close()
