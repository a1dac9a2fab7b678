"""Building the database engine (in the app's lifespan or a CLI command, never at import)."""

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from server.config import Settings


def create_engine(settings: Settings, *, pool_size: int | None = None) -> AsyncEngine:
    return create_async_engine(
        settings.database_url,
        pool_size=pool_size or settings.db_pool_size,
        max_overflow=2,
        pool_pre_ping=True,
        pool_timeout=10,
        connect_args={"command_timeout": 30, "server_settings": {"application_name": "guardian"}},
    )
