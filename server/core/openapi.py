"""What the OpenAPI document must say that FastAPI cannot infer from the routes.

The contract's error body (FastAPI would document its own 422 shape), which statuses each
route answers, the bodies of the routes that read raw bytes (`/v1/pings`, `/v1/sos`, decoded
by msgspec), and the media types that are not JSON. The suite checks the document against
the server with schemathesis (tests/test_openapi.py).
"""

from typing import Literal

from fastapi import FastAPI
from pydantic import BaseModel

from server.core import errors, wire


class ErrorBody(BaseModel):
    """Every refusal, over HTTP as on the sockets."""

    type: Literal["error"]
    code: Literal[tuple(errors.HTTP_STATUS)]  # type: ignore[valid-type]
    message: str
    field: str | None = None
    seq: int | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    retry_after_ms: int | None = None


WHY = {400: "not JSON (`bad_json`)", 401: "no valid credential (`unauthorized`)", 403: "not allowed (`forbidden`)",
       404: "no such thing (`not_found`)", 409: "conflicts with the current state (`conflict`)",
       413: "the body is too large (`too_large`)", 422: "a field is refused (`invalid_field`, with `field`)",
       429: "too many; resend later (`rate_limited`)", 503: "storage unavailable; resend (`unavailable`)"}


RETRY_AFTER = {"Retry-After": {"description": "whole seconds, `retry_after_ms` rounded up",
                               "schema": {"type": "integer", "minimum": 0}}}


def refusals(*statuses: int) -> dict:
    """The `responses` of a route: each error status it may answer, with the contract's body."""
    return {status: {"model": ErrorBody, "description": WHY[status],
                     **({"headers": RETRY_AFTER} if status == 429 else {})} for status in statuses}


def install(app: FastAPI) -> None:
    """The document states what the body bound (server/core/bodysize.py) answers: 413 on every
    operation that takes a body, whatever its route declares."""
    build = app.openapi

    def document() -> dict:
        if app.openapi_schema is None:
            paths = build()["paths"]
            for operation in (operation for item in paths.values() for operation in item.values()):
                if "requestBody" in operation:
                    operation["responses"].setdefault("413", {"description": WHY[413], "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
        return app.openapi_schema

    app.openapi = document


def body(schema: dict) -> dict:
    """`openapi_extra` for a route that reads its JSON body itself."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


NUMBER = {"type": "number"}
PING = {
    "type": "object", "required": ["seq", "ts", "lat", "lon"],
    "properties": {
        "seq": {"type": "integer", "minimum": 0, "maximum": wire.MAX_SEQ},
        "ts": {"description": "epoch milliseconds or RFC 3339 with a zone",
               "oneOf": [{"type": "integer", "minimum": 0, "maximum": wire.MAX_EPOCH_MS},
                         {"type": "string", "format": "date-time"}]},
        "lat": NUMBER, "lon": NUMBER, "acc": NUMBER, "alt": NUMBER, "speed": NUMBER, "heading": NUMBER,
        "battery": NUMBER,
    },
    "description": "a ping that fails a rule is refused alone, in the answer's `errors`",
}
# Each item is judged alone: one of Ping's shape is stored, anything else is answered in the
# ack's `errors`, never refusing the batch (so the item schema is Ping, or anything).
ITEM = {"anyOf": [PING, {}]}
PINGS_BODY = body({"oneOf": [
    {"type": "object", "required": ["pings"], "properties": {"pings": {"type": "array", "items": ITEM}}},
    {"type": "array", "items": ITEM},
]})
# Only sos_id can refuse an SOS: whatever the other fields hold is salvaged and annotated.
SOS_BODY = body({
    "type": "object", "required": ["sos_id"],
    "properties": {
        "sos_id": {"type": "string", "format": "uuid", "description": "made by the phone; a retry sends it again"},
        "ts": {"description": "epoch milliseconds or RFC 3339; anything else is annotated `bad_ts`"},
        "lat": {"description": "degrees; anything unusable falls back to the last known location"},
        "lon": {"description": "degrees"}, "acc": {"description": "metres"},
        "note": {"description": f"text, kept to {wire.NOTE_MAX_CHARS} characters"},
    },
})
TRIP = {
    "type": "object", "required": ["kind"],
    "properties": {
        "kind": {"enum": ["taxi", "hike", "walk"]},
        "plate": {"type": "string", "description": "a taxi's licence plate, e.g. ABC-1234 (required for a taxi)"},
        "driver_name": {"type": "string"}, "vehicle": {"type": "object", "properties": {
            "make": {"type": "string"}, "colour": {"type": "string"}}},
        "destination": {"type": "object", "required": ["lat", "lon"], "properties": {"lat": NUMBER, "lon": NUMBER}},
        "eta": {"description": "epoch milliseconds or RFC 3339, ahead (required for a walk)"},
        "expected_return": {"description": "epoch milliseconds or RFC 3339, ahead (required for a hike)"},
        "planned_route": {"type": "object", "description": "a GeoJSON LineString, at most 10,000 positions"},
        "replace": {"type": "boolean", "description": "end the unfinished trip and start this one"},
    },
}
# JSON, or multipart with the check-in as its `trip` part and a GPX or GeoJSON file as its `route` part.
TRIP_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": TRIP},
    "multipart/form-data": {"schema": {"type": "object", "required": ["trip"], "properties": {
        "trip": {"type": "string", "description": "the check-in as JSON"},
        "route": {"type": "string", "format": "binary", "description": "a GPX or GeoJSON file, at most 5 MiB"}}}},
}}}
ACK = {"description": "the cumulative ack and the refusals of single pings", "content": {"application/json": {
    "schema": {"type": "object", "required": ["type", "seq", "errors"], "properties": {
        "type": {"const": "ack"}, "seq": {"type": "integer"},
        "errors": {"type": "array", "items": {"$ref": "#/components/schemas/ErrorBody"}}}}}}}
SOS_ACK = {"type": "object", "required": ["type", "sos_id", "alert_id", "status"], "properties": {
    "type": {"const": "sos_ack"}, "sos_id": {"type": "string"}, "alert_id": {"type": "string"},
    "status": {"type": "string"}}}
GEOJSON = {"content": {"application/geo+json": {"schema": {"type": "object"}}}}
TRACK = {"content": {"application/geo+json": {"schema": {"type": "object"}},
                     "application/gpx+xml": {"schema": {"type": "string"}}}}
