"""The user's PINs: a normal one that cancels an alert and a duress one that only seems to."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from enum import Enum

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.core.tables import ALERT_UNFINISHED, alerts, pins
from server.core import refusals

_hasher = PasswordHasher()


class Verdict(Enum):
    NORMAL = "normal"
    DURESS = "duress"
    WRONG = "wrong"
    LOCKED = "locked"
    NOT_SET = "not_set"

    def refusal(self, field: str = "pin") -> refusals.Refusal | None:
        """The error a phone hears for this verdict (about its `field`), None for a right PIN."""
        return {
            Verdict.WRONG: refusals.Forbidden("wrong PIN", field=field),
            Verdict.LOCKED: refusals.RateLimited("too many wrong PINs; try again later", field=field),
            Verdict.NOT_SET: refusals.Forbidden("no PIN is set (PUT /v1/me/pins)", field=field),
        }.get(self)


def _matches(stored: str, pin: str) -> bool:
    try:
        return _hasher.verify(stored, pin)
    except (VerificationError, InvalidHashError):
        return False


async def change(*, engine: AsyncEngine, user_id: uuid.UUID, pin: str, duress_pin: str, current_pin: str | None,
                 max_failures: int, lockout_s: float) -> None:
    """Set the user's PINs: the first time freely, after that only with the normal PIN as `current_pin`.

    Raises `conflict` while the user has an alert the phone was told is unfinished, whatever PIN
    is given and before any is checked: whoever holds the phone during an alert must not be able
    to make a PIN that cancels it, and no guess is counted or answered then. It is the phone's
    view (`phone_status`), not the dispatchers': after a duress cancel the phone was told
    `cancelled`, and a PIN change must then be answered as after a normal cancel, or the answer
    would tell the holder which PIN was used.

    `current_pin` is checked as a cancel's PIN is (`check`): a wrong one counts toward the same
    lockout (`forbidden`, then `rate_limited` for everyone while locked). The duress PIN changes
    the PINs exactly as the normal one does: whoever holds the phone must never learn which PIN
    they were given, and any change that did not take (answered 204, then the "new" PIN refused
    at the next change or cancel) would tell them. A coerced change thus costs what a coerced
    normal PIN costs, no more. (Raising a silent duress alert for it is the next step: it needs an
    alert the phone never hears of.) The counts are committed before a refusal is raised.
    """
    async with engine.begin() as connection:
        verdict = await _change(connection=connection, user_id=user_id, pin=pin, duress_pin=duress_pin,
                                current_pin=current_pin, max_failures=max_failures, lockout_s=lockout_s)
    refusal = verdict.refusal(field="current_pin")
    if refusal is not None:
        raise refusal


async def _change(*, connection: AsyncConnection, user_id: uuid.UUID, pin: str, duress_pin: str,
                  current_pin: str | None, max_failures: int, lockout_s: float) -> Verdict:
    # The row first, locked: a concurrent change or cancel of this user waits for this one.
    row = (await connection.execute(sa.select(pins.c.user_id).where(pins.c.user_id == user_id)
                                    .with_for_update())).first()
    unfinished = await connection.scalar(sa.select(sa.func.count()).select_from(alerts).where(
        alerts.c.user_id == user_id, alerts.c.phone_status.in_(ALERT_UNFINISHED)))
    if unfinished:
        raise refusals.Conflict("the PINs cannot change while you have an unfinished alert")
    if row is None:
        hashes = await _hash(pin, duress_pin)
        inserted = await connection.execute(pg.insert(pins).values(
            user_id=user_id, pin_hash=hashes[0], duress_pin_hash=hashes[1]).on_conflict_do_nothing()
            .returning(pins.c.user_id))
        if inserted.first() is None:  # another request set them first: now they change with current_pin only
            raise _needs_current_pin()
        return Verdict.NORMAL
    if current_pin is None:
        raise _needs_current_pin()
    verdict = await check(connection=connection, user_id=user_id, pin=current_pin, max_failures=max_failures,
                          lockout_s=lockout_s)
    if verdict in (Verdict.NORMAL, Verdict.DURESS):
        hashes = await _hash(pin, duress_pin)
        await connection.execute(pins.update().where(pins.c.user_id == user_id).values(
            pin_hash=hashes[0], duress_pin_hash=hashes[1], failed_attempts=0, locked_until=None))
    return verdict


def _needs_current_pin() -> refusals.Refusal:
    return refusals.Forbidden("the PINs are set: give the normal PIN as current_pin", field="current_pin")


async def _hash(pin: str, duress_pin: str) -> tuple[str, str]:
    return await asyncio.to_thread(lambda: (_hasher.hash(pin), _hasher.hash(duress_pin)))


async def check(*, connection: AsyncConnection, user_id: uuid.UUID, pin: str, max_failures: int,
                lockout_s: float) -> Verdict:
    """Which PIN this is; a wrong one is counted, and too many lock the PINs for a while.

    Call inside a transaction and commit it whatever the verdict (the count must stick);
    the row is locked so concurrent guesses are all counted.
    """
    row = (await connection.execute(sa.select(pins).where(pins.c.user_id == user_id).with_for_update())).first()
    if row is None:
        return Verdict.NOT_SET
    now = datetime.now(UTC)
    if row.locked_until is not None and row.locked_until > now:
        return Verdict.LOCKED
    normal, duress = await asyncio.to_thread(
        lambda: (_matches(row.pin_hash, pin), _matches(row.duress_pin_hash, pin)))
    if normal or duress:
        if row.failed_attempts:
            await connection.execute(pins.update().where(pins.c.user_id == user_id).values(failed_attempts=0))
        return Verdict.DURESS if duress else Verdict.NORMAL
    failures = row.failed_attempts + 1
    locked = failures >= max_failures
    await connection.execute(pins.update().where(pins.c.user_id == user_id).values(
        failed_attempts=0 if locked else failures,
        locked_until=now + timedelta(seconds=lockout_s) if locked else None))
    return Verdict.WRONG
