"""Accounts: `POST /v1/users` gives a new user their device token."""

import math
import uuid

from fastapi import APIRouter, Request
from pydantic import BaseModel

from server.accounts import auth
from server.core import fields, openapi, ratelimit, refusals
from server.core.tables import devices, users

router = APIRouter()


class NewUser(BaseModel):
    name: fields.text(min_length=1, max_length=100)
    phone: fields.Phone


@router.post("/v1/users", status_code=201, responses=openapi.refusals(400, 422, 429, 503))
async def create_user(body: NewUser, request: Request) -> dict:
    """A new account and its device token, at most `register_burst` at once per client address
    (then `register_per_hour`): without a bound, fresh devices multiply every per-device limit."""
    services = request.app.state.services
    address = ratelimit.client_key(request.client.host if request.client else None)
    if not services.registrations.take(address):
        wait_ms = math.ceil(1000 * services.registrations.retry_after_s(address))
        raise refusals.RateLimited("too many new accounts from this address", retry_after_ms=wait_ms)
    token = auth.new_token()
    user_id, device_id = uuid.uuid4(), uuid.uuid4()
    async with services.engine.begin() as connection:
        await connection.execute(users.insert().values(user_id=user_id, name=body.name, phone=body.phone))
        await connection.execute(
            devices.insert().values(device_id=device_id, user_id=user_id, token_sha256=auth.digest(token))
        )
    return {"user_id": str(user_id), "device_token": token}
