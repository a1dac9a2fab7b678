"""schemathesis against the server's own OpenAPI document: no operation answers 5xx, and every
answer (status, body, content type, headers) is the one the document declares.

The document is the app's own, built without serving (no I/O); the requests go to a real
server. `GUARDIAN_FUZZ_EXAMPLES` sets the examples per operation, as for the wire's fuzz tests.
(schemathesis' lazy `from_fixture` needs a pytest internal that pytest 9 no longer has.)
"""

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from server.app import create_app
from server.core.config import Settings
from tests import hostile
from tests.servers import PASSWORD, add_staff, bearer, create_user

schema = schemathesis.openapi.from_dict(create_app(Settings(database_url="postgresql+asyncpg://unused/")).openapi())
STAFF_PATHS = ("/v1/console/", "/v1/officer/")
# Each valid request hashes or verifies a PIN or password (argon2, tens of ms by design).
HASHING = ["PUT /v1/me/pins", "POST /v1/console/login"]
# Rules across fields, or of the calendar, that a JSON Schema cannot state: a body or query the
# document allows may still be refused there (422), so only those operations skip that check.
CROSS_FIELD = {"PUT /v1/me/pins": "the duress PIN must differ from the PIN",
               "GET /v1/me/track": "from <= to, and a real date in years 1..9999 in UTC",
               "POST /v1/devices": "the shortest device id is the deployment's setting; an id is registered once",
               "POST /v1/trips": "a plate's form, times ahead of now, a hike's expected_return, a walk's eta, "
                                 "a multipart check-in's `trip` part is JSON"}


@pytest.fixture
async def officer_token(server, engine) -> str:
    await add_staff(engine, "schema-officer", role="officer")
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.post("/v1/console/login", json={"username": "schema-officer", "password": PASSWORD})
    return response.json()["token"]


@pytest.fixture
def device_token(server) -> str:
    return create_user(server, name="Schema", phone="+886987654321")[1]


def call_and_validate(case, server, request) -> None:
    token = request.getfixturevalue("officer_token" if case.path.startswith(STAFF_PATHS) else "device_token")
    excluded = [positive_data_acceptance] if case.operation.label in CROSS_FIELD else None
    case.call_and_validate(base_url=server.url, headers=bearer(token), excluded_checks=excluded)


@schema.exclude(name=HASHING).parametrize()
@settings(max_examples=max(hostile.EXAMPLES // 2, 10), deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_its_document_says_and_never_5xx(case, server, request):
    call_and_validate(case, server, request)


@schema.include(name=HASHING).parametrize()
@settings(max_examples=max(hostile.EXAMPLES // 8, 3), deadline=None, suppress_health_check=list(HealthCheck))
def test_operations_that_hash_a_secret_answer_as_their_document_says(case, server, request):
    call_and_validate(case, server, request)


@pytest.mark.no_services
def test_the_document_states_the_contracts_statuses_error_body_and_rules():
    document = create_app(Settings(database_url="postgresql+asyncpg://unused/")).openapi()
    paths, components = document["paths"], document["components"]["schemas"]
    sos = paths["/v1/sos"]["post"]
    assert {"200", "201", "400", "401", "413", "422", "503"} <= set(sos["responses"])
    assert sos["requestBody"]["content"]["application/json"]["schema"]["required"] == ["sos_id"]
    assert "requestBody" in paths["/v1/pings"]["post"]
    refusal = paths["/v1/users"]["post"]["responses"]["422"]["content"]["application/json"]["schema"]
    assert refusal == {"$ref": "#/components/schemas/ErrorBody"} and "HTTPValidationError" not in components
    assert components["Pins"]["properties"]["pin"]["pattern"] == "^[0-9]{4,8}$"
    assert "current_pin" in components["Pins"]["properties"] and "current_pin" not in components["Pins"]["required"]
    assert {"204", "403", "409", "429"} <= set(paths["/v1/me/pins"]["put"]["responses"])
    assert components["NewUser"]["properties"]["phone"]["pattern"] == components["Contact"]["properties"]["phone"][
        "pattern"] == "^\\+?[0-9][0-9 ()-]{3,18}[0-9]$"
    assert set(paths["/v1/console/precincts"]["get"]["responses"]["200"]["content"]) == {"application/geo+json"}


@pytest.mark.no_services
def test_the_document_states_the_tracker_apps_endpoints():
    paths = create_app(Settings(database_url="postgresql+asyncpg://unused/")).openapi()["paths"]
    assert {"400", "401", "413"} <= set(paths["/owntracks/pub"]["post"]["responses"])
    assert {"get", "post"} <= set(paths["/osmand"]) and "404" in paths["/osmand"]["get"]["responses"]
    assert [parameter["name"] for parameter in paths["/osmand"]["get"]["parameters"]][0] == "id"
    assert {"201", "409", "422"} <= set(paths["/v1/devices"]["post"]["responses"])
    assert "204" in paths["/v1/devices/{device_id}"]["delete"]["responses"]
