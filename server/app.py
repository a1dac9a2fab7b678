"""The app factory. Everything with I/O is built in the lifespan and torn down in reverse order."""

import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from redis.asyncio import Redis
from redis.backoff import ConstantBackoff
from redis.retry import Retry

from notifier.hub import Hub
from server.accounts import me, trackers, users
from server.alerts import routes as sosroute
from server.console import desk
from server.console import socket as console
from server.core import db, errors, openapi, refusals, roles
from server.phones import osmand, owntracks, pings
from server.phones import socket as phone
from server.positions import hotstate
from server.positions import routes as locations
from server.console.auditlog import AuditLog
from server.core.bodysize import BodyLimit
from server.trips import routes as trip_routes
from server.trips import service as trip_service
from server.trips.progress import Progress
from server.trips.pushes import ContactPushes
from server.trips.timers import Timers
from server.sharing import routes as share_routes
from server.privacy import routes as privacy_routes
from server.sharing import watcher
from server.sharing.feed import TripFeed
from server.core.config import Settings
from server.alerts.fanout import Fanout
from server.phones.ingest import Ingest
from server.core.looplag import LoopLag
from server.core.ratelimit import RateLimiter
from server.alerts.relay import Relay
from server.services import Services
from server.alerts.sweeper import Sweeper
from server.alerts.retention import Retention
from server.alerts.watching import AlertWatch
from server.core.roles import Role

log = logging.getLogger(__name__)

STALE_SWEEP_GRACE_S = 10.0


def connect_redis(settings: Settings, *, read_timeout_s: float | None = 2.0) -> Redis:
    """A Redis client that gives up fast: the callers decide what a lost Redis means (redis-py's
    default retries back off for up to ten seconds, which would stall fan-out after an outage)."""
    return Redis.from_url(settings.redis_url, socket_timeout=read_timeout_s, socket_connect_timeout=2.0,
                          health_check_interval=10 if read_timeout_s is None else 0,
                          retry=Retry(ConstantBackoff(0.1), 1))


def in_turn(*hooks: Callable[[list], Awaitable[None]]) -> Callable[[list], Awaitable[None]]:
    """One `on_moved` for the ingest that awaits each of these, in order."""
    async def moved(fixes: list) -> None:
        for hook in hooks:
            await hook(fixes)
    return moved


