"""server.wire: every malformed frame maps to the contract's error code, no services."""

from datetime import UTC, datetime

import pytest

from server import wire

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
    with pytest.raises(wire.FrameError) as refused:
        wire.decode_frame(frame)
    assert (refused.value.code, refused.value.field, refused.value.seq) == (code, field, seq)


def test_a_good_ping_decodes_and_unknown_fields_are_ignored():
    ping = wire.decode_frame(GOOD[:-1] + ',"future_field":{"x":1}}')
    assert isinstance(ping, wire.Ping) and ping.seq == 1 and ping.lat == 25.03


def test_a_bad_ping_in_a_batch_names_its_seq():
    batch = wire.decode_frame('{"type":"batch","pings":[{"seq":4,"ts":1,"lat":"x","lon":0}]}')
    with pytest.raises(wire.FrameError) as refused:
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
    with pytest.raises(wire.FrameError) as refused:
        wire.parse_time(value)
    assert refused.value.field == "ts"


def test_server_times_are_rfc3339_utc():
    assert wire.format_time(datetime(2026, 11, 21, tzinfo=UTC)) == "2026-11-21T00:00:00Z"


@pytest.mark.parametrize("value", [0, 1, 1_790_000_000_123, wire.MAX_EPOCH_MS])
def test_epoch_ms_is_the_inverse_of_parse_time(value):
    assert wire.epoch_ms(wire.parse_time(value)) == value
