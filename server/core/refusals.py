"""What the server refuses, as one tree: a base `Refusal` with the contract's error code,
one subclass per code.

Every transport answers a refusal the same way: the phone and console sockets send
`frame()` as an `error` frame and keep the socket open; HTTP answers it with the status
that `server.errors` maps its code to. Storage failures are not refusals: they are
answered `Unavailable` by whoever catches them.
"""

from typing import ClassVar


class Refusal(Exception):
    """A frame, a request or one ping of them that the server refuses."""

    code: ClassVar[str] = "invalid_field"

    def __init__(self, message: str, *, field: str | None = None, seq: int | None = None,
                 seqs: tuple[int, int] | None = None):
        """`seq`: the one refused ping. `seqs`: the first and last seq of a refused batch (an
        addition to the contract, so a phone that sends several batches knows which to resend)."""
        super().__init__(message)
        self.message = message
        self.field = field
        self.seq = seq
        self.seqs = seqs

    def frame(self) -> dict:
        body = {"type": "error", "code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        if self.seq is not None:
            body["seq"] = self.seq
        if self.seqs is not None:
            body["first_seq"], body["last_seq"] = self.seqs
        return body


class BadJson(Refusal):
    code = "bad_json"


class UnknownType(Refusal):
    code = "unknown_type"


class InvalidField(Refusal):
    code = "invalid_field"


class TooLarge(Refusal):
    code = "too_large"


class Unauthorized(Refusal):
    code = "unauthorized"


class Forbidden(Refusal):
    code = "forbidden"


class NotFound(Refusal):
    code = "not_found"


class Conflict(Refusal):
    code = "conflict"


class Unavailable(Refusal):
    """Not the client's fault: storage failed. The client retries (an SOS with the same id)."""

    code = "unavailable"


class RateLimited(Refusal):
    """`rate_limited` with `retry_after_ms`: how long until the refused request would pass."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_ms: int | None = None, **where):
        super().__init__(message, **where)
        self.retry_after_ms = retry_after_ms

    def frame(self) -> dict:
        body = super().frame()
        if self.retry_after_ms is not None:
            body["retry_after_ms"] = self.retry_after_ms
        return body


BY_CODE: dict[str, type[Refusal]] = {kind.code: kind for kind in (
    BadJson, UnknownType, InvalidField, TooLarge, Unauthorized, Forbidden, NotFound, Conflict,
    Unavailable, RateLimited)}
