"""The tracker apps as they talk to a server: OwnTracks in HTTP mode and Traccar Client
(OsmAnd protocol), with the message formats their documentation gives."""

import base64
import secrets
import time

import httpx

from tests.servers import TAIPEI_101, ServerProcess, bearer


def basic(password: str, user: str = "ann") -> dict[str, str]:
    """OwnTracks' credentials: any user name, the device token as password."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def owntracks_location(*, tst: int | None = None, at: tuple[float, float] = TAIPEI_101, **fields) -> dict:
    """A `_type: location` as OwnTracks for Android publishes it (owntracks.org/booklet/tech/json)."""
    return {"_type": "location", "lat": at[0], "lon": at[1], "tst": tst or int(time.time()), "acc": 5, "alt": 13,
            "vac": 3, "vel": 36, "cog": 270, "batt": 41, "bs": 1, "tid": "JJ", "t": "u", "conn": "w",
            "created_at": int(time.time()), "topic": "owntracks/ann/phone", **fields}


def publish(server: ServerProcess, token: str, message: dict | bytes | None, **headers) -> httpx.Response:
    """POST a message to `/owntracks/pub` the way the app does (X-Limit headers included)."""
    sent = {**basic(token), "X-Limit-U": "ann", "X-Limit-D": "phone", **headers}
    if isinstance(message, dict):
        return httpx.post(f"{server.url}/owntracks/pub", json=message, headers=sent, timeout=10)
    return httpx.post(f"{server.url}/owntracks/pub", content=message or b"", headers=sent, timeout=10)


def new_external_id() -> str:
    """A long random id, as the README recommends."""
    return secrets.token_hex(12)


def register(server: ServerProcess, token: str, external_id: str | None = None) -> dict:
    response = httpx.post(f"{server.url}/v1/devices", json={"protocol": "osmand",
                          "external_id": external_id or new_external_id()}, headers=bearer(token), timeout=10)
    assert response.status_code == 201, response.text
    return response.json()


def traccar_json(device_id: str, *, timestamp: str, at: tuple[float, float] = TAIPEI_101, alarm: str | None = None,
                 **coords) -> dict:
    """The JSON body of Traccar Client 9 (traccar.org/osmand: its location SDK's record)."""
    return {
        "location": {
            "timestamp": timestamp,
            "coords": {"latitude": at[0], "longitude": at[1], "accuracy": 12.5, "speed": 4.0, "heading": 90.0,
                       "altitude": 30.0, **coords},
            "is_moving": True, "odometer": 1200, "event": "motionchange",
            "battery": {"level": 0.64, "is_charging": False},
            "activity": {"type": "in_vehicle"},
            "extras": {} if alarm is None else {"alarm": alarm},
        },
        "device_id": device_id,
    }


def track(server: ServerProcess, token: str) -> list[dict]:
    """The user's stored fixes, read back as the user reads them (`GET /v1/me/track`)."""
    response = httpx.get(f"{server.url}/v1/me/track", headers=bearer(token), timeout=10)
    assert response.status_code == 200, response.text
    return [feature["properties"] | {"lat": feature["geometry"]["coordinates"][1],
                                     "lon": feature["geometry"]["coordinates"][0]}
            for feature in response.json()["features"]]
