"""What a client may put in a field: only what its column can store.

PostgreSQL's text refuses U+0000, and UTF-8 (asyncpg's encoding) cannot carry a lone
surrogate, which the standard library's JSON reader lets through from `\\ud800`. A
value that validation accepts and storage then refuses would fail the request after
the fact (a 500, the driver's parameters in the log), so each HTTP body field is
typed here with its column's limits, and these types are what the OpenAPI document
shows. An SOS is the exception: it is never refused, its text is cleaned instead.
"""

import re
from typing import Annotated

from pydantic import Field

# Anchored: pydantic's `pattern` is a search, so an unanchored rule accepts any text that
# merely contains a phone number. One rule for users and their contacts.
PHONE_PATTERN = r"^\+?[0-9][0-9 ()-]{3,18}[0-9]$"
PIN_PATTERN = r"^[0-9]{4,8}$"
# Text a column stores: no NUL. (pydantic already refuses a lone surrogate as no valid string.)
TEXT_PATTERN = r"^[^\x00]*$"

_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def unstorable(text: str) -> bool:
    """Whether PostgreSQL's text (or UTF-8) cannot hold this string."""
    return _UNSTORABLE.search(text) is not None


def storable(text: str) -> str:
    """The string with NUL removed and each lone surrogate replaced by U+FFFD."""
    if not unstorable(text):
        return text
    return _UNSTORABLE.sub(lambda found: "" if found.group() == "\x00" else "\ufffd", text)


def text(*, min_length: int = 0, max_length: int) -> type[str]:
    """A text field of an HTTP body, refused (422 invalid_field) when its column cannot store it."""
    return Annotated[str, Field(min_length=min_length, max_length=max_length, pattern=TEXT_PATTERN)]


Phone = Annotated[str, Field(min_length=5, max_length=20, pattern=PHONE_PATTERN,
                             description="digits, optionally a leading + and spaces, brackets or dashes")]
Pin = Annotated[str, Field(pattern=PIN_PATTERN, description="4 to 8 digits")]
