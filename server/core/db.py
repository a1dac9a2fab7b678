"""Building the database engine (in the app's lifespan or a CLI command, never at import).

Pooled connections are not pinged before use: that would cost every checkout a round
trip, and on a busy event loop every round trip waits its turn (an SOS takes several).
A connection that PostgreSQL dropped (a restart, a terminated backend) may then fail
its first statement; SQLAlchemy discards the whole pool, and `once_more_if_stale` lets
an idempotent operation run again on a fresh connection rather than fail.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from server.core.config import Settings

T = TypeVar("T")

STORAGE_ERRORS = (SQLAlchemyError, OSError, TimeoutError)
# What PostgreSQL refuses for one row's values, not for the flush: data exceptions and
# integrity violations. By SQLSTATE class: the driver's adapter raises some of them (22003,
# a number out of range) as a bare DBAPIError.
DATA_ERROR_CLASSES = ("22", "23")


def sqlstate(error: BaseException) -> str | None:
    original = getattr(error, "orig", None)
    return getattr(original, "sqlstate", None) or getattr(getattr(original, "__cause__", None), "sqlstate", None)


def describe(error: BaseException) -> str:
    """An error for a log line: its type and SQLSTATE, never its message (which may quote data)."""
    code = sqlstate(error)
    return type(error).__name__ + (f" sqlstate={code}" if code else "")


def is_data_error(error: BaseException) -> bool:
    return isinstance(error, DBAPIError) and (sqlstate(error) or "")[:2] in DATA_ERROR_CLASSES


def create_engine(settings: Settings, *, pool_size: int | None = None) -> AsyncEngine:
    return create_async_engine(
        settings.database_url,
        pool_size=pool_size or settings.db_pool_size,
        max_overflow=2,
        pool_timeout=10,
        # An error's log line must not quote its statement's values: PIN hashes, phone numbers.
        hide_parameters=True,
        connect_args={"command_timeout": 30, "server_settings": {"application_name": "guardian"}},
    )


async def once_more_if_stale(operation: Callable[[], Awaitable[T]]) -> T:
    """Run an idempotent `operation`; if its pooled connection had died (PostgreSQL dropped
    it since it was last used), run it once more on a fresh connection."""
    try:
        return await operation()
    except DBAPIError as error:
        if not error.connection_invalidated:
            raise
    return await operation()


@asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A pooled connection on which each statement is its own transaction.

    A plain connection wraps its statements in BEGIN and ROLLBACK, two more round trips,
    and on a busy event loop every round trip waits its turn. For reads that need no
    common snapshot, and for writes that are one statement (an SOS). Not for server-side
    cursors, which need a transaction.
    """
    async with engine.connect() as pooled:
        yield await pooled.execution_options(isolation_level="AUTOCOMMIT")
