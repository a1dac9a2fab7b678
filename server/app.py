"""The app factory. Everything with I/O is built in the lifespan and torn down in reverse order."""

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis.asyncio import Redis

from server import api, db, errors, hotstate, phone
from server.config import Settings
from server.ingest import Ingest
from server.ratelimit import RateLimiter
from server.services import Services

log = logging.getLogger(__name__)


def connect_redis(settings: Settings) -> Redis:
    return Redis.from_url(settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = db.create_engine(settings)
        redis = connect_redis(settings)
        try:
            # A missing service stops the start: serving without the system of record would lie.
            await hotstate.ensure(redis=redis, engine=engine)
            ingest = Ingest(
                engine=engine,
                redis=redis,
                flush_max_rows=settings.flush_max_rows,
                flush_interval_ms=settings.flush_interval_ms,
                queue_rows=settings.ingest_queue_rows,
            )
            ingest.start()
            app.state.services = Services(
                settings=settings,
                engine=engine,
                redis=redis,
                ingest=ingest,
                rate_limiter=RateLimiter(rate_per_s=settings.rate_pings_per_s, burst=settings.rate_burst_pings),
            )
            try:
                yield
            finally:
                await ingest.close()
        finally:
            await redis.aclose()
            await engine.dispose()

    app = FastAPI(title="Guardian", version="1", lifespan=lifespan)
    errors.install(app)
    app.include_router(api.router)
    app.add_api_websocket_route("/v1/phone", phone.endpoint)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "ingest_queued_rows": app.state.services.ingest.queued_rows}

    return app
