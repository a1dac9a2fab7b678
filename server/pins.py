"""The user's PINs: a normal one that cancels an alert and a duress one that only seems to."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from enum import Enum

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from server.tables import pins
from server.wire import FrameError

_hasher = PasswordHasher()


class Verdict(Enum):
    NORMAL = "normal"
    DURESS = "duress"
    WRONG = "wrong"
    LOCKED = "locked"
    NOT_SET = "not_set"

    def refusal(self) -> FrameError | None:
        """The error a phone hears for this verdict, None for a right PIN."""
        return {
            Verdict.WRONG: FrameError("forbidden", "wrong PIN", field="pin"),
            Verdict.LOCKED: FrameError("rate_limited", "too many wrong PINs; try again later", field="pin"),
            Verdict.NOT_SET: FrameError("forbidden", "no PIN is set (PUT /v1/me/pins)", field="pin"),
        }.get(self)


def _matches(stored: str, pin: str) -> bool:
    try:
        return _hasher.verify(stored, pin)
    except (VerificationError, InvalidHashError):
        return False


async def set_pins(*, connection: AsyncConnection, user_id: uuid.UUID, pin: str, duress_pin: str) -> None:
    hashes = await asyncio.to_thread(lambda: (_hasher.hash(pin), _hasher.hash(duress_pin)))
    statement = pg.insert(pins).values(user_id=user_id, pin_hash=hashes[0], duress_pin_hash=hashes[1])
    await connection.execute(statement.on_conflict_do_update(
        index_elements=[pins.c.user_id],
        set_={"pin_hash": hashes[0], "duress_pin_hash": hashes[1], "failed_attempts": 0, "locked_until": None}))


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
