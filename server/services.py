"""What the lifespan builds and hands down to endpoints: one object on app.state."""

from dataclasses import dataclass, field

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from server.console.auditlog import AuditLog
from server.core.config import Settings
from server.alerts.fanout import Fanout
from server.phones.ingest import Ingest
from server.core.ratelimit import RateLimiter
from server.alerts.relay import Relay
from server.core.tasks import Health


@dataclass(slots=True)
class Services:
    settings: Settings
    engine: AsyncEngine
    redis: Redis
    # None in the alerts role (`server.core.roles`), which takes no pings.
    ingest: Ingest | None
    rate_limiter: RateLimiter
    fanout: Fanout
    relay: Relay
    # None in the phones role, which serves no console.
    audit_log: AuditLog | None
    # The alert path's own pool: phones connecting or posting pings can never starve an SOS of connections.
    alert_engine: AsyncEngine
    # Registrations per client address (`ratelimit.client_key`).
    registrations: RateLimiter
    # Phone socket connects per device token (`auth.digest`).
    phone_connects: RateLimiter
    # Console logins (`POST /v1/console/login`) per client address and per username given,
    # spent before the password is hashed.
    logins_by_address: RateLimiter
    logins_by_username: RateLimiter
    # The supervised background tasks whose trouble makes /healthz answer 503.
    health: list[Health]
    # device id → its one phone socket in this process (`phone.PhoneSession`); a new one replaces it.
    phone_sockets: dict = field(default_factory=dict)
    # Told of every trip change committed here (`trips.service.Listeners`): the per-fix checks
    # and the watchers' feed.
    trip_listener: object = None
    # The watchers' feed (`sharing.feed.TripFeed`): phones and watchers hear of trip changes.
    trip_feed: object = None
    # The per-fix checks of unfinished trips (`trips.progress.Progress`): whom it follows.
    trip_progress: object = None
    # Share links made per device (`POST /v1/trips/{id}/shares`).
    share_creations: RateLimiter | None = None
    # Exports under way and allowed (`privacy.routes.Exports`).
    exports: object = None
