"""`POST /v1/pings`, the phone's ping batch over HTTP, and `submit`: the one path by which
an HTTP request's fixes are stored, shared with the tracker apps (OwnTracks, OsmAnd)."""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import msgspec
from fastapi import APIRouter, Depends, Request

from server.accounts import auth
from server.core import db, openapi, refusals, wire
from server.phones.intake import open_intake

if TYPE_CHECKING:
    from server.services import Services

router = APIRouter()

COMMIT_WAIT_S = 10.0


@dataclass(frozen=True, slots=True)
class Settled:
    """What became of a request's pings: the device's cumulative ack after them, and the
    refusals of single pings (judged at once, or by PostgreSQL at flush time)."""

    acked_seq: int
    refused: list[refusals.Refusal]


async def submit(*, services: "Services", device: auth.Device,
                 pings: Sequence[wire.PingFields | msgspec.Raw]) -> Settled:
    """Judge the pings as the phone socket does (the same intake: geo rules, rate and queue
    bounds, the device's ledger in this process) and wait until every one is committed in
    PostgreSQL or refused: the group commit, hot state, consoles, trips and watchers follow
    from the ingest's flush, as for the socket's pings.

    Raises refusals.Refusal for a refused whole (too many pings, over the rate, a full
    queue) and refusals.Unavailable when storage is slow or lost them (the client resends).
    `acked_seq` counts the pings the device sent, in seq order (see `post_pings`)."""
    changed = asyncio.Event()
    refused_at_flush: list[refusals.Refusal] = []
    intake = None
    try:
        async with db.autocommit(services.engine) as connection:
            intake = await open_intake(connection=connection, services=services, device=device, acked_seq=-1,
                                       on_change=changed.set, on_refused=refused_at_flush.append)
        refused = intake.take(pings)
        last, ledger = intake.last_entry, intake.ledger
        try:
            async with asyncio.timeout(COMMIT_WAIT_S):
                # Settled in arrival order: once this request's last ping is, so is all before it.
                while last is not None and not last.settled and not ledger.failed:
                    changed.clear()
                    await changed.wait()
        except TimeoutError:
            raise refusals.Unavailable("storage is slow; resend the batch") from None
        if last is not None and not last.settled:  # the ledger failed: storage lost it
            raise refusals.Unavailable("storage unavailable; resend the batch")
        ledger.advance()  # over the settled prefix, this request's last ping included
        return Settled(ledger.acked_seq, [*refused, *refused_at_flush])
    finally:
        if intake is not None:
            intake.close()


@router.post("/v1/pings", responses={200: openapi.ACK, **openapi.refusals(400, 401, 413, 422, 429, 503)},
             openapi_extra=openapi.PINGS_BODY)
async def post_pings(request: Request, device: Annotated[auth.Device, Depends(auth.current_device)]) -> dict:
    """A batch over HTTP, answered once every ping in it is committed or refused.

    The answer's `seq` is the device's cumulative ack, as on its socket: every ping of this
    device with seq <= `seq` is committed in PostgreSQL or was answered with an error (in
    `errors`, or earlier on the device's socket or in another answer). The request enters
    the device's ledger in this process, shared with its socket: it waits for the socket's
    older pings still in flight, and when storage loses them it fails with them (503:
    resend the batch). Like every cumulative ack it counts the pings the device sent, in
    seq order: a phone posts its unacknowledged pings oldest first, and `seq` knows of
    none still in flight on another server process. A ping PostgreSQL refuses at flush
    time is in `errors`, not stored.
    """
    raw_pings = wire.decode_batch(await request.body())  # at most max_frame_bytes (server/core/bodysize.py)
    settled = await submit(services=request.app.state.services, device=device, pings=raw_pings)
    return {"type": "ack", "seq": settled.acked_seq, "errors": [refusal.frame() for refusal in settled.refused]}
