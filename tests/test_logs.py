"""No token, password, PIN, phone number or coordinate in any log line, at any level.

One server runs at GUARDIAN_LOG_LEVEL=DEBUG with its stdout and stderr in a file, and the
whole stack is driven through it: registration, settings, the phone socket (hello-frame
authentication included), HTTP pings, trips and a watcher link, an SOS, the console, FCM
and CAD (each failing once), and refusals of every kind. Then every line it logged is
scanned for each value that was sent.
"""

import asyncio
import json
import time
import uuid

import httpx
import websockets

from tests.endpoints import CadReceiver, FakeFcm
from tests.servers import (ServerProcess, add_staff, bearer, connect_console, login, quiet, receive, until_ack,
                           until_type)
from tests.sharing.watching import shared, watch
from tests.trackers.apps import basic, owntracks_location, traccar_json

NAME, PHONE = "Mei Quillfeather", "+886955501234"
CONTACT_NAME, CONTACT_PHONE = "Oskar Brindlewood", "+886955507777"
PIN, DURESS_PIN = "482915", "731864"
PUSH_TOKEN = "fcm-registration-7f3c9a1e55d04b2a"
STAFF_PASSWORD = "correct horse battery staple"
WRONG_PASSWORD = "tr0ub4dor-and-3-wrong"
WRONG_TOKEN = "not-a-token-5b1f0e2d8c7a4936"
PLATE, DRIVER = "QZX-9876", "Ivo Marchbanks"
# Coordinates with digits no clock or id is likely to hold; a log line quoting them at any
# precision down to 4 decimals is caught.
FIXES = [(25.0412871, 121.5654193), (25.0415382, 121.5657214), (25.0418463, 121.5659735)]
SOS_AT = (25.0421957, 121.5662846)
OWNTRACKS_AT = (25.0431628, 121.5671359)
OSMAND_AT = (25.0437194, 121.5678642)
OSMAND_SOS_AT = (25.0442681, 121.5683917)
OSMAND_ID = "osmand-id-c4e7a19b2f3d5608"
INVALID_LAT = 95.5318642
CAD_SECRET = "cad-signing-secret-91c2e7d04f"
FCM_ACCESS_TOKEN = "fcm-access-token-3e8b1c6a90"


def coordinate_texts(value: float) -> set[str]:
    return {f"{value:.{digits}f}" for digits in range(4, 8)} | {repr(value)}


