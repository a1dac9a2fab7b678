"""Alembic environment: runs the migrations over the async engine the CLI hands in."""

import asyncio

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from server.core.tables import metadata


def _migrate(connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run() -> None:
    engine = create_async_engine(context.config.get_main_option("sqlalchemy.url"))
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_migrate)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `guardian db upgrade`")
asyncio.run(_run())
