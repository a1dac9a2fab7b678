"""The dispatcher's console page while a dispatcher works it: typing never hides a new SOS, the desk
fills the screen, the selected alert comes into view, the queue ages, and logging in again is clean."""

import asyncio
import json
import re
import time

import pytest
import sqlalchemy as sa
from playwright.async_api import expect

from server.accounts import staff
from tests.browser import box, chromium_page, inside, log_in
from tests.servers import (TAIPEI_101, add_staff, connect_phone, create_user, login, sos_frame, until_ack,
                           until_type)

BEITOU = (25.1320, 121.5010)  # far enough from Taipei 101 that both never fit one close view


@pytest.fixture
async def page():
    async with chromium_page() as page:
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.errors = errors
        yield page


async def raise_sos(server, name: str, at=TAIPEI_101):
    """A new user's phone raising an SOS at `at`: the open phone socket and the alert's id."""
    _, token = create_user(server, name=name)
    phone, _ = await connect_phone(server, token)
    await phone.send(json.dumps(sos_frame(at=at)))
    return phone, (await until_type(phone, "sos_ack"))["alert_id"]


async def walk(phone, lat: float, lon: float) -> float:
    """Three fixes walking north from (lat, lon), each acknowledged: the alert's track. The last latitude."""
    now_ms = int(time.time() * 1000)
    for seq in range(3):
        lat_now = round(lat + 0.0004 * (seq + 1), 6)
        await phone.send(json.dumps({"type": "ping", "seq": seq, "ts": now_ms + 2000 * (seq + 1), "lat": lat_now, "lon": lon,
                                     "acc": 8.0}))
        await until_ack(phone, seq)
    return lat_now


def queued(page, alert_id: str):
    return page.locator(f"#queue li[data-alert-id='{alert_id}']")


async def test_a_new_sos_is_shown_and_sounded_while_the_dispatcher_types_a_note(server, engine, page):
    await add_staff(engine, "desk")
    await page.goto(f"{server.url}/console")
    await log_in(page, "desk")
    first, first_id = await raise_sos(server, "Mei Wu")
    await expect(queued(page, first_id)).to_be_visible()
    await page.click("#panel button[data-action=note]")
    note = page.locator("#note-form textarea")
    await expect(note).to_be_focused()
    tones_before = await page.evaluate("window.tonesStarted")

    text = "Driver took the ring road; user whispering."
    typing = asyncio.create_task(note.press_sequentially(text, delay=40))
    await asyncio.sleep(0.3)
    second, second_id = await raise_sos(server, "Lan Chen")
    await expect(queued(page, second_id)).to_be_visible(timeout=1000)
    assert not typing.done(), "the SOS arrived while the dispatcher was still typing"
    await expect(page.locator("#banner")).to_contain_text("New SOS: Lan Chen")
    assert await page.evaluate("window.tonesStarted") > tones_before, "the new SOS is sounded"
    await page.screenshot(path="/tmp/page-note-form.png")
    await typing

    await expect(note).to_have_value(text)
    await expect(note).to_be_focused()
    await expect(queued(page, first_id)).to_have_attribute("aria-selected", "true")
    await page.click("#note-form button[type=submit]")
    await expect(page.locator("#panel .notes")).to_contain_text(f"desk: {text}")
    await expect(note).to_have_value("")
    await first.close()
    await second.close()
    assert page.errors == []


async def test_a_dispatcher_resolves_with_an_outcome_typed_inline_while_an_sos_arrives(server, engine, page):
    await add_staff(engine, "desk")
    await page.goto(f"{server.url}/console")
    await log_in(page, "desk")
    first, first_id = await raise_sos(server, "Mei Wu")
    await expect(queued(page, first_id)).to_be_visible()
    await page.click("#panel button[data-action=resolve]")
    outcome = page.locator("#resolve-form input[name=outcome]")
    await expect(outcome).to_be_focused()
    await outcome.fill("")
    typing = asyncio.create_task(outcome.press_sequentially("officers on scene, user safe", delay=40))
    await asyncio.sleep(0.3)
    second, second_id = await raise_sos(server, "Lan Chen")
    await expect(queued(page, second_id)).to_be_visible(timeout=1000)
    assert not typing.done(), "the SOS arrived while the dispatcher was still typing"
    await typing
    await expect(outcome).to_have_value("officers on scene, user safe")
    await page.screenshot(path="/tmp/page-resolve-form.png")

    await outcome.press("Enter")
    status = await until_type(first, "alert_status", status="resolved")
    assert status["alert_id"] == first_id
    await expect(queued(page, first_id)).to_have_count(0)
    async with engine.connect() as connection:
        stored = (await connection.execute(sa.text("SELECT outcome FROM alerts WHERE alert_id = :id"),
                                           {"id": first_id})).scalar_one()
    assert stored == "officers on scene, user safe"
    await expect(queued(page, second_id)).to_have_attribute("aria-selected", "true")
    await first.close()
    await second.close()
    assert page.errors == []


