"""Licence plates as a rider types them, in one canonical form.

The canonical form is 2 to 8 upper-case ASCII letters and digits, in groups joined by
single dashes: `ABC-1234`, `AB-1234`, `1234-AB`, `ABC-123`, `12-3456`, `AB12CD`. The
groups are the ones the rider separated with a space, a dash or a dot (one between two
groups, none at either end), with one exception: a plate typed with no separator at all
that is one run of letters and one run of digits, in either order, is split between
the two (`abc1234` and `ABC 1234` are both `ABC-1234`, `1234ab` is `1234-AB`). Typed
without a separator, any other plate stays one group (`ab12cd` is `AB12CD`).

The text is NFKC-normalised first, so full-width forms read as their ASCII letters,
digits, dash and space (`ＡＢＣ－１２３４` is `ABC-1234`), and spaces around it are
ignored. Anything else is refused: other punctuation or control characters, letters
that are not Latin A to Z after NFKC, fewer than 2 or more than 8 letters and digits.
"""

import re
import unicodedata

MIN_CHARACTERS = 2
MAX_CHARACTERS = 8
# Longer input is no plate however it is spaced, and is not worth normalising.
MAX_INPUT_CHARS = 64

_SEPARATED = re.compile(r"[A-Z0-9]+(?:[ .-][A-Z0-9]+)*")
_SEPARATOR = re.compile(r"[ .-]")
_TWO_RUNS = re.compile(r"([A-Z]+)([0-9]+)|([0-9]+)([A-Z]+)")


def normalise(raw: object) -> str | None:
    """The canonical form of a typed plate (see the module), or None: not a plate."""
    if not isinstance(raw, str) or len(raw) > MAX_INPUT_CHARS:
        return None
    text = unicodedata.normalize("NFKC", raw).strip(" ")
    # ASCII before upper-casing: "ı".upper() is "I", "ß".upper() is "SS".
    if not text.isascii():
        return None
    text = text.upper()
    if not _SEPARATED.fullmatch(text):
        return None
    groups = _SEPARATOR.split(text)
    if not MIN_CHARACTERS <= sum(map(len, groups)) <= MAX_CHARACTERS:
        return None
    if len(groups) == 1 and (runs := _TWO_RUNS.fullmatch(text)):
        groups = [run for run in runs.groups() if run]
    return "-".join(groups)
