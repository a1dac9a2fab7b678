"""`POST/GET/DELETE /v1/devices`: the trackers a user registers for apps without a token of ours."""

import time
import uuid

import httpx
import pytest

from tests.servers import bearer, create_user
from tests.trackers.apps import new_external_id, register


def post_device(server, token: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/devices", json=body, headers=bearer(token), timeout=10)


def devices_of(server, token: str) -> list[dict]:
    response = httpx.get(f"{server.url}/v1/devices", headers=bearer(token), timeout=10)
    assert response.status_code == 200
    return response.json()["devices"]


async def test_a_registered_tracker_is_listed_to_its_user_only_and_removed_by_them_only(server):
    _, token = create_user(server)
    _, other = create_user(server, name="Bo")
    external_id = new_external_id()
    created = register(server, token, external_id)
    assert set(created) == {"device_id", "protocol", "external_id", "created_at"}
    assert (created["protocol"], created["external_id"]) == ("osmand", external_id)
    uuid.UUID(created["device_id"])
    assert devices_of(server, token) == [created] and devices_of(server, other) == []
    url = f"{server.url}/v1/devices/{created['device_id']}"
    assert httpx.delete(url, headers=bearer(other), timeout=10).status_code == 404, "not theirs"
    assert httpx.delete(url, headers=bearer(token), timeout=10).status_code == 204
    assert devices_of(server, token) == []
    assert httpx.delete(url, headers=bearer(token), timeout=10).status_code == 404
    assert httpx.delete(f"{server.url}/v1/devices/not-a-uuid", headers=bearer(token), timeout=10).status_code == 404


async def test_a_removed_tracker_posts_nothing_more(server):
    _, token = create_user(server)
    created = register(server, token)
    params = {"id": created["external_id"], "lat": "25.03", "lon": "121.56", "timestamp": str(int(time.time()))}
    assert httpx.get(f"{server.url}/osmand", params=params, timeout=10).status_code == 200
    httpx.delete(f"{server.url}/v1/devices/{created['device_id']}", headers=bearer(token), timeout=10)
    assert httpx.get(f"{server.url}/osmand", params=params, timeout=10).status_code == 404


async def test_an_external_id_is_registered_once_whoever_asks(server):
    _, token = create_user(server)
    _, other = create_user(server, name="Bo")
    external_id = register(server, token)["external_id"]
    for who in (token, other):
        response = post_device(server, who, {"protocol": "osmand", "external_id": external_id})
        assert (response.status_code, response.json()["code"]) == (409, "conflict")


@pytest.mark.parametrize("body, field", [
    ({"protocol": "osmand", "external_id": "48241179"}, "external_id"),  # Traccar Client's default: 8 digits
    ({"protocol": "osmand", "external_id": "x" * 129}, "external_id"),
    ({"protocol": "osmand", "external_id": "has spaces in it ok"}, "external_id"),
    ({"protocol": "osmand", "external_id": "nul\u0000" + "x" * 20}, "external_id"),
    ({"protocol": "owntracks", "external_id": "x" * 20}, "protocol"),
    ({"external_id": "x" * 20}, "protocol"),
    ({"protocol": "osmand"}, "external_id"),
])
async def test_a_short_or_unusable_external_id_is_refused(server, body, field):
    _, token = create_user(server)
    response = post_device(server, token, body)
    assert (response.status_code, response.json()["code"], response.json()["field"]) == (422, "invalid_field", field)
    assert devices_of(server, token) == []


async def test_the_minimum_id_length_is_the_deployments_choice(fresh_server):
    server = fresh_server(GUARDIAN_OSMAND_MIN_ID_LENGTH="6")
    _, token = create_user(server)
    assert post_device(server, token, {"protocol": "osmand", "external_id": "123456"}).status_code == 201
    assert post_device(server, token, {"protocol": "osmand", "external_id": "12345"}).status_code == 422


@pytest.mark.parametrize("method, path", [("GET", "/v1/devices"), ("POST", "/v1/devices"),
                                          ("DELETE", f"/v1/devices/{uuid.uuid4()}")])
async def test_the_tracker_registry_needs_a_device_token(server, method, path):
    response = httpx.request(method, f"{server.url}{path}", json={"protocol": "osmand", "external_id": "x" * 20},
                             headers=bearer("not-a-token"), timeout=10)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"


async def test_a_removed_or_erased_trackers_id_can_never_be_registered_again(server):
    """The phone that has the id keeps posting: the next to register it would follow that phone."""
    _, owner = create_user(server)
    _, stranger = create_user(server, phone="+886900000002")
    removed, erased = new_external_id(), new_external_id()
    device_id = register(server, owner, removed)["device_id"]
    register(server, owner, erased)
    assert httpx.delete(f"{server.url}/v1/devices/{device_id}", headers=bearer(owner), timeout=10).status_code == 204
    assert httpx.delete(f"{server.url}/v1/me", headers=bearer(owner), timeout=30).status_code == 204
    for external_id in (removed, erased):
        for token in (stranger,):
            answer = post_device(server, token, {"protocol": "osmand", "external_id": external_id})
            assert answer.status_code == 409 and answer.json()["field"] == "external_id", answer.text
    assert devices_of(server, stranger) == []
    assert post_device(server, stranger, {"protocol": "osmand", "external_id": new_external_id()}).status_code == 201