async def test_after_login_the_form_is_gone_and_the_map_fills_the_screen(server, engine, page):
    await add_staff(engine, "desk")
    await page.goto(f"{server.url}/console")
    await log_in(page, "desk")
    await expect(page.locator("#login")).to_be_hidden()
    viewport = {"x": 0, "y": 0, **page.viewport_size}
    map_box = await box(page, "#map")
    assert inside(map_box, viewport), f"the map {map_box} is inside the window {viewport}"
    assert map_box["height"] >= 0.8 * viewport["height"] and map_box["width"] >= 0.45 * viewport["width"]
    assert await page.evaluate("document.documentElement.scrollHeight") <= viewport["height"], "nothing to scroll"
    await page.screenshot(path="/tmp/page-desk-empty.png")
    assert page.errors == []


async def test_selecting_an_alert_flies_the_map_to_its_marker_accuracy_and_track(server, engine, page):
    await add_staff(engine, "command", role="command")
    await page.goto(f"{server.url}/console")
    await log_in(page, "command")
    walked = {}
    for name, (lat, lon) in (("Mei Wu", BEITOU), ("Lan Chen", TAIPEI_101)):
        phone, alert_id = await raise_sos(server, name, at=(lat, lon))
        await expect(queued(page, alert_id)).to_be_visible()
        walked[alert_id] = (phone, await walk(phone, lat, lon))
    north_id, south_id = walked

    for alert_id in (south_id, north_id):
        await queued(page, alert_id).click()
        marker = page.locator("[data-testid=alert-marker]")
        await expect(marker).to_have_attribute("data-lat", str(walked[alert_id][1]))
        await expect(page.locator("#map")).to_have_attribute("data-settled", alert_id, timeout=5000)
        map_box = await box(page, "#map")
        for part in ("[data-testid=alert-marker]", "[data-testid=alert-accuracy]", "[data-testid=alert-track]"):
            assert inside(await box(page, part), map_box), f"{part} of the selected alert is in view"
        track = await box(page, "[data-testid=alert-track]")
        assert track["height"] >= 30, f"close enough to follow the track, not the city overview: {track}"
    await page.screenshot(path="/tmp/page-desk.png")
    for phone, _ in walked.values():
        await phone.close()
    assert page.errors == []


async def test_each_queued_alert_shows_how_long_ago_it_opened_and_the_age_moves(server, engine, page):
    await add_staff(engine, "desk")
    await page.goto(f"{server.url}/console")
    await log_in(page, "desk")
    phone, alert_id = await raise_sos(server, "Mei Wu")
    age = queued(page, alert_id).locator(".age")
    await expect(age).to_have_text(re.compile(r"^opened \d+ s ago$"))
    first = await age.text_content()
    await expect(age).not_to_have_text(first, timeout=3000)
    await expect(age).to_have_text(re.compile(r"^opened \d+ s ago$"))
    await phone.close()


async def test_logging_out_and_in_again_gives_a_working_desk_without_page_errors(server, engine, page):
    await add_staff(engine, "desk")
    await page.goto(f"{server.url}/console")
    await log_in(page, "desk")
    await page.click("#logout")
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator("#desk")).to_be_hidden()
    await log_in(page, "desk")
    await expect(page.locator(".leaflet-interactive").first).to_be_visible()
    phone, alert_id = await raise_sos(server, "Mei Wu")
    await expect(queued(page, alert_id)).to_be_visible()
    await expect(page.locator("[data-testid=alert-marker]")).to_be_visible()
    await phone.close()
    assert page.errors == []


async def test_a_session_closed_with_1008_asks_for_login_and_logging_in_again_works(server, engine, page):
    await add_staff(engine, "desk")
    sockets = []

    async def relay(route):
        route.connect_to_server()
        sockets.append(route)

    await page.route_web_socket(re.compile(r".*/v1/console$"), relay)
    await page.goto(f"{server.url}/console")
    await log_in(page, "desk")
    await sockets[-1].close(code=1008, reason="a dispatcher's session is required")
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator("#desk")).to_be_hidden()
    await log_in(page, "desk")
    phone, alert_id = await raise_sos(server, "Mei Wu")
    await expect(queued(page, alert_id)).to_be_visible()
    await expect(page.locator("[data-testid=alert-marker]")).to_be_visible()
    await phone.close()
    assert page.errors == []
    await expect(page.locator("#login-error")).to_have_text("")


