"""A user with one of everything Guardian holds, made over the real sockets and HTTP (the
privacy tests' common steps): PINs, contacts, a push token, fixes, a hike with a planned
route and a live share link, an SOS during it that a dispatcher noted and resolved."""

import json
from dataclasses import dataclass

import httpx

from tests.servers import add_staff, bearer, connect_console, connect_phone, create_user, login, sos_frame, until_type
from tests.sharing.watching import hike, move, north, shared, start_trip

NAME, PHONE = "Lin Yu-ting", "+886955123456"
CONTACT = {"name": "Chen Mei", "phone": "+886922333444"}
FCM_TOKEN = "fcm-registration-" + "x" * 40
PINS = {"pin": "2468", "duress_pin": "1357"}
FIXES = 6
NOTE = "unit 7 found her at the trailhead"


@dataclass
class Account:
    user_id: str
    token: str
    phone: object  # its socket, still open
    trip_id: str
    share_token: str
    alert_id: str
    dispatcher: str  # a console token of the precinct


async def full_account(server, engine) -> Account:
    user_id, token = create_user(server, name=NAME, phone=PHONE)
    for method, path, body in (("PUT", "/v1/me/pins", PINS), ("PUT", "/v1/me/contacts", {"contacts": [CONTACT]}),
                               ("POST", "/v1/me/push-token", {"fcm_token": FCM_TOKEN})):
        response = httpx.request(method, f"{server.url}{path}", json=body, headers=bearer(token), timeout=10)
        assert response.status_code in (200, 204), response.text
    phone, _ = await connect_phone(server, token)
    trip_id = await start_trip(phone, hike())
    for seq in range(FIXES):
        await move(phone, seq, *north(seq))
    link = shared(server, token, trip_id)
    await add_staff(engine, "xinyi-privacy")
    dispatcher = login(server, "xinyi-privacy")
    await phone.send(json.dumps(sos_frame(at=north(FIXES))))
    alert_id = (await until_type(phone, "sos_ack"))["alert_id"]
    console, _ = await connect_console(server, dispatcher)
    for frame in ({"type": "note", "alert_id": alert_id, "text": NOTE},
                  {"type": "resolve", "alert_id": alert_id, "outcome": "user safe"}):
        await console.send(json.dumps(frame))
        await until_type(console, "alert_updated", timeout_s=5)
    await console.close()
    await until_type(phone, "alert_status", status="resolved")
    return Account(user_id, token, phone, trip_id, link["token"], alert_id, dispatcher)
