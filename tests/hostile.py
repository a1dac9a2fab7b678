"""Hostile input for the wire, as hypothesis strategies: JSON text, since much of what matters
(nesting 1,000 deep, duplicate keys, integers past 64 bits, NaN) is text no encoder writes.

`GUARDIAN_FUZZ_EXAMPLES` sets how many examples each fuzz test tries (a soak sets it high).
"""

import json
import os
import time
import uuid
from collections.abc import Callable

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
# One of each kind, for the surfaces where each input costs a commit (an SOS).
SHARP = [str(2**63), "9" * 400, "-" + "9" * 400, "1e308", "-0.0", "NaN", '"a\\u0000b"', '"\\ud800"',
         '"9999-12-31T23:30:00-01:00"', '"0001-01-01T00:00:00Z"', "true", "null", "{}", '"x"', *DEEP,
         '"' + "x" * 60_000 + '"']
# The few that broke an SOS over HTTP before (each SOS costs a commit, and the socket's sweep
# already tries every value through the same rules).
FEW = ["9" * 400, '"a\\u0000b"', '"\\ud800"', '"9999-12-31T23:30:00-01:00"', DEEP[0], "NaN"]
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


def trip_fields() -> dict[str, str]:
    """A taxi check-in that replaces whatever trip runs, so every valid one is answered `trip_started`."""
    eta = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1800))
    return {"kind": '"taxi"', "plate": '"ABC-1234"', "driver_name": '"Chen Wei"',
            "vehicle": '{"make":"Toyota","colour":"yellow"}', "destination": '{"lat":25.04,"lon":121.51}',
            "eta": _quoted(eta), "replace": "true",
            "planned_route": '{"type":"LineString","coordinates":[[121.5,25.0],[121.51,25.01]]}'}


TRIP_FRAMES = {
    "trip_start": trip_fields,
    "trip_end": lambda: {"trip_id": _quoted(str(uuid.uuid4()))},
    "safe": lambda: {"trip_id": _quoted(str(uuid.uuid4())), "pin": '"1234"', "extend_s": "600"},
}


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


KINDS = ("ping", "batch", "sos", "sos_cancel", "hello", *TRIP_FRAMES)


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
              "hello": lambda: {"token": '"not-a-token"'}, **TRIP_FRAMES}[kind]()
    text, name = draw(spoiled(with_type(kind, fields)))
    return text, kind, name


def sweep(make_fields: Callable[[], dict[str, str]], values: list[str] = BOUNDARY, *, extra: bool = True):
    """Every field (and one extra) replaced by every boundary value, and each field dropped:
    (JSON text, the field spoiled), deterministic, for the systematic half of a fuzz test.
    `make_fields` makes the good object afresh for each (a new seq, a new sos_id). Without
    `extra` (where a valid body is costly: a PIN hashed), no field is added."""
    for name in [*make_fields(), *(["extra"] if extra else [])]:
        for fragment in [*values, None]:
            fields = make_fields()
            if fragment is None:
                fields.pop(name, None)
            else:
                fields[name] = fragment
            yield text_of(fields), name


def phone_sweep(seqs):
    """`sweep` over every phone frame of the contract (a batch's ping spoiled inside it):
    (text, kind, field); pings take their seq from the iterator `seqs`."""
    makers = {"ping": lambda: with_type("ping", ping_fields(next(seqs))),
              "batch": lambda: ping_fields(next(seqs)),
              "sos": lambda: with_type("sos", sos_fields()),
              "sos_cancel": lambda: with_type("sos_cancel", {"alert_id": _quoted(str(uuid.uuid4())), "pin": '"1234"'}),
              "hello": lambda: with_type("hello", {"token": '"not-a-token"'}),
              **{kind: (lambda kind=kind, make=make: with_type(kind, make())) for kind, make in TRIP_FRAMES.items()}}
    for kind, make_fields in makers.items():
        # An SOS or a check-in commits: fewer values, so the sweep stays within its time on a busy machine.
        values = {"sos": SHARP, "trip_start": FEW}.get(kind, BOUNDARY)
        for text, name in sweep(make_fields, values):
            yield (f'{{"type":"batch","pings":[{text}]}}' if kind == "batch" else text), kind, name


def owntracks_fields() -> dict[str, str]:
    """An OwnTracks `_type: location` (owntracks.org/booklet/tech/json), as (key, JSON text)."""
    return {"_type": '"location"', "lat": "25.0339", "lon": "121.5645", "tst": str(int(time.time())), "acc": "5",
            "alt": "13", "vac": "3", "vel": "36", "cog": "270", "batt": "41", "bs": "1", "tid": '"JJ"', "t": '"u"'}


def osmand_params(external_id: str) -> dict[str, str]:
    """A Traccar Client (OsmAnd protocol) report, as query or form values."""
    return {"id": external_id, "timestamp": str(int(time.time())), "lat": "25.0339", "lon": "121.5645",
            "speed": "10.0", "bearing": "45.5", "altitude": "12.0", "accuracy": "8.0", "batt": "77.0",
            "charge": "true"}