async def test_a_console_whose_session_ended_asks_for_login_instead_of_reconnecting_forever(server, engine, page):
    """The server refuses a dead session before accept (HTTP 403), which a browser sees as 1006."""
    await add_staff(engine, "desk")
    sockets = []

    async def relay(route):
        route.connect_to_server()
        sockets.append(route)

    await page.route_web_socket(re.compile(r".*/v1/console$"), relay)
    await page.goto(f"{server.url}/console")
    await log_in(page, "desk")
    async with engine.begin() as connection:
        await connection.execute(sa.text("DELETE FROM staff_sessions"))
    await sockets[-1].close(code=1001, reason="server restarting")
    await expect(page.locator("#login")).to_be_visible(timeout=5000)
    await expect(page.locator("#desk")).to_be_hidden()
    await expect(page.locator("#login-error")).to_contain_text("log in again")
    await log_in(page, "desk")
    assert page.errors == []


# Is the text the user typed held in an element bidi-isolated from what surrounds it?
ISOLATED = """(element, name) => [...element.querySelectorAll("*")].some((inner) =>
    inner.textContent.includes(name) && getComputedStyle(inner).unicodeBidi === "isolate")"""
HOSTILE_NAMES = ['<img src=x onerror="window.pwned=1">', '"><script>window.pwned=1</script>',
                 "W" * 100, "\u202eevil \U0001F6A8 مريم"]


async def test_whatever_a_user_typed_as_name_or_note_is_shown_as_text_and_fits_its_column(server, engine, page):
    await add_staff(engine, "desk")
    await page.goto(f"{server.url}/console")
    await log_in(page, "desk")
    phones = []
    for name in HOSTILE_NAMES:
        _, token = create_user(server, name=name)
        phone, _ = await connect_phone(server, token)
        phones.append(phone)
        await phone.send(json.dumps(sos_frame(note=f"<b>{name}</b>")))
        alert_id = (await until_type(phone, "sos_ack"))["alert_id"]
        await expect(page.locator("#banner")).to_contain_text(name)
        await queued(page, alert_id).click()
        await expect(queued(page, alert_id).locator("strong")).to_have_text(name)
        await expect(queued(page, alert_id).locator(".meta")).to_contain_text("open · Xinyi")
        await expect(page.locator("#facts h3")).to_have_text(f"{name} · open")
        await expect(page.locator("#facts .said")).to_have_text(f"“<b>{name}</b>”")
        await expect(page.locator("#map")).to_have_attribute("data-settled", alert_id, timeout=5000)
        await page.locator("[data-testid=alert-marker]").hover()
        await expect(page.locator(".leaflet-tooltip")).to_have_text(name)
    assert await page.evaluate("window.pwned") is None, "nothing a user typed ran in the dispatcher's page"
    # An override character in the last name reverses only the name, not the status or precinct after it.
    for shown in ("#banner", "#facts h3", "#facts .said", "#queue li[aria-selected=true] strong", ".leaflet-tooltip"):
        isolated = await page.locator(shown).evaluate(ISOLATED, HOSTILE_NAMES[-1])
        assert isolated, f"{shown} holds the name in a bidi-isolated element"
    for column in ("aside", "#panel"):
        overflow = await page.evaluate(f"(e => e.scrollWidth - e.clientWidth)(document.querySelector('{column}'))")
        assert overflow <= 0, f"{column} scrolls sideways by {overflow} px"
    await page.screenshot(path="/tmp/page-hostile.png")
    for phone in phones:
        await phone.close()
    assert page.errors == []


async def test_a_desk_opened_without_a_click_says_its_sound_is_off_until_the_dispatcher_clicks(server, engine):
    """A browser starts audio only after a gesture on the page; the desk must not look ready to sound."""
    await add_staff(engine, "desk")
    token = login(server, "desk")
    async with chromium_page(autoplay=False) as page:
        # The next morning's browser still holds the session: the desk opens without any gesture.
        await page.context.add_cookies([{"name": staff.SESSION_COOKIE, "value": token, "url": server.url}])
        await page.goto(f"{server.url}/console")
        await expect(page.locator("#connection")).to_have_attribute("data-state", "online", timeout=5000)
        await expect(page.locator("#sound")).to_be_visible()
        await page.screenshot(path="/tmp/page-sound-off.png")
        await page.click("#sound")
        await expect(page.locator("#sound")).to_be_hidden()
        assert await page.evaluate("sound().state") == "running"
