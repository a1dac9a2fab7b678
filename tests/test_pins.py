"""Changing the PINs: whoever holds the phone cannot make a PIN that really cancels an alert.

Once set, the PINs change only with a right PIN as `current_pin`, counted like a cancel's
PIN; never while the phone was told of an unfinished alert; and the duress PIN there does what
the normal PIN does, so that nothing later tells the holder which one they were given.
"""

import asyncio
import json

import httpx
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError

from tests.servers import (add_staff, bearer, connect_console, connect_phone, create_user, login, receive, sos_frame,
                           until_type)

NORMAL, DURESS = "1234", "9999"


def put_pins(server, token, pin="1111", duress_pin="2222", current_pin=None) -> httpx.Response:
    body = {"pin": pin, "duress_pin": duress_pin}
    if current_pin is not None:
        body["current_pin"] = current_pin
    return httpx.put(f"{server.url}/v1/me/pins", json=body, headers=bearer(token), timeout=10)


def refusal(response: httpx.Response) -> tuple[int, str, str | None]:
    body = response.json()
    return response.status_code, body["code"], body.get("field")


async def stored_pins(engine, user_id: str) -> dict:
    """Which PINs the row holds now, and its lockout (hashes are salted: verify, not compare)."""
    async with engine.connect() as connection:
        row = (await connection.execute(sa.text(
            "SELECT pin_hash, duress_pin_hash, failed_attempts, locked_until FROM pins WHERE user_id = :u"),
            {"u": user_id})).one()

    def holds(stored: str, pin: str) -> bool:
        try:
            return PasswordHasher().verify(stored, pin)
        except VerificationError:
            return False

    pin = next(candidate for candidate in (NORMAL, "1111", "5555") if holds(row.pin_hash, candidate))
    duress = next(candidate for candidate in (DURESS, "2222", "6666") if holds(row.duress_pin_hash, candidate))
    return {"pin": pin, "duress_pin": duress, "failed_attempts": row.failed_attempts,
            "locked_until": row.locked_until}


async def alert_status(engine, alert_id: str) -> tuple[str, str, bool]:
    async with engine.connect() as connection:
        row = (await connection.execute(sa.text(
            "SELECT status, phone_status, duress FROM alerts WHERE alert_id = :a"), {"a": alert_id})).one()
    return row.status, row.phone_status, row.duress


async def user_with_pins(server) -> tuple[str, str]:
    user_id, token = create_user(server)
    assert put_pins(server, token, NORMAL, DURESS).status_code == 204, "the first time needs no current PIN"
    return user_id, token


async def raise_sos(server, token):
    ws, _ = await connect_phone(server, token)
    await ws.send(json.dumps(sos_frame()))
    return ws, (await until_type(ws, "sos_ack"))["alert_id"]


async def cancel(ws, alert_id: str, pin: str) -> dict:
    """The cancel's answer: its `alert_status` or its `error` (other frames skipped)."""
    await ws.send(json.dumps({"type": "sos_cancel", "alert_id": alert_id, "pin": pin}))
    for _ in range(20):
        frame = await receive(ws)
        if frame["type"] in ("alert_status", "error"):
            return frame
    raise AssertionError("no answer to the cancel")


async def test_the_reviewers_attack_fails_the_pins_stay_locked_and_the_alert_open(server, engine):
    """Five wrong cancel PINs, a PIN change during the alert, a cancel with the PIN it tried to set."""
    user_id, token = await user_with_pins(server)
    ws, alert_id = await raise_sos(server, token)
    for _ in range(5):
        assert (await cancel(ws, alert_id, "0000"))["code"] == "forbidden"
    assert (await cancel(ws, alert_id, NORMAL))["code"] == "rate_limited"
    locked = await stored_pins(engine, user_id)

    response = put_pins(server, token, "1111", "2222")
    assert refusal(response)[:2] == (409, "conflict")
    answer = await cancel(ws, alert_id, "1111")
    assert (answer["type"], answer["code"]) == ("error", "rate_limited")
    assert await alert_status(engine, alert_id) == ("open", "open", False)
    assert await stored_pins(engine, user_id) == locked, "neither the PINs nor the lockout changed"
    assert locked["locked_until"] is not None and (locked["pin"], locked["duress_pin"]) == (NORMAL, DURESS)
    await ws.close()


async def test_once_set_the_pins_change_only_with_the_normal_pin_as_current_pin(server, engine):
    user_id, token = await user_with_pins(server)
    assert refusal(put_pins(server, token)) == (403, "forbidden", "current_pin"), "no current PIN"
    assert refusal(put_pins(server, token, current_pin="0000")) == (403, "forbidden", "current_pin")
    assert (await stored_pins(engine, user_id))["pin"] == NORMAL
    assert put_pins(server, token, current_pin=NORMAL).status_code == 204
    after = await stored_pins(engine, user_id)
    assert (after["pin"], after["duress_pin"], after["failed_attempts"]) == ("1111", "2222", 0)
    ws, alert_id = await raise_sos(server, token)
    assert (await cancel(ws, alert_id, "1111"))["status"] == "cancelled"
    assert (await alert_status(engine, alert_id))[0] == "cancelled", "the new PIN really cancels"
    await ws.close()


