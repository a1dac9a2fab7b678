"""The web console in headless Chromium (Debian's, driven by Playwright): log in, see an SOS
arrive with its map, follow the track, acknowledge, and never fetch from the internet."""

import json
import time

import pytest
from playwright.async_api import expect

from tests.browser import chromium_page
from tests.servers import add_staff, connect_phone, create_user, sos_frame, until_ack, until_type


@pytest.fixture
async def page():
    async with chromium_page() as page:
        yield page


async def test_dispatcher_sees_an_sos_with_its_map_follows_the_track_and_acknowledges(server, engine, page):
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    await add_staff(engine, "xinyi-desk")
    await page.goto(f"{server.url}/console")
    await page.fill("input[name=username]", "xinyi-desk")
    await page.fill("input[name=password]", "wrong password")
    await page.click("button[type=submit]")
    await expect(page.locator("#login-error")).to_contain_text("Wrong username or password")
    await page.fill("input[name=password]", "correct horse battery staple")
    await page.click("button[type=submit]")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "online", timeout=5000)
    await expect(page.locator(".leaflet-interactive").first).to_be_visible()  # precinct outlines: the basemap

    _, token = create_user(server, name="Mei Wu")
    phone, _ = await connect_phone(server, token)
    started = time.monotonic()
    await phone.send(json.dumps(sos_frame()))
    alert_id = (await until_type(phone, "sos_ack"))["alert_id"]
    item = page.locator(f"#queue li[data-alert-id='{alert_id}']")
    await expect(item).to_be_visible(timeout=1000)
    assert time.monotonic() - started < 1.0, "on the dispatcher's screen within a second"
    await expect(item).to_contain_text("Mei Wu")
    await expect(page.locator("#banner")).to_contain_text("New SOS")
    marker = page.locator("[data-testid=alert-marker]")
    await expect(marker).to_be_visible()

    now_ms = int(time.time() * 1000)
    for seq, lat in enumerate((25.0342, 25.0346, 25.0350)):
        await phone.send(json.dumps({"type": "ping", "seq": seq, "ts": now_ms + seq * 1000, "lat": lat,
                                     "lon": 121.5646, "acc": 5.0}))
        await until_ack(phone, seq)
        await expect(marker).to_have_attribute("data-lat", str(lat))
    await expect(page.locator(".leaflet-interactive[data-points]")).to_have_attribute("data-points", "3")

    await page.click("#panel button[data-action=ack]")
    status = await until_type(phone, "alert_status")
    assert (status["alert_id"], status["status"]) == (alert_id, "acknowledged")
    await expect(item).to_have_attribute("data-status", "acknowledged")
    await phone.close()

    outside = [url for url in requested if not url.startswith((server.url, server.ws_url, "data:"))]
    assert outside == [], "the console fetches nothing from the internet"


async def test_console_shows_when_it_is_offline_and_reconnects_by_itself(fresh_server, engine, page):
    server = fresh_server()
    await add_staff(engine, "desk")
    await page.goto(f"{server.url}/console")
    await page.fill("input[name=username]", "desk")
    await page.fill("input[name=password]", "correct horse battery staple")
    await page.click("button[type=submit]")
    connection = page.locator("#connection")
    await expect(connection).to_have_attribute("data-state", "online", timeout=5000)
    server.kill()
    await expect(connection).to_have_attribute("data-state", "offline", timeout=5000)
    server.start()
    await expect(connection).to_have_attribute("data-state", "online", timeout=15000)
