"""The async engine for the app and the sync URL for Alembic and the CLI."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool, QueuePool


def async_url(url: str) -> str:
    """`sqlite:///x` -> `sqlite+aiosqlite:///x`; `postgresql://` -> `postgresql+asyncpg://`."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    backend = parsed.get_backend_name()
    driver = "aiosqlite" if backend == "sqlite" else "asyncpg"
    return parsed.set(drivername=f"{backend}+{driver}").render_as_string(hide_password=False)


def sync_url(url: str) -> str:
    """The same database through a sync driver (sqlite3 or psycopg 3), for Alembic."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    backend = parsed.get_backend_name()
    driver = "pysqlite" if backend == "sqlite" else "psycopg"
    return parsed.set(drivername=f"{backend}+{driver}").render_as_string(hide_password=False)


def private_sqlite_file(url: str) -> None:
    """Create a missing SQLite database file with mode 0600 before SQLite opens it.

    SQLite would create it 0644 under the usual umask (password hashes, sessions and
    audit readable by every local user); its -wal, -shm and journal files take the
    database file's mode, so they are 0600 too. Existing files are left as they are.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return
    path = parsed.database or ""
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return  # it exists, or its directory does not: SQLite reports the latter itself
    try:
        if hasattr(os, "fchmod"):  # POSIX; Windows has no such modes
            os.fchmod(fd, 0o600)  # exactly 0600 whatever the umask
    finally:
        os.close(fd)


def sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers run during a write; busy_timeout queues writers instead of
    # failing with "database is locked" when refreshes race.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _counting_pool(on_timeout: Callable[[], None] | None) -> type[AsyncAdaptedQueuePool]:
    """The async queue pool, calling `on_timeout` each time a checkout gives up waiting
    (a subclass per engine, so `dispose()`, which rebuilds the pool from its class, keeps it)."""

    class CountingPool(AsyncAdaptedQueuePool):
        def _do_get(self) -> Any:
            try:
                return super()._do_get()
            except PoolTimeout:
                if on_timeout is not None:
                    on_timeout()
                raise

    return CountingPool


def pool_checked_out(engine: AsyncEngine) -> int:
    """Connections checked out of the engine's pool now (0 for pools that do not count)."""
    pool = engine.pool
    return int(pool.checkedout()) if isinstance(pool, QueuePool) else 0


def pool_capacity(engine: AsyncEngine) -> int:
    pool = engine.pool
    return int(pool.size()) if isinstance(pool, QueuePool) else 0


def follow_pool(engine: AsyncEngine, report: Callable[[int, int], None]) -> None:
    """Call `report(in use, size)` now and after every checkout and check-in.

    Pushed rather than read at scrape time, so that with `serve --workers N` each
    worker's figures are in the shared metric files (ops/metrics.py).
    """
    def checked_out(*_: Any) -> None:
        report(pool_checked_out(engine), pool_capacity(engine))

    def checked_in(*_: Any) -> None:  # the event fires before the connection is back
        report(max(0, pool_checked_out(engine) - 1), pool_capacity(engine))

    event.listen(engine.sync_engine, "checkout", checked_out)
    event.listen(engine.sync_engine, "checkin", checked_in)
    report(pool_checked_out(engine), pool_capacity(engine))


def create_engine(
    url: str, *, pool_size: int = 20, pool_timeout: float = 5, statement_timeout: float = 10,
    on_pool_timeout: Callable[[], None] | None = None,
) -> AsyncEngine:
    """The async engine. On PostgreSQL: a fixed pool of `pool_size`, where a checkout waits
    `pool_timeout` seconds and then raises (a 503, counted by `on_pool_timeout`), and
    PostgreSQL's `statement_timeout` on every connection (a cancelled statement is a 503 too)."""
    aurl = async_url(url)
    if aurl.startswith("sqlite"):
        memory = ":memory:" in aurl or aurl.endswith("://")
        options: dict[str, Any] = {}
        if not memory:
            private_sqlite_file(aurl)
            path = make_url(aurl).database or ""
            # sqlite3 and aiosqlite: imported only for a SQLite database (not on PostgreSQL)
            from gatehouse.store.db.sqlite_onehop import creator

            options["async_creator"] = creator(path, timeout=10, check_same_thread=False)
        engine = create_async_engine(
            aurl,
            poolclass=NullPool if memory else None,
            # Sessions and connections always end their own transactions (commit, or rollback
            # on close), so the pool's extra rollback on return is one wasted thread hop.
            pool_reset_on_return=None,
            connect_args={"timeout": 10, "check_same_thread": False},
            **options,
        )
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        return engine
    # A fixed pool: overflow connections are closed as soon as the load dips, and each
    # new one costs PostgreSQL a process fork (measured: ~75 reconnects/s under the W2
    # refresh benchmark once its units became short; bench/RESULTS.md).
    return create_async_engine(
        aurl,
        poolclass=_counting_pool(on_pool_timeout),
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=False,
        pool_timeout=pool_timeout,
        connect_args={
            "timeout": 5,
            # The server cancels first (the connection stays usable); the client-side limit
            # only catches a server that stopped answering.
            "command_timeout": statement_timeout + 5,
            "server_settings": {"statement_timeout": str(max(1, round(statement_timeout * 1000)))},
        },
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def is_database_outage(exc: BaseException) -> bool:
    """True for failures to reach a dependency (answered 503), as opposed to bugs (500)."""
    return outage_of(exc) is not None


def outage_of(exc: BaseException) -> str | None:
    """`"database"` or `"cache"` when `exc` means that dependency cannot be reached, else None."""
    module, name = type(exc).__module__, type(exc).__name__
    if module.startswith("redis") and name in _REDIS_OUTAGES:
        return "cache"
    if isinstance(exc, OperationalError | PoolTimeout):
        return "database"
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return "database"
    if isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _SQLSTATE_OUTAGES:
        return "database"  # GATEHOUSE_DB_STATEMENT_TIMEOUT (or an admin) cancelled the statement
    if module.startswith("asyncpg") and name in _ASYNCPG_OUTAGES:
        return "database"  # asyncpg raises these unwrapped while connecting
    if isinstance(exc, ConnectionError | TimeoutError) or (
        isinstance(exc, OSError) and exc.errno is not None
    ):
        return "database"
    return None


_ASYNCPG_OUTAGES = frozenset({
    "TooManyConnectionsError", "CannotConnectNowError", "ConnectionDoesNotExistError",
    "ConnectionFailureError", "PostgresConnectionError", "ClientCannotConnectError",
    "InternalClientError", "AdminShutdownError", "CrashShutdownError",
})
# query_canceled (statement_timeout), lock_not_available (lock_timeout).
_SQLSTATE_OUTAGES = frozenset({"57014", "55P03"})
_REDIS_OUTAGES = frozenset({"ConnectionError", "TimeoutError", "BusyLoadingError"})