def create_app(settings: Settings, role: Role | None = None) -> FastAPI:
    """`role` (default `settings.role`): which services the lifespan builds and which routes are
    mounted (`server.core.roles`); `all` is everything in one process."""
    role = role or settings.role
    alert_work, phones = roles.runs_alert_work(role), roles.runs_ingest(role)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with AsyncExitStack() as stack:
            engine = db.create_engine(settings)
            stack.push_async_callback(engine.dispose)
            alert_engine = db.create_engine(settings, pool_size=settings.alert_pool_size)
            stack.push_async_callback(alert_engine.dispose)
            redis = connect_redis(settings)
            stack.push_async_callback(redis.aclose)
            subscriber = connect_redis(settings, read_timeout_s=None)
            stack.push_async_callback(subscriber.aclose)
            # A missing service stops the start: serving without the system of record would lie.
            await hotstate.ensure(redis=redis, engine=engine)
            fanout = Fanout(redis=redis, subscriber=subscriber, hub=Hub())
            fanout.start()
            stack.push_async_callback(fanout.close)
            # Without outbox workers here, what this process commits wakes the alerts process's.
            relay = Relay(engine=engine, redis=redis, settings=settings, fanout=fanout, delivers=alert_work)
            relay.start()
            stack.push_async_callback(relay.close)
            fanout.on_outbox_due = relay.woken
            health = []
            if alert_work:
                sweeper = Sweeper(engine=engine, redis=redis, settings=settings, relay=relay, fanout=fanout)
                # Sweeps that stop happening, for whatever reason, mean escalation has stopped.
                sweeper.health.stale_after_s = 3 * settings.sweep_interval_s + STALE_SWEEP_GRACE_S
                await sweeper.sweep()  # before serving: which users' fixes go to consoles, overdue escalations
                sweeper.start()
                stack.push_async_callback(sweeper.close)
                health.append(sweeper.health)
            # Every trip change committed here: the per-fix checks and the watchers' feed follow it.
            trip_listener = trip_service.Listeners()
            progress = Progress(engine=engine, settings=settings, fanout=fanout, relay=relay, listener=trip_listener)
            trip_listener.add(progress)
            trip_feed = TripFeed(engine=engine, fanout=fanout, sweep_interval_s=settings.sweep_interval_s)
            await trip_feed.refresh()  # before serving: whose fixes go to watchers
            trip_feed.start()
            stack.push_async_callback(trip_feed.close)
            trip_listener.add(trip_feed)
            pushes = None
            if relay.fcm is not None:
                pushes = ContactPushes(engine=engine, settings=settings, fcm=relay.fcm)
                pushes.start()
                stack.push_async_callback(pushes.close)
            if alert_work:
                timers = Timers(engine=engine, settings=settings, relay=relay, fanout=fanout,
                                listener=trip_listener, progress=progress, pushes=pushes)
                timers.health.stale_after_s = 3 * settings.sweep_interval_s + STALE_SWEEP_GRACE_S
                await timers.sweep()  # before serving: overdue trips, and whom the per-fix checks follow
                timers.start()
                stack.push_async_callback(timers.close)
                health.append(timers.health)
            else:
                # No sweeper here: which users are in an alert or on a trip is read on its own.
                # On the alert pool: a reconnect storm taking the main pool must not make it stale.
                watch = AlertWatch(engine=alert_engine, fanout=fanout, progress=progress,
                                   interval_s=settings.sweep_interval_s)
                watch.health.stale_after_s = 3 * settings.sweep_interval_s + STALE_SWEEP_GRACE_S
                await watch.read()  # before serving
                watch.start()
                stack.push_async_callback(watch.close)
                health.append(watch.health)
            ingest = None
            if phones:
                ingest = Ingest(
                    engine=engine,
                    redis=redis,
                    flush_max_rows=settings.flush_max_rows,
                    flush_interval_ms=settings.flush_interval_ms,
                    queue_rows=settings.ingest_queue_rows,
                    on_moved=in_turn(fanout.relay_locations, trip_feed.relay_locations, progress.on_moved),
                )
                ingest.start()
                stack.push_async_callback(ingest.close)
                health.append(ingest.health)
            audit_log = None
            if alert_work:
                # History past its retention, alerts past theirs, partitions ahead: in the background
                # from the start (one process at a time; a fix whose day has no partition yet still goes in).
                retention = Retention(engine=engine, settings=settings)
                retention.start()
                stack.push_async_callback(retention.close)
                audit_log = AuditLog(engine=engine)
                audit_log.start()
                stack.push_async_callback(audit_log.close)
                health.append(audit_log.health)
            loop_lag = LoopLag()
            loop_lag.start()
            stack.push_async_callback(loop_lag.close)
            app.state.loop_lag = loop_lag
            health += [*(task.health for task in relay.tasks), fanout.health, loop_lag.health, trip_feed.health,
                       *([pushes.worker.health] if pushes is not None else [])]
            app.state.services = Services(
                settings=settings,
                engine=engine,
                redis=redis,
                ingest=ingest,
                rate_limiter=RateLimiter(rate_per_s=settings.rate_pings_per_s, burst=settings.rate_burst_pings),
                fanout=fanout,
                relay=relay,
                audit_log=audit_log,
                alert_engine=alert_engine,
                registrations=RateLimiter(rate_per_s=settings.register_per_hour / 3600,
                                          burst=settings.register_burst),
                phone_connects=RateLimiter(rate_per_s=settings.phone_connects_per_s,
                                           burst=settings.phone_connect_burst, max_keys=100_000),
                logins_by_address=RateLimiter(rate_per_s=settings.login_address_per_minute / 60,
                                              burst=settings.login_address_burst),
                logins_by_username=RateLimiter(rate_per_s=settings.login_username_per_minute / 60,
                                               burst=settings.login_username_burst),
                health=health,
                trip_listener=trip_listener,
                trip_feed=trip_feed,
                trip_progress=progress,
                share_creations=RateLimiter(rate_per_s=share_routes.SHARES_PER_S, burst=share_routes.SHARES_BURST),
                exports=privacy_routes.Exports(RateLimiter(rate_per_s=privacy_routes.EXPORTS_PER_S,
                                                           burst=privacy_routes.EXPORTS_BURST)),
            )
            yield

    app = FastAPI(title="Guardian", version="1", lifespan=lifespan)
    errors.install(app)
    # Every HTTP body, the contract's frame limit, before any route or dependency reads it.
    app.add_middleware(BodyLimit, max_body_bytes=settings.max_frame_bytes,
                       uploads={("POST", "/v1/trips"): settings.max_upload_bytes})
    openapi.install(app)

    async def storage_unavailable(request, error: Exception) -> JSONResponse:
        # Any endpoint: a lost PostgreSQL is a reason to retry (503), never a 500 with a traceback
        # (whose SQL parameters may hold personal data). Type and SQLSTATE only.
        route = getattr(request.scope.get("route"), "path", "?")  # the template: a path may hold a token
        log.error("%s %s: storage unavailable (%s)", request.method, route, db.describe(error))
        return errors.response(refusals.Unavailable("storage unavailable; retry"))

    for storage_error in db.STORAGE_ERRORS:
        app.add_exception_handler(storage_error, storage_unavailable)
    for router in (users.router, pings.router, locations.router, sosroute.router, me.router, desk.router,
                   trip_routes.router, share_routes.router, privacy_routes.router, trackers.router, owntracks.router,
                   osmand.router):
        app.include_router(roles.share_of(router, role))
    for path, endpoint in (("/v1/phone", phone.endpoint), ("/v1/console", console.endpoint),
                           ("/v1/share/{token}", watcher.endpoint)):
        if roles.serves(role, path):
            app.add_api_websocket_route(path, endpoint)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """200 while every background task does its work; 503 naming each one that cannot
        (escalation, the ping ingest, a delivery channel): take this process out of service."""
        services = app.state.services
        problems = {health.name: health.problem for health in services.health if health.problem is not None}
        body = {"status": "failing" if problems else "ok", "loop_lag_ms": app.state.loop_lag.recent_ms()}
        if services.ingest is not None:
            body["ingest_queued_rows"] = services.ingest.queued_rows
        if alert_work:
            body["consoles"] = services.fanout.hub.console_count
        if problems:
            body["problems"] = problems
        return JSONResponse(body, status_code=503 if problems else 200)

    return app
