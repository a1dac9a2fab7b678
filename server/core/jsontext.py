"""JSON text read other than by the typed decoders: when a frame failed them, to say why,
or to salvage an SOS; and bounded in depth, since every JSON reader here recurses per level.
"""

import json
import re

import msgspec

# Deeper than any frame of the contract (a GeoJSON route is 4). msgspec and the standard
# library both recurse per level and raise RecursionError near 1,000 (2 KB of brackets).
MAX_DEPTH = 32
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def shallow(raw: bytes | str) -> bytes:
    """The JSON text with every value nested deeper than MAX_DEPTH replaced by null, so that
    no reader recurses into it; brackets inside strings do not count. Iterative: for a frame
    that made a reader raise RecursionError. Text that is not JSON stays not JSON."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    kept, depth, cut_at, copied_to = [], 0, None, 0
    for token in _TOKEN.finditer(data):
        symbol = token.group()
        if symbol in (b"[", b"{"):
            depth += 1
            if depth == MAX_DEPTH + 1:
                kept.append(data[copied_to:token.start()])
                cut_at = token.start()
        elif symbol in (b"]", b"}"):
            if depth == MAX_DEPTH + 1:
                kept.append(b"null")
                copied_to, cut_at = token.end(), None
            depth -= 1
    kept.append(b"null" if cut_at is not None else data[copied_to:])
    return b"".join(kept)


# Longer integers are no usable coordinate, accuracy or time, and past 4,300 digits the
# standard library refuses the whole text: they are read as infinite instead (the rules
# then refuse or annotate the field, never the frame).
MAX_INT_DIGITS = 40


def _bounded_int(text: str) -> int | float:
    if len(text.lstrip("-")) <= MAX_INT_DIGITS:
        return int(text)
    return float("-inf") if text.startswith("-") else float("inf")


def lenient(raw: bytes | str) -> object:
    """The first JSON value of the text as the standard library reads it (NaN and Infinity
    included), None if unreadable. Bytes that are not UTF-8 are read with the bad sequences
    replaced (U+FFFD), integers too long to be of use as infinities, and what follows the
    value is ignored: what is read leniently is an SOS being salvaged."""
    if isinstance(raw, bytes | bytearray | memoryview):
        raw = bytes(raw).decode("utf-8", "replace")
    # A byte-order mark before the object, or bytes after it, leave the object readable.
    text = raw.lstrip("\ufeff \t\r\n")
    try:
        try:
            return _LENIENT.raw_decode(text)[0]
        except RecursionError:
            return _LENIENT.raw_decode(shallow(text).decode("utf-8", "replace"))[0]
    except ValueError:
        return None


_LENIENT = json.JSONDecoder(parse_int=_bounded_int)


def generic(raw: bytes | str) -> object:
    """The frame as plain Python, or None where even that fails (a number out of range)."""
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None


_MISSING = re.compile(r"missing required field `([^`]+)`(?: - at `\$\.?([^`]*)`)?")
_AT = re.compile(r" - at `\$\.?([^`]*)`")


def field_of(error: msgspec.ValidationError) -> str | None:
    """The field a msgspec validation error is about (dotted within nested objects), if it says."""
    text = str(error)
    missing = _MISSING.search(text)
    if missing:
        name, parent = missing.groups()
        return f"{parent}.{name}" if parent else name
    at = _AT.search(text)
    return at.group(1) if at else None
