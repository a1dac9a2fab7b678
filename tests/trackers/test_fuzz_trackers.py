"""Hostile input against both tracker endpoints: every field swept with the boundary values of
`tests.hostile`, then random spoilings. Properties: every answer is a status the tracker apps
know with the contract's error body, never 5xx; nothing stored is garbage (every stored fix
passes the geo rules' ranges), and nothing is stored that was not answered 200."""

import time

import httpx
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from server.core.errors import HTTP_STATUS
from tests import hostile
from tests.servers import create_user
from tests.trackers.apps import basic, register, traccar_json

ANSWERED = {200, 400, 401, 404, 413, 429}
CONTRACT_CODES = set(HTTP_STATUS) - {"unavailable"}


def check(response: httpx.Response) -> bool:
    """Whether it was stored-or-ignored (200), after checking the answer is the contract's."""
    assert response.status_code in ANSWERED, (response.status_code, response.text[:300])
    if response.status_code != 200:
        assert response.json()["code"] in CONTRACT_CODES, response.text[:300]
    return response.status_code == 200


async def assert_nothing_garbage(engine, user_id: str, accepted: int) -> None:
    async with engine.connect() as connection:
        rows = (await connection.execute(sa.text(
            "SELECT ST_Y(location) AS lat, ST_X(location) AS lon, accuracy_m, altitude_m, speed_mps, heading_deg, "
            "battery_pct, device_ts FROM pings WHERE user_id = :user_id"), {"user_id": user_id})).all()
    assert len(rows) <= accepted
    for row in rows:
        assert -90 <= row.lat <= 90 and -180 <= row.lon <= 180, row
        assert row.accuracy_m is None or 0 <= row.accuracy_m <= 1_000_000, row
        assert row.speed_mps is None or 0 <= row.speed_mps <= 1000, row
        assert row.heading_deg is None or 0 <= row.heading_deg <= 360, row
        assert row.battery_pct is None or 0 <= row.battery_pct <= 100, row
        assert row.altitude_m is None or abs(row.altitude_m) < 1e9, row


async def test_hostile_owntracks_messages_are_answered_by_the_contract_and_store_no_garbage(server, engine):
    user_id, token = create_user(server)
    accepted = 0
    with httpx.Client(base_url=server.url, timeout=15, headers=basic(token)) as client:
        def post(text: str) -> None:
            nonlocal accepted
            accepted += check(client.post("/owntracks/pub", content=text.encode("utf-8", "surrogatepass")))

        for text, _ in hostile.sweep(hostile.owntracks_fields, hostile.SHARP):
            post(text)

        @hostile.FUZZ
        @given(spoiled=hostile.spoiled(hostile.owntracks_fields()), raw=st.binary(max_size=300), pick=st.booleans())
        def attack(spoiled, raw, pick):
            nonlocal accepted
            if pick:
                post(spoiled[0])
            else:
                accepted += check(client.post("/owntracks/pub", content=raw))

        attack()
    await assert_nothing_garbage(engine, user_id, accepted)


TEXTS = st.one_of(hostile.FRAGMENTS.map(lambda text: text.strip('"')[:3000]),
                  st.text(max_size=40), st.sampled_from(["", "-1", "1e999", "nan", "25.1,121.5", "sos"]))


async def test_hostile_osmand_reports_are_answered_by_the_contract_and_store_no_garbage(server, engine):
    user_id, token = create_user(server)
    external_id = register(server, token)["external_id"]
    accepted = 0
    with httpx.Client(base_url=server.url, timeout=15) as client:
        for name in [*hostile.osmand_params(external_id), "location"]:
            for value in [*hostile.SHARP, None]:
                params = hostile.osmand_params(external_id)
                if value is None:
                    params.pop(name, None)
                else:
                    params[name] = value.strip('"')[:3000]
                accepted += check(client.get("/osmand", params=params))

        @hostile.FUZZ
        @given(changes=st.dictionaries(st.sampled_from([*hostile.osmand_params("x"), "location", "deviceid"]),
                                       TEXTS, max_size=4),
               how=st.sampled_from(["query", "form", "json", "raw"]), raw=st.binary(max_size=300),
               coords=st.dictionaries(st.sampled_from(["latitude", "longitude", "speed", "heading", "accuracy"]),
                                      st.one_of(st.floats(), st.integers(), st.text(max_size=5), st.none())))
        def attack(changes, how, raw, coords):
            nonlocal accepted
            params = hostile.osmand_params(external_id) | {name: value for name, value in changes.items()
                                                           if name not in ("id", "alarm")}
            if how == "query":
                response = client.get("/osmand", params=params)
            elif how == "form":
                response = client.post("/osmand", data=params)
            elif how == "json":
                body = traccar_json(external_id, timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
                body["location"]["coords"] |= coords
                response = client.post("/osmand", content=httpx.Request("POST", "/", json=body).content.replace(
                    b"Infinity", b"1e999"), headers={"Content-Type": "application/json"})
            else:
                response = client.post("/osmand", content=raw, headers={"Content-Type": "application/json"})
            accepted += check(response)

        attack()
    await assert_nothing_garbage(engine, user_id, accepted)