async def drive_the_stack(server: ServerProcess, engine, fcm: FakeFcm, cad: CadReceiver) -> dict[str, str]:
    """Everything a user, a tracker, a watcher and a dispatcher do; returns the secrets it made."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        created = (await http.post("/v1/users", json={"name": NAME, "phone": PHONE})).json()
        token, user_id = created["device_token"], created["user_id"]
        me = bearer(token)
        assert (await http.put("/v1/me/pins", json={"pin": PIN, "duress_pin": DURESS_PIN}, headers=me)).status_code == 204
        assert (await http.put("/v1/me/contacts", json={"contacts": [{"name": CONTACT_NAME, "phone": CONTACT_PHONE}]},
                               headers=me)).status_code == 200
        assert (await http.post("/v1/me/push-token", json={"fcm_token": PUSH_TOKEN}, headers=me)).status_code == 204
        # The contact has the app too, with a token FCM refuses: the failure is logged.
        contact = (await http.post("/v1/users", json={"name": CONTACT_NAME, "phone": CONTACT_PHONE})).json()
        assert (await http.post("/v1/me/push-token", json={"fcm_token": f"invalid-{PUSH_TOKEN}"},
                                headers=bearer(contact["device_token"]))).status_code == 204

        # Refusals: bad credentials, bad bodies, a coordinate out of range, a wrong PIN.
        assert (await http.get("/v1/me/location", headers=bearer(WRONG_TOKEN))).status_code == 401
        assert (await http.post("/v1/users", content=b"{\"name\": \"" + PHONE.encode())).status_code in (400, 422)
        assert (await http.put("/v1/me/pins", json={"pin": PIN, "duress_pin": PIN}, headers=me)).status_code in (400, 422)
        refused = await http.post("/v1/pings", headers=me, content=json.dumps(
            {"type": "pings", "pings": [{"seq": 1, "ts": int(time.time() * 1000), "lat": INVALID_LAT,
                                         "lon": FIXES[0][1]}]}))
        assert refused.status_code == 200 and refused.json()["errors"], refused.text
        assert (await http.post("/v1/console/login", json={"username": "xinyi-desk",
                                                         "password": WRONG_PASSWORD})).status_code == 401

        # The phone socket, authenticated by its first frame.
        phone = await websockets.connect(f"{server.ws_url}/v1/phone")
        try:
            await phone.send(json.dumps({"type": "hello", "token": token}))
            assert (await receive(phone))["type"] == "welcome"
            now_ms = int(time.time() * 1000)
            for seq, (lat, lon) in enumerate(FIXES[:2], start=2):
                await phone.send(json.dumps({"type": "ping", "seq": seq, "ts": now_ms + seq * 1000, "lat": lat,
                                             "lon": lon, "acc": 6.5}))
            await until_ack(phone, 3)
            await phone.send("{not json " + str(FIXES[0][0]))
            await phone.send(json.dumps({"type": "ping", "seq": 4, "ts": now_ms, "lat": INVALID_LAT, "lon": 0}))
            await phone.send(json.dumps({"type": "trip_start", "kind": "taxi", "plate": PLATE, "driver_name": DRIVER,
                                         "destination": {"lat": FIXES[2][0], "lon": FIXES[2][1]},
                                         "eta": now_ms + 1800_000}))
            trip_id = (await until_type(phone, "trip_started"))["trip_id"]
            link = shared(server, token, trip_id)
            assert (await http.get(f"/share/{link['token']}")).status_code == 200
            watcher, first = await watch(server, link["token"])
            try:
                assert first["type"] == "trip"
                http_ping = {"type": "pings", "pings": [{"seq": 5, "ts": now_ms + 5000, "lat": FIXES[2][0],
                                                         "lon": FIXES[2][1], "acc": 7.0}]}
                assert (await http.post("/v1/pings", headers=me, content=json.dumps(http_ping))).status_code == 200
                await until_type(watcher, "location")
            finally:
                await watcher.close()
            assert (await http.get(f"/share/{'x' * 43}")).status_code in (404, 410)

            await add_staff(engine, "xinyi-desk")
            console, _ = await connect_console(server, login(server, "xinyi-desk", STAFF_PASSWORD))
            try:
                sos_id = str(uuid.uuid4())
                await phone.send(json.dumps({"type": "sos", "sos_id": sos_id, "lat": SOS_AT[0], "lon": SOS_AT[1],
                                             "acc": 9.0, "ts": int(time.time() * 1000), "note": "help"}))
                alert_id = (await until_type(phone, "sos_ack"))["alert_id"]
                await until_type(console, "alert_opened", timeout_s=10)
                await phone.send(json.dumps({"type": "sos_cancel", "alert_id": alert_id, "pin": "000000"}))
                await until_type(phone, "error")
                await phone.send(json.dumps({"type": "sos_cancel", "alert_id": alert_id, "pin": PIN}))
                await quiet(phone, 0.5)
                await console.send(json.dumps({"type": "ack", "alert_id": alert_id}))
                await quiet(console, 0.5)
            finally:
                await console.close()
            await drive_the_trackers(http, token)
            await asyncio.to_thread(fcm.wait_for, 1)
            await asyncio.to_thread(cad.wait_for, 1)
        finally:
            await phone.close()
        # A second user takes their data and erases the account.
        other = (await http.post("/v1/users", json={"name": "Erased Person", "phone": "+886955509999"})).json()
        theirs = bearer(other["device_token"])
        await http.post("/v1/pings", headers=theirs, content=json.dumps(
            {"type": "pings", "pings": [{"seq": 1, "ts": int(time.time() * 1000), "lat": FIXES[1][0],
                                         "lon": FIXES[1][1], "acc": 5.0}]}))
        assert (await http.get("/v1/me/export", headers=theirs)).status_code == 200
        assert (await http.delete("/v1/me", headers=theirs)).status_code == 204
    return {"device token": token, "share token": link["token"], "user id": user_id,
            "erased token": other["device_token"], "erased phone": "+886955509999"}


async def drive_the_trackers(http: httpx.AsyncClient, token: str) -> None:
    """OwnTracks with good and bad credentials, Traccar Client by query and JSON, its SOS."""
    tst = int(time.time())
    sent = await http.post("/owntracks/pub", json=owntracks_location(tst=tst, at=OWNTRACKS_AT), headers=basic(token))
    assert sent.status_code == 200, sent.text
    assert (await http.post("/owntracks/pub", json=owntracks_location(at=OWNTRACKS_AT),
                            headers=basic(WRONG_TOKEN))).status_code == 401
    assert (await http.post("/owntracks/pub", json={"_type": "encrypted", "data": PIN},
                            headers=basic(token))).status_code == 400
    assert (await http.post("/owntracks/pub", json={"_type": PHONE}, headers=basic(token))).status_code == 200
    assert (await http.post("/v1/devices", json={"protocol": "osmand", "external_id": OSMAND_ID},
                            headers=bearer(token))).status_code == 201
    query = {"id": OSMAND_ID, "timestamp": str(tst + 1), "lat": str(OSMAND_AT[0]), "lon": str(OSMAND_AT[1]),
             "speed": "10.0", "accuracy": "8.0", "batt": "77"}
    assert (await http.get("/osmand", params=query)).status_code == 200
    assert (await http.get("/osmand", params={**query, "id": OSMAND_ID[::-1]})).status_code == 404
    assert (await http.get("/osmand", params={**query, "lat": str(INVALID_LAT)})).status_code == 400
    body = traccar_json(OSMAND_ID, timestamp=wire_time(tst + 2), at=OSMAND_SOS_AT, alarm="sos")
    assert (await http.post("/osmand", json=body)).status_code == 200


def wire_time(epoch_s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


async def test_no_secret_or_coordinate_reaches_any_log_line(test_env, engine, tmp_path):
    log_path = tmp_path / "server.log"
    with FakeFcm(hang_s=0) as fcm, CadReceiver(fail_first=1) as cad, log_path.open("wb") as log:
        server = ServerProcess({**test_env, "GUARDIAN_LOG_LEVEL": "DEBUG", "GUARDIAN_FCM_PROJECT_ID": "guardian-test",
                                "GUARDIAN_FCM_ENDPOINT": fcm.url, "GUARDIAN_FCM_ACCESS_TOKEN": FCM_ACCESS_TOKEN,
                                "GUARDIAN_CAD_ENDPOINTS": json.dumps([f"{cad.url}/cad"]),
                                "GUARDIAN_CAD_SECRET": CAD_SECRET}, log_file=log)
        server.start()
        try:
            made = await asyncio.wait_for(drive_the_stack(server, engine, fcm, cad), timeout=60)
        finally:
            server.stop()
    text = log_path.read_text(errors="replace")
    assert "serving on" in text and " DEBUG " in text, "the capture holds the server's lines at every level"
    secrets = {"name": NAME, "phone": PHONE, "contact name": CONTACT_NAME, "contact phone": CONTACT_PHONE,
               "PIN": PIN, "duress PIN": DURESS_PIN, "push token": PUSH_TOKEN, "staff password": STAFF_PASSWORD,
               "wrong password": WRONG_PASSWORD, "wrong token": WRONG_TOKEN, "CAD secret": CAD_SECRET,
               "FCM access token": FCM_ACCESS_TOKEN,
               "plate": PLATE, "driver": DRIVER, **{key: value for key, value in made.items() if key != "user id"}}
    secrets["OsmAnd id"] = OSMAND_ID
    for value in (*(c for fix in (*FIXES, SOS_AT, OWNTRACKS_AT, OSMAND_AT, OSMAND_SOS_AT) for c in fix), INVALID_LAT):
        secrets.update({f"coordinate {text_}": text_ for text_ in coordinate_texts(value)})
    leaks = {label: line for label, value in secrets.items() for line in text.splitlines() if value in line}
    assert not leaks, leaks
