"""Hostile input for the wire, as hypothesis strategies: JSON text, since much of what matters
(nesting 1,000 deep, duplicate keys, integers past 64 bits, NaN) is text no encoder writes.

`GUARDIAN_FUZZ_EXAMPLES` sets how many examples each fuzz test tries (a soak sets it high).
"""

import json
import os
import time
import uuid

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("GUARDIAN_FUZZ_EXAMPLES", "40"))
# The fixtures (a server, a socket) are meant to outlive the examples; each example is
# bounded by the test's own timeouts, not hypothesis' deadline.
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

DEEP = ["[" * 1000 + "]" * 1000, '{"a":' * 1000 + "1" + "}" * 1000]
BOUNDARY = [
    str(2**63 - 1), str(2**63), str(2**64), str(-(2**63) - 1), "9" * 400, "-" + "9" * 400,
    "1e308", "-1e308", "1e999", "-0.0", "5e-324", "NaN", "Infinity", "-Infinity", "0", "-1",
    '"\\u0000"', '"a\\u0000b"', '"\\ud800"', '"x\\udfff"', '"\\ud83d\\ude00"',
    '"9999-12-31T23:30:00-01:00"', '"0001-01-01T00:30:00+01:00"', '"9999-12-31T23:59:59.999Z"',
    '"0001-01-01T00:00:00Z"', '"2026-11-21T00:00:00"', '"\u00b2"', '"1\u00b2"',
    "true", "false", "null", "[]", "{}", '""', '"x"', "[1,2]", '{"lat":1}',
    *DEEP,
    '"' + "x" * 60_000 + '"',
]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10)
FRAGMENTS = st.one_of(
    st.sampled_from(BOUNDARY),
    JSON_VALUES.map(lambda value: json.dumps(value, allow_nan=True)),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)


def now_ms() -> int:
    return int(time.time() * 1000)


def _quoted(text: str) -> str:
    return json.dumps(text)


def ping_fields(seq: int) -> dict[str, str]:
    return {"seq": str(seq), "ts": str(now_ms()), "lat": "25.0339", "lon": "121.5645", "acc": "8.0",
            "alt": "10.0", "speed": "1.5", "heading": "90.0", "battery": "80.0"}


def sos_fields() -> dict[str, str]:
    return {"sos_id": _quoted(str(uuid.uuid4())), "ts": str(now_ms()), "lat": "25.0339", "lon": "121.5645",
            "acc": "8.0", "note": '"help"'}


def text_of(fields: dict[str, str]) -> str:
    """A JSON object from (key, JSON text) pairs; a key may repeat (`key#2` is `key` again)."""
    return "{" + ",".join(f"{_quoted(key.split('#')[0])}:{value}" for key, value in fields.items()) + "}"


@st.composite
def spoiled(draw, fields: dict[str, str]) -> tuple[str, str]:
    """The object with one field replaced, repeated with another value, dropped or added:
    (its JSON text, the name of the field spoiled)."""
    name = draw(st.sampled_from([*fields, "extra"]))
    how = draw(st.sampled_from(["replace", "replace", "repeat", "drop"]))
    fragment = draw(FRAGMENTS)
    fields = dict(fields)
    if how == "drop":
        fields.pop(name, None)
    elif how == "repeat" and name in fields:
        fields[f"{name}#2"] = fragment
    else:
        fields[name] = fragment
    return text_of(fields), name


def with_type(kind: str, fields: dict[str, str]) -> dict[str, str]:
    return {"type": _quoted(kind), **fields}


KINDS = ("ping", "batch", "sos", "sos_cancel", "hello")


@st.composite
def phone_frames(draw, seq: int = 1) -> tuple[str, str, str]:
    """(frame text, its kind, the field spoiled) for every phone frame of the contract; a batch's
    one ping is spoiled inside it. Pings carry `seq` unless their seq is the field spoiled."""
    kind = draw(st.sampled_from(KINDS))
    if kind == "batch":
        ping, name = draw(spoiled(ping_fields(seq)))
        return f'{{"type":"batch","pings":[{ping}]}}', kind, name
    fields = {"ping": lambda: ping_fields(seq), "sos": sos_fields,
              "sos_cancel": lambda: {"alert_id": _quoted(str(uuid.uuid4())), "pin": '"1234"'},
              "hello": lambda: {"token": '"not-a-token"'}}[kind]()
    text, name = draw(spoiled(with_type(kind, fields)))
    return text, kind, name
