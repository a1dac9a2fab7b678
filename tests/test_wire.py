"""server.core.wire: every malformed frame maps to the contract's error code, no services."""

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given

from geo import rules
from server.alerts import service as alerts
from server.core import fields, jsontext, refusals, wire
from tests import hostile

pytestmark = pytest.mark.no_services

GOOD = '{"type":"ping","seq":1,"ts":1790000000000,"lat":25.03,"lon":121.56}'


@pytest.mark.parametrize(
    ("frame", "code", "field", "seq"),
    [
        ("not json", "bad_json", None, None),
        ('{"type":"ping","seq":1,"ts":1,"lat":NaN,"lon":0}', "bad_json", None, None),
        ('{"type":"ping","seq":1,"ts":1,"lat":Infinity,"lon":0}', "bad_json", None, None),
        ('{"type":"ping","seq":1,"ts":1,"lat":1e999,"lon":0}', "invalid_field", "lat", 1),
        ("[1, 2]", "invalid_field", None, None),
        ('"ping"', "invalid_field", None, None),
        ('{"type":"teleport"}', "unknown_type", "type", None),
        ('{"seq":1}', "unknown_type", "type", None),
        ('{"type":"ping","seq":-1,"ts":1,"lat":0,"lon":0}', "invalid_field", "seq", None),
        ('{"type":"ping","seq":1.5,"ts":1,"lat":0,"lon":0}', "invalid_field", "seq", None),
        ('{"type":"ping","seq":"7","ts":1,"lat":0,"lon":0}', "invalid_field", "seq", None),
        ('{"type":"ping","seq":true,"ts":1,"lat":0,"lon":0}', "invalid_field", "seq", None),
        ('{"type":"ping","seq":3,"ts":1,"lat":"25","lon":0}', "invalid_field", "lat", 3),
        ('{"type":"ping","seq":3,"ts":1,"lon":0}', "invalid_field", "lat", 3),
        ('{"type":"ping","seq":3,"ts":1.5,"lat":0,"lon":0}', "invalid_field", "ts", 3),
        ('{"type":"ping","seq":3,"ts":1,"lat":0,"lon":0,"acc":"bad"}', "invalid_field", "acc", 3),
        ('{"type":"batch","pings":{}}', "invalid_field", "pings", None),
        ('{"type":"hello"}', "invalid_field", "token", None),
    ],
)
def test_bad_frames_get_the_contract_code(frame, code, field, seq):
    with pytest.raises(refusals.Refusal) as refused:
        wire.decode_frame(frame)
    assert (refused.value.code, refused.value.field, refused.value.seq) == (code, field, seq)


def test_a_good_ping_decodes_and_unknown_fields_are_ignored():
    ping = wire.decode_frame(GOOD[:-1] + ',"future_field":{"x":1}}')
    assert isinstance(ping, wire.Ping) and ping.seq == 1 and ping.lat == 25.03


def test_a_bad_ping_in_a_batch_names_its_seq():
    batch = wire.decode_frame('{"type":"batch","pings":[{"seq":4,"ts":1,"lat":"x","lon":0}]}')
    with pytest.raises(refusals.Refusal) as refused:
        wire.decode_ping(batch.pings[0])
    assert (refused.value.field, refused.value.seq) == ("lat", 4)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        (1_790_000_000_123, datetime(2026, 9, 21, 14, 13, 20, 123_000, tzinfo=UTC)),
        ("2026-11-21T08:00:00+08:00", datetime(2026, 11, 21, 0, 0, tzinfo=UTC)),
        ("2026-11-21T00:00:00Z", datetime(2026, 11, 21, 0, 0, tzinfo=UTC)),
    ],
)
def test_times_are_epoch_ms_or_rfc3339_with_a_zone(value, expected):
    assert wire.parse_time(value) == expected


@pytest.mark.parametrize("value", ["2026-11-21T00:00:00", "yesterday", -1, 10**18])
def test_times_without_zone_or_out_of_range_are_refused(value):
    with pytest.raises(refusals.Refusal) as refused:
        wire.parse_time(value)
    assert refused.value.field == "ts"


def test_server_times_are_rfc3339_utc():
    assert wire.format_time(datetime(2026, 11, 21, tzinfo=UTC)) == "2026-11-21T00:00:00Z"


@pytest.mark.parametrize("value", [0, 1, 1_790_000_000_123, wire.MAX_EPOCH_MS])
def test_epoch_ms_is_the_inverse_of_parse_time(value):
    assert wire.epoch_ms(wire.parse_time(value)) == value


SOS_ID = "6f1c2d3e-0000-4000-8000-000000000001"
DEEP = "[" * 1000 + "]" * 1000  # 2 KB of brackets: past any recursive reader's depth


def test_a_seq_past_bigint_is_refused_and_the_largest_bigint_is_accepted():
    with pytest.raises(refusals.Refusal) as refused:
        wire.decode_frame(GOOD.replace('"seq":1', f'"seq":{2**63}'))
    assert (refused.value.code, refused.value.field) == ("invalid_field", "seq")
    assert wire.decode_frame(GOOD.replace('"seq":1', f'"seq":{2**63 - 1}')).seq == 2**63 - 1
    assert wire.seq_of(f'{{"seq":{2**63}}}') is None, "a refusal never names a seq storage cannot hold"


@pytest.mark.parametrize("value", ["9999-12-31T23:30:00-01:00", "0001-01-01T00:30:00+01:00",
                                   # asyncpg would store these two as -infinity and infinity
                                   "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"])
