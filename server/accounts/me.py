"""HTTP for the user's own safety settings (Bearer device token)."""

import logging
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, model_validator
from sqlalchemy.dialects import postgresql as pg

from server.accounts import auth, pins
from server.core import fields, openapi
from server.core.tables import contacts, push_tokens

router = APIRouter()
log = logging.getLogger(__name__)
MAX_CONTACTS = 10


class Pins(BaseModel):
    pin: fields.Pin
    duress_pin: fields.Pin
    # Needed once PINs are set: the normal PIN, checked and counted like a cancel's PIN.
    current_pin: Annotated[fields.Pin | None, Field(
        description="the normal PIN now set; required once PINs are set, not the first time")] = None

    @model_validator(mode="after")
    def _different(self) -> "Pins":
        if self.pin == self.duress_pin:
            raise ValueError("the duress PIN must differ from the PIN")
        return self


class Contact(BaseModel):
    name: fields.text(min_length=1, max_length=100)
    phone: fields.Phone


class Contacts(BaseModel):
    contacts: list[Contact] = Field(max_length=MAX_CONTACTS)


class PushToken(BaseModel):
    fcm_token: fields.text(min_length=20, max_length=4096)


Device = Annotated[auth.Device, Depends(auth.current_device)]


@router.put("/v1/me/pins", status_code=204, responses={
    204: {"description": "the PINs are set (the duress PIN as current_pin gets this answer too)"},
    **openapi.refusals(400, 401, 403, 409, 422, 429)})
async def put_pins(body: Pins, request: Request, device: Device) -> None:
    """Set the PINs: the first time freely, then with `current_pin` (see `pins.change`)."""
    services = request.app.state.services
    await pins.change(engine=services.engine, user_id=device.user_id, pin=body.pin, duress_pin=body.duress_pin,
                      current_pin=body.current_pin, max_failures=services.settings.pin_max_failures,
                      lockout_s=services.settings.pin_lockout_s)


@router.put("/v1/me/contacts", responses=openapi.refusals(400, 401, 422))
async def put_contacts(body: Contacts, request: Request, device: Device) -> dict:
    async with request.app.state.services.engine.begin() as connection:
        await connection.execute(sa.delete(contacts).where(contacts.c.user_id == device.user_id))
        if body.contacts:
            await connection.execute(contacts.insert(), [
                {"user_id": device.user_id, "position": index, "name": contact.name, "phone": contact.phone}
                for index, contact in enumerate(body.contacts)])
    return {"contacts": [contact.model_dump() for contact in body.contacts]}


@router.post("/v1/me/push-token", status_code=204, responses=openapi.refusals(400, 401, 422))
async def post_push_token(body: PushToken, request: Request, device: Device) -> None:
    statement = pg.insert(push_tokens).values(device_id=device.device_id, fcm_token=body.fcm_token)
    async with request.app.state.services.engine.begin() as connection:
        await connection.execute(statement.on_conflict_do_update(
            index_elements=[push_tokens.c.device_id],
            set_={"fcm_token": statement.excluded.fcm_token, "updated_at": sa.func.now()}))
