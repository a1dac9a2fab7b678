"""A fix from a tracker app (OwnTracks, Traccar Client), made a ping of the wire and stored
through `pings.submit`, the one path every HTTP fix takes (geo rules, group commit, hot
state, consoles during an alert, trips, watchers).

Units become the wire's (km/h and knots to m/s, a 0..1 battery level to percent). Each
tracker streams under a device id of its own, never the app's: the app resumes from the
highest seq stored under its device (`history.acked_seq`), and a tracker's seqs, taken from
its fixes' times, would pass every seq the app will ever send and lose its unsent pings.

The seq is the fix's device time in epoch milliseconds: the same fix resent (OwnTracks
flushes its queue after an outage, Traccar Client its buffer) is the same (device, seq) and
stored once (DESIGN rule 5). Trackers send fixes repeated and out of order; the ledger
settles entries in arrival order whatever their seqs, and nothing here reads its
cumulative ack. Two different fixes of one tracker within the same millisecond (the same
second for OwnTracks, whose `tst` is in seconds) are one: the first is kept.
"""

import math
import re
import uuid
from typing import TYPE_CHECKING

from server.accounts.auth import Device
from server.core import refusals, wire
from server.phones import pings

if TYPE_CHECKING:
    from server.services import Services

KMH_TO_MPS = 1 / 3.6
KNOTS_TO_MPS = 1852 / 3600
# Seconds below this are seconds, from it milliseconds (2**31 s is 2038; 2**31 ms is 1970-01-25).
FIRST_EPOCH_MS = 2**31
# A decimal number as trackers write one in a query or form: no NaN, no Infinity, no '1_000'.
DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
DIGITS = re.compile(r"[0-9]{1,18}")


def owntracks_device(device: Device) -> Device:
    """The device OwnTracks streams under: derived from the token's device, fixed for it."""
    return Device(uuid.uuid5(device.device_id, "owntracks"), device.user_id)


def ping(*, ts_ms: int, lat: float, lon: float, **measures: float | None) -> wire.PingFields:
    """The wire's ping of a fix (`measures` by their wire names: acc, alt, speed, heading,
    battery), its seq its device time in epoch ms."""
    return wire.PingFields(seq=ts_ms, ts=ts_ms, lat=lat, lon=lon, **measures)


def number(value: object, *, field: str) -> float | None:
    """A JSON number, or a decimal in text (a query or form value); None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        if not DECIMAL.fullmatch(value):
            raise refusals.InvalidField(f"{field} is not a decimal number", field=field)
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise refusals.InvalidField(f"{field} must be a number", field=field)
    try:
        return float(value)
    except OverflowError:
        return math.inf


def epoch_ms(value: object, *, field: str, seconds_only: bool = False) -> int:
    """A fix time as epoch ms: integer seconds, integer milliseconds (from 2**31), or an ISO 8601
    time with a zone (a zone-less one would have to be guessed, and misplace the fix by hours)."""
    if isinstance(value, str) and DIGITS.fullmatch(value):
        value = int(value)
    if type(value) is int:
        moment_ms = value * 1000 if seconds_only or value < FIRST_EPOCH_MS else value
        return wire.epoch_ms(wire.parse_time(moment_ms, field=field))
    if isinstance(value, str) and not seconds_only:
        return wire.epoch_ms(wire.parse_time(value, field=field))
    raise refusals.InvalidField(f"{field} must be epoch seconds" + ("" if seconds_only else
                                ", milliseconds or an ISO 8601 time with a zone"), field=field)


async def store(*, services: "Services", device: Device, fixes: list[wire.PingFields], names: dict[str, str]) -> None:
    """Store the fixes through the one ping path, once committed. Raises refusals.Refusal:
    the first fix refused, named as the app names its field (`names`: wire name → app's)."""
    settled = await pings.submit(services=services, device=device, pings=fixes)
    if settled.refused:
        refusal = settled.refused[0]
        field = names.get(refusal.field, refusal.field) if refusal.field else None
        message = refusal.message if field == refusal.field else f"{field}: {refusal.message}"
        raise type(refusal)(message, field=field)