def test_times_past_the_calendars_edge_in_utc_are_refused_not_raised(value):
    with pytest.raises(refusals.Refusal) as refused:
        wire.parse_time(value)
    assert (refused.value.code, refused.value.field) == ("invalid_field", "ts")


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59.999+00:00", "0001-01-01T00:00:00.001Z"])
def test_times_at_the_calendars_edge_are_accepted(value):
    assert wire.parse_time(value).tzinfo is UTC


def test_a_frame_nested_1000_deep_is_read_with_its_deep_values_as_null():
    ping = wire.decode_frame(GOOD[:-1] + f',"extra":{DEEP}}}')
    assert isinstance(ping, wire.Ping) and ping.seq == 1
    with pytest.raises(refusals.Refusal) as refused:
        wire.decode_frame(GOOD.replace('"lat":25.03', f'"lat":{DEEP}'))
    assert (refused.value.code, refused.value.field, refused.value.seq) == ("invalid_field", "lat", 1)
    batch = wire.decode_frame(f'{{"type":"batch","pings":[{GOOD[:-1]},"x":{DEEP}}}]}}')
    assert wire.decode_ping(batch.pings[0]).seq == 1
    assert wire.decode_batch(f'{{"pings":[{DEEP}]}}') is not None
    with pytest.raises(refusals.Refusal):
        wire.decode_ping(DEEP)


@pytest.mark.parametrize("decode, frame", [
    (wire.decode_frame, f'{{"type":"sos","sos_id":"{SOS_ID}","lat":{DEEP},"lon":1,"note":"ok"}}'),
    (wire.decode_sos, f'{{"sos_id":"{SOS_ID}","extra":{DEEP},"note":"ok"}}'),
])
def test_an_sos_nested_1000_deep_is_read_not_raised(decode, frame):
    sos = decode(frame)
    assert (sos.sos_id, sos.note) == (SOS_ID, "ok")


def test_shallow_counts_no_bracket_inside_a_string_and_keeps_the_rest():
    nested = '{"a":' + "[" * 40 + '"]]\\"[["' + "]" * 40 + ',"b":"}"}'
    cut = jsontext.shallow(nested)
    assert cut.endswith(b',"b":"}"}') and cut.count(b"null") == 1
    assert jsontext.shallow(GOOD) == GOOD.encode()


def test_an_sos_with_a_400_digit_lat_is_salvaged_with_an_infinite_lat():
    sos = wire.decode_frame(f'{{"type":"sos","sos_id":"{SOS_ID}","lat":{"9" * 400},"lon":{"-" + "9" * 400}}}')
    assert (sos.lat, sos.lon) == (float("inf"), float("-inf")), "for the rules to refuse, and annotate"


def test_the_salvage_names_what_it_could_not_read():
    sos = wire.decode_frame(f'{{"type":"sos","sos_id":"{SOS_ID}","lat":"25","lon":121.5,"ts":1.5,'
                            f'"note":"{"n" * 1001}"}}')
    assert (sos.lat, sos.lon, sos.ts, len(sos.note)) == (None, 121.5, None, 1000)
    assert sos.salvaged == ("unreadable_lat", "unreadable_ts", "note_truncated")
    assert wire.decode_sos(f'{{"sos_id":"{SOS_ID}","note":{{"a":1}}}}').salvaged == ("unreadable_note",)


@pytest.mark.parametrize("decode, frame", [
    (wire.decode_frame, f'{{"type":"sos","sos_id":"{SOS_ID}","salvaged":["forged"]}}'),
    (wire.decode_sos, f'{{"sos_id":"{SOS_ID}","salvaged":["forged"]}}'),
])
def test_a_client_cannot_write_the_salvage_annotations(decode, frame):
    assert decode(frame).salvaged == ()


CONTRACT_CODES = {"bad_json", "unknown_type", "invalid_field", "too_large", "rate_limited", "unauthorized",
                  "forbidden", "not_found", "conflict"}


def _storable_ping(ping: wire.PingFields) -> None:
    assert 0 <= ping.seq <= wire.MAX_SEQ
    try:
        fix = wire.to_fix(ping)
    except refusals.Refusal as refusal:
        assert refusal.code == "invalid_field"
        return
    if rules.refusal(fix) is None:
        assert all(math.isfinite(value) for value in (fix.lat, fix.lon, fix.accuracy_m or 0.0, fix.altitude_m or 0.0,
                                                      fix.speed_mps or 0.0, fix.heading_deg or 0.0,
                                                      fix.battery_pct or 0.0))


@hostile.FUZZ
@given(spoiled=hostile.phone_frames())
def test_every_phone_frame_is_a_storable_frame_or_refused_with_a_contract_code(spoiled):
    text, kind, name = spoiled
    try:
        frame = wire.decode_frame(text)
    except refusals.Refusal as refusal:
        assert refusal.code in CONTRACT_CODES
        assert kind != "sos" or name in ("sos_id", "type"), "an SOS is never refused for its other fields"
        return
    if isinstance(frame, wire.Ping):
        _storable_ping(frame)
    elif isinstance(frame, wire.Batch):
        for raw in frame.pings:
            try:
                _storable_ping(wire.decode_ping(raw))
            except refusals.Refusal as refusal:
                assert refusal.code in CONTRACT_CODES
    elif isinstance(frame, wire.Sos):
        alerts.sos_fix(frame, now=datetime.now(UTC))
        note, _ = alerts.stored_note(frame)
        assert note is None or not fields.unstorable(note)
