"""An SOS in a form the contract does not promise to read is still raised (DESIGN rule 3):
bytes that are not UTF-8, a binary frame. And one alert that cannot be shown never hides
the others from the consoles."""

import json
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import httpx
import pytest

from server.alerts import view as alertview
from tests.servers import bearer, connect_phone, create_user, sos_frame, until_type
from tests.test_sos import _note_and_suspect, alert_rows


async def test_an_http_sos_whose_note_is_not_utf8_is_stored(server, engine):
    _, token = create_user(server)
    body = b'{"sos_id":"%s","lat":25.0339,"lon":121.5645,"note":"help \xff me"}' % str(uuid.uuid4()).encode()
    response = httpx.post(f"{server.url}/v1/sos", content=body, headers={**bearer(token),
                          "Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 201, response.text
    note, _ = await _note_and_suspect(engine, response.json()["alert_id"])
    assert note == "help \ufffd me"


@pytest.mark.parametrize(("before", "after"), [(b"", b"\xff"), (b"\xef\xbb\xbf", b""), (b"", b' {"more": 1}')])
async def test_an_http_sos_with_a_byte_order_mark_or_bytes_after_it_is_stored(server, before, after):
    _, token = create_user(server)
    body = before + b'{"sos_id":"%s","lat":25.0339,"lon":121.5645}' % str(uuid.uuid4()).encode() + after
    response = httpx.post(f"{server.url}/v1/sos", content=body, headers={**bearer(token),
                          "Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 201, response.text


async def test_an_sos_sent_as_a_binary_frame_is_acknowledged(server, engine):
    user_id, token = create_user(server)
    ws, _ = await connect_phone(server, token)
    frame = sos_frame()
    await ws.send(json.dumps(frame).encode())
    ack = await until_type(ws, "sos_ack")
    assert ack["sos_id"] == frame["sos_id"]
    await ws.send(b'{"type":"ping"}')  # any other binary frame is still refused
    assert (await until_type(ws, "error"))["code"] == "bad_json"
    await ws.close()
    assert len(await alert_rows(engine, user_id)) == 1


def _row(alert_id: str, *, visible_precincts) -> SimpleNamespace:
    now = datetime.now(UTC)
    return SimpleNamespace(
        alert_id=alert_id, user_id=uuid.uuid4(), status="open", duress=False, opened_at=now, updated_at=now,
        ended_at=None, user_name="Ann", user_phone="+886912345678", lat=None, lon=None, accuracy_m=None,
        fix_ts=None, quality="unknown", suspect=None, precinct_id=None, precinct_name=None, out_of_area=False,
        trip_id=None, trip_kind=None, trip_track_lat=None, trip_track_lon=None, trip_track_acc=None,
        trip_track_ts=None, track_lat=None, track_lon=None, track_acc=None, track_ts=None, note_authors=None,
        note_texts=None, note_times=None, notes_omitted=0, note=None, escalation_level=0, acknowledged_by=None,
        resolved_by=None, outcome=None, visible_precincts=visible_precincts, phone_status="open", repeats=0,
        reason="sos")


@pytest.mark.no_services
def test_an_alert_that_cannot_be_shown_is_left_out_and_the_others_are_shown():
    good = _row("good", visible_precincts=["xinyi"])
    broken = _row("broken", visible_precincts=None)  # a value the schema forbids
    try:
        alertview.view_of(good)
    except (AttributeError, KeyError) as missing:  # the view reads a field this stand-in row lacks
        pytest.fail(f"the test's row is out of date with view_of: {missing!r}")
    assert [view.alert["alert_id"] for view in alertview.views_of([broken, good])] == ["good"]
