"""Connections to PostgreSQL: how many round trips a statement costs."""

import asyncpg
import sqlalchemy as sa

from server.core import db


async def test_an_autocommit_connection_sends_no_begin_or_rollback(engine, monkeypatch):
    async with engine.connect():
        pass  # the engine's first connection runs its own set-up queries
    sent = []
    execute = asyncpg.connection.Connection.execute

    async def recording(self, query, *args, **kwargs):
        sent.append(query.split()[0].rstrip(";").upper())
        return await execute(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.connection.Connection, "execute", recording)
    async with db.autocommit(engine) as connection:
        assert await connection.scalar(sa.text("SELECT 1")) == 1
    assert sent == []
    async with engine.connect() as connection:
        assert await connection.scalar(sa.text("SELECT 1")) == 1
    assert sent == ["BEGIN", "ROLLBACK"], "a plain connection wraps a statement in two round trips of its own"


async def test_an_autocommit_write_is_committed_as_it_returns(engine):
    async with db.autocommit(engine) as connection:
        await connection.execute(sa.text("CREATE TEMPORARY TABLE probe (n int)"))
        await connection.execute(sa.text("INSERT INTO probe VALUES (1)"))
        assert not await connection.scalar(sa.text("SELECT pg_current_xact_id_if_assigned() IS NOT NULL")), \
            "no transaction left open"
        assert await connection.scalar(sa.text("SELECT count(*) FROM probe")) == 1


async def test_a_failed_statement_never_quotes_its_parameters(test_env):
    """An unhandled error's log line is the exception: it must not carry PIN hashes or phone numbers."""
    from sqlalchemy.exc import DBAPIError

    from server.core.config import Settings

    engine = db.create_engine(Settings(database_url=test_env["GUARDIAN_DATABASE_URL"]), pool_size=1)
    try:
        async with engine.connect() as connection:
            try:
                await connection.execute(sa.text("SELECT CAST(:phone AS text)"), {"phone": "+886912345678\x00"})
            except DBAPIError as error:
                refused = str(error)
    finally:
        await engine.dispose()
    assert "invalid byte sequence" in refused and "886912345678" not in refused
