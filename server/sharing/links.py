"""Share links in PostgreSQL: made by a trip's owner, looked up by a watcher, revoked by the owner.

A link's token is 256 random bits (`auth.new_token`) handed out once; only its SHA-256 is
kept, so a copy of the database opens no trip. Someone else's trip, or someone else's link,
is `not_found`, exactly like one that does not exist.
"""

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.accounts import auth
from server.core import refusals
from server.core.config import Settings
from server.core.tables import shares, trips
from server.trips import service

# What `auth.new_token` makes (43 characters of base64url); anything else is not worth a query.
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{16,128}")


@dataclass(frozen=True, slots=True)
class Share:
    share_id: uuid.UUID
    trip_id: uuid.UUID
    user_id: uuid.UUID
    expires_at: datetime
    revoked_at: datetime | None

    def live(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at


@dataclass(frozen=True, slots=True)
class Created:
    token: str  # never stored: the owner passes it on, nobody can read it back
    share: Share


def expiry(trip: service.Trip, *, settings: Settings, now: datetime, expires_in_s: int | None) -> datetime:
    """When a new link to `trip` expires: `expires_in_s` from now if given (refusals.InvalidField
    unless 1 to share_max_s), else the trip's expected end (due, ETA or expected return; now
    if it has none) plus share_after_end_s, and never more than share_max_s from now."""
    longest = timedelta(seconds=settings.share_max_s)
    if expires_in_s is not None:
        if not 0 < expires_in_s <= settings.share_max_s:
            raise refusals.InvalidField(f"expires_in_s must be 1 to {settings.share_max_s:.0f}", field="expires_in_s")
        return now + timedelta(seconds=expires_in_s)
    expected_end = trip.due_at or trip.eta or trip.expected_return or now
    return min(max(expected_end, now) + timedelta(seconds=settings.share_after_end_s), now + longest)


async def create(*, engine: AsyncEngine, settings: Settings, user_id: uuid.UUID, trip_id: object,
                 expires_in_s: int | None, now: datetime) -> Created:
    """A new link to the user's trip. Raises NotFound (no such trip of theirs), Conflict (the
    trip is over: there is nothing left to follow) or InvalidField (`expires_in_s`)."""
    async with engine.begin() as connection:
        trip = await service.get(connection=connection, user_id=user_id, trip_id=trip_id)
        if not trip.unfinished:
            raise refusals.Conflict(f"the trip is already {trip.status}", field="trip_id")
        expires_at = expiry(trip, settings=settings, now=now, expires_in_s=expires_in_s)
        token = auth.new_token()
        share_id = uuid.uuid4()
        await connection.execute(shares.insert().values(share_id=share_id, trip_id=trip.trip_id,
                                                        token_sha256=auth.digest(token), expires_at=expires_at))
    return Created(token, Share(share_id, trip.trip_id, user_id, expires_at, None))


_SHARE_COLUMNS = (shares.c.share_id, shares.c.trip_id, trips.c.user_id, shares.c.expires_at, shares.c.revoked_at)


def _share(row) -> Share:
    return Share(row.share_id, row.trip_id, row.user_id, row.expires_at, row.revoked_at)


async def find(*, connection: AsyncConnection, token: str) -> Share | None:
    """The link a token opens, live or not, or None (a token of the wrong shape costs no query)."""
    if not TOKEN_SHAPE.fullmatch(token):
        return None
    row = (await connection.execute(
        sa.select(*_SHARE_COLUMNS).join(trips, trips.c.trip_id == shares.c.trip_id)
        .where(shares.c.token_sha256 == auth.digest(token)))).first()
    return None if row is None else _share(row)


async def current(*, connection: AsyncConnection, share_id: uuid.UUID) -> Share | None:
    """The link as PostgreSQL has it now (a watcher's periodic recheck)."""
    row = (await connection.execute(
        sa.select(*_SHARE_COLUMNS).join(trips, trips.c.trip_id == shares.c.trip_id)
        .where(shares.c.share_id == share_id))).first()
    return None if row is None else _share(row)


async def revoke(*, engine: AsyncEngine, user_id: uuid.UUID, token: str) -> Share:
    """Revoke the user's own link (again: a no-op). Raises NotFound for a token that is not a
    link to one of their trips."""
    if not TOKEN_SHAPE.fullmatch(token):
        raise refusals.NotFound("no such share of yours", field="token")
    owned = sa.select(trips.c.trip_id).where(trips.c.user_id == user_id)
    async with engine.begin() as connection:
        row = (await connection.execute(
            shares.update()
            .where(shares.c.token_sha256 == auth.digest(token), shares.c.trip_id.in_(owned))
            .values(revoked_at=sa.func.coalesce(shares.c.revoked_at, sa.func.now()))
            .returning(shares.c.share_id, shares.c.trip_id, shares.c.expires_at, shares.c.revoked_at))).first()
    if row is None:
        raise refusals.NotFound("no such share of yours", field="token")
    return Share(row.share_id, row.trip_id, user_id, row.expires_at, row.revoked_at)
