"""The one place where error codes become HTTP statuses and websocket close codes."""

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from server.core import refusals

HTTP_STATUS = {
    "bad_json": 400,
    "unknown_type": 400,
    "invalid_field": 422,
    "too_large": 413,
    "rate_limited": 429,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "unavailable": 503,
}

# Websocket close codes (RFC 6455 section 7.4.1). 1009, a frame over the size limit, is
# sent by the websocket layer itself (uvicorn's ws_max_size, set from max_frame_bytes).
CLOSE_POLICY = 1008  # bad credentials, or a socket that keeps sending garbage
CLOSE_UNAVAILABLE = 1011  # storage failed: reconnect and resend from acked_seq
CLOSE_TRY_AGAIN = 1013  # a console that could not keep up, or a phone token connecting too often
CLOSE_REPLACED = 4001  # a newer socket of the same device took over: do not reconnect this one


# Tracker apps (OwnTracks, Traccar Client) tell apart only success, 400 and 401: a field they
# sent that cannot be stored is a 400 there, as Traccar's own server answers it.
TRACKER_HTTP_STATUS = {**HTTP_STATUS, "invalid_field": 400}


def response(error: refusals.Refusal, *, statuses: dict[str, int] = HTTP_STATUS,
             challenge: str = "Bearer") -> JSONResponse:
    """The contract's error body, and the headers HTTP clients act on without reading it.
    `statuses`: the route's mapping (TRACKER_HTTP_STATUS for tracker apps); `challenge`: the
    `WWW-Authenticate` of a 401 (`Basic realm="..."` where the credential is Basic auth)."""
    body, headers = error.frame(), {}
    if error.code == "unauthorized":
        headers["WWW-Authenticate"] = challenge
    if body.get("retry_after_ms") is not None:
        # Whole seconds, rounded up (RFC 9110 10.2.3): a client that waits that long passes.
        headers["Retry-After"] = str(math.ceil(body["retry_after_ms"] / 1000))
    return JSONResponse(body, status_code=statuses[error.code], headers=headers or None)


class _InputErrorsInOneLine(logging.Filter):
    """uvicorn logs a text frame that is not UTF-8 (it closes the socket 1007) with a traceback,
    each time: a client's input error, worth one line and no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and str(record.msg).startswith("Invalid UTF-8 sequence"):
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def install(app: FastAPI) -> None:
    """Every HTTP error leaves as the contract's error body; an input error logs no traceback."""
    server_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(known, _InputErrorsInOneLine) for known in server_log.filters):
        server_log.addFilter(_InputErrorsInOneLine())

    @app.exception_handler(refusals.Refusal)
    async def _frame_error(request: Request, error: refusals.Refusal) -> JSONResponse:
        return response(error)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query")]
        code = "bad_json" if first.get("type") == "json_invalid" else "invalid_field"
        return response(refusals.BY_CODE[code](first.get("msg", "invalid request"), field=".".join(location) or None))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, error: HTTPException) -> JSONResponse:
        # 400: FastAPI could not read the body (not JSON, or nested past any reader's depth).
        code = {400: "bad_json", 404: "not_found", 405: "not_found", 401: "unauthorized",
                403: "forbidden"}.get(error.status_code, "invalid_field")
        # Its headers too: a 405 must say which methods are allowed (RFC 9110): every route of the
        # path, not only the first one Starlette found (GET and POST of a path are two routes).
        headers = error.headers
        if error.status_code == 405:
            allowed = {method for route in request.app.router.routes
                       if getattr(route, "path_regex", None) is not None and route.path_regex.match(request.url.path)
                       for method in (getattr(route, "methods", None) or ())}
            headers = {**(headers or {}), "Allow": ", ".join(sorted(allowed))}
        return JSONResponse({"type": "error", "code": code, "message": str(error.detail)},
                            status_code=error.status_code, headers=headers)
