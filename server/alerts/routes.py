"""`POST /v1/sos`: the SOS over HTTP, for a phone without its socket or sending on both at once."""

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from server.accounts import auth
from server.alerts import service as alerts
from server.core import db, openapi, refusals, wire

router = APIRouter()
log = logging.getLogger(__name__)


@router.post("/v1/sos", status_code=201, openapi_extra=openapi.SOS_BODY, responses={
    201: {"description": "the alert is committed", "content": {"application/json": {"schema": openapi.SOS_ACK}}},
    200: {"description": "a retry: the alert of the first", "content": {"application/json": {"schema": openapi.SOS_ACK}}},
    **openapi.refusals(400, 401, 413, 422, 503)})
async def post_sos(request: Request, device: Annotated[auth.Device, Depends(auth.alerting_device)]) -> JSONResponse:
    """The SOS over HTTP: 201 with the sos_ack once committed, 200 for a retry of the same sos_id."""
    services = request.app.state.services
    sos = wire.decode_sos(await request.body())  # at most max_frame_bytes (server/core/bodysize.py)
    raised = await raise_over_http(services=services, device=device, sos=sos)
    return JSONResponse(raised.frame(), status_code=201 if raised.stored_now else 200)


async def raise_over_http(*, services, device: auth.Device, sos: wire.SosFields) -> alerts.Raised:
    """`raise_alert` on the alert path's own pool for an HTTP request (`POST /v1/sos`, a tracker
    app's alarm): whatever keeps it from committing is a 503, never a bare 500, and the client
    retries with the same sos_id."""
    try:
        return await alerts.raise_alert(engine=services.alert_engine, settings=services.settings, device=device,
                                        sos=sos, relay=services.relay)
    except db.STORAGE_ERRORS as error:
        raise refusals.Unavailable(f"not stored ({db.describe(error)}); retry with the same sos_id") from None
    except refusals.Refusal:
        raise
    except Exception:
        # A defect must still tell the phone to retry (503), never a bare 500: logged with its
        # traceback, which quotes no body.
        log.exception("SOS over HTTP failed before its answer; the phone retries")
        raise refusals.Unavailable("not stored; retry with the same sos_id") from None