async def test_wrong_current_pins_count_toward_the_cancel_lockout(server, engine):
    _, token = await user_with_pins(server)
    for attempt in range(5):
        assert refusal(put_pins(server, token, current_pin="0000")) == (403, "forbidden", "current_pin"), attempt
    assert refusal(put_pins(server, token, current_pin=NORMAL)) == (429, "rate_limited", "current_pin")
    ws, alert_id = await raise_sos(server, token)
    assert (await cancel(ws, alert_id, NORMAL))["code"] == "rate_limited", "the cancel is locked too"
    assert await alert_status(engine, alert_id) == ("open", "open", False)
    await ws.close()


async def test_a_locked_user_stays_locked_through_pin_change_attempts(server, engine):
    user_id, token = await user_with_pins(server)
    for _ in range(5):
        put_pins(server, token, current_pin="0000")
    locked = await stored_pins(engine, user_id)
    assert locked["locked_until"] is not None
    for current_pin in (NORMAL, DURESS, "0000"):
        assert refusal(put_pins(server, token, current_pin=current_pin)) == (429, "rate_limited", "current_pin")
    assert refusal(put_pins(server, token)) == (403, "forbidden", "current_pin"), "none given: none checked"
    assert await stored_pins(engine, user_id) == locked, "same PINs, same lockout, no reset"


async def test_the_duress_pin_as_current_pin_changes_the_pins_as_the_normal_one_does(server, engine):
    """Whoever holds the phone must not learn it was given the duress PIN: not from this answer,
    nor from the next change or cancel refusing the PINs this change seemed to set."""
    answers = {}
    for current_pin in (NORMAL, DURESS):
        user_id, token = await user_with_pins(server)
        response = put_pins(server, token, "5555", "6666", current_pin=current_pin)
        headers = {name: value for name, value in response.headers.items() if name != "date"}
        answers[current_pin] = (response.status_code, response.content, headers)
        stored = await stored_pins(engine, user_id)
        async with engine.connect() as connection:
            raised = await connection.scalar(sa.text("SELECT count(*) FROM alerts WHERE user_id = :u"),
                                             {"u": user_id})
        assert raised == 0, "nothing raised"
        assert (stored["pin"], stored["duress_pin"]) == ("5555", "6666")
        assert put_pins(server, token, "7777", "8888", current_pin="5555").status_code == 204, \
            "the PIN the holder set works at the next change"
    assert answers[DURESS] == answers[NORMAL] and answers[NORMAL][0] == 204


@pytest.mark.parametrize("current_pin", [None, NORMAL, DURESS, "0000"])
async def test_pin_changes_are_refused_while_an_alert_is_open_whatever_pin_is_given(server, engine, current_pin):
    user_id, token = await user_with_pins(server)
    ws, _ = await raise_sos(server, token)
    assert refusal(put_pins(server, token, current_pin=current_pin))[:2] == (409, "conflict")
    stored = await stored_pins(engine, user_id)
    assert (stored["pin"], stored["duress_pin"], stored["failed_attempts"]) == (NORMAL, DURESS, 0), \
        "nothing changed, no guess counted"
    await ws.close()


async def test_pin_changes_are_refused_while_an_alert_is_acknowledged(server, engine):
    await add_staff(engine, "pins-desk")
    console, _ = await connect_console(server, login(server, "pins-desk"))
    _, token = await user_with_pins(server)
    ws, alert_id = await raise_sos(server, token)
    await console.send(json.dumps({"type": "ack", "alert_id": alert_id}))
    assert (await until_type(ws, "alert_status"))["status"] == "acknowledged"
    assert refusal(put_pins(server, token, current_pin=NORMAL))[:2] == (409, "conflict")
    await ws.close()
    await console.close()


async def test_setting_pins_the_first_time_during_an_alert_is_refused(server, engine):
    """Else whoever holds a phone without PINs could set some and cancel with them."""
    _, token = create_user(server)
    ws, alert_id = await raise_sos(server, token)
    assert refusal(put_pins(server, token, NORMAL, DURESS))[:2] == (409, "conflict")
    assert (await cancel(ws, alert_id, NORMAL))["code"] == "forbidden", "still no PIN"
    await ws.close()


async def test_after_a_cancel_a_pin_change_cannot_tell_the_duress_pin_from_the_normal_one(server, engine):
    """The phone was told `cancelled` either way: the PIN it was given changes the PINs either way."""
    answers = {}
    for pin in (NORMAL, DURESS):
        user_id, token = await user_with_pins(server)
        ws, alert_id = await raise_sos(server, token)
        assert (await cancel(ws, alert_id, pin))["status"] == "cancelled"
        response = put_pins(server, token, current_pin=pin)
        answers[pin] = (response.status_code, response.content)
        stored = await stored_pins(engine, user_id)
        assert (stored["pin"], stored["duress_pin"]) == ("1111", "2222")
        await ws.close()
    assert answers[DURESS] == answers[NORMAL] == (204, b"")


async def test_of_two_first_settings_at_once_one_wins_and_the_other_needs_the_current_pin(server, engine):
    """Else a second request could overwrite the first PINs without knowing them."""
    user_id, token = create_user(server)
    async with httpx.AsyncClient(base_url=server.url, headers=bearer(token), timeout=10) as client:
        answers = await asyncio.gather(*(client.put("/v1/me/pins", json={"pin": pin, "duress_pin": duress})
                                         for pin, duress in ((NORMAL, DURESS), ("1111", "2222"))))
    assert sorted(answer.status_code for answer in answers) == [204, 403]
    [won] = [index for index, answer in enumerate(answers) if answer.status_code == 204]
    stored = await stored_pins(engine, user_id)
    assert (stored["pin"], stored["duress_pin"]) == ((NORMAL, DURESS), ("1111", "2222"))[won]
