"""Run a unit of work (a function of a sync Connection) in as few thread hops as possible.

With aiosqlite every statement is a round trip to the connection's thread
(hundreds of µs each on a busy host), so a unit of five statements paid five.
On SQLite a UnitRunner instead runs the whole unit on one dedicated writer
thread with a plain sqlite3 connection: one hop, and writes are serialised in
the process as SQLite serialises them anyway (no busy-handler sleeps). On
PostgreSQL the unit runs through the async engine's greenlet bridge
(`run_sync`), where each statement is a network round trip regardless.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, TextClause, bindparam, create_engine, event, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.dml import Insert

from gatehouse.store.db.engine import sqlite_pragmas, sync_url

T = TypeVar("T")
R = TypeVar("R")
DIALECTS = ("postgresql", "sqlite")


def dialect_module(name: str) -> ModuleType:
    """`sqlalchemy.dialects.<name>` (postgresql or sqlite), imported when first asked for: a
    server on SQLite never loads PostgreSQL's dialect (1.2 MB per worker, bench/RESULTS.md)."""
    if name not in DIALECTS:
        raise KeyError(name)
    return importlib.import_module(f"sqlalchemy.dialects.{name}")


class upsert_per_dialect:  # used like the function it replaced
    """An INSERT ... ON CONFLICT, built by `build(dialect module)`, as one statement per
    dialect that SQLAlchemy's compiled cache keeps; `self[dialect name]` compiles it the first
    time that dialect asks.

    SQLAlchemy never caches the dialects' ON CONFLICT inserts (their `inherit_cache` is
    False), so each execution compiled it again: 8 % of a rotating refresh's CPU
    (bench/RESULTS.md). The text is SQLAlchemy's own compilation with every column bound by
    name and typed as its column (so `UTCDateTime` still converts); a unit must pass them all.
    """

    def __init__(self, build: Callable[[Any], Insert]) -> None:
        self._build = build
        self._prepared: dict[str, TextClause] = {}

    def __getitem__(self, name: str) -> TextClause:
        prepared = self._prepared.get(name)
        if prepared is None:  # two threads may both compile it once: the same text
            module = dialect_module(name)
            stmt = self._build(module)
            columns: dict[str, Any] = {c.key: bindparam(c.key) for c in stmt.table.columns}
            compiled = stmt.values(columns).compile(dialect=module.dialect(paramstyle="named"))
            prepared = self._prepared[name] = text(str(compiled)).bindparams(
                *(bindparam(key, type_=bound.type) for key, bound in compiled.binds.items()))
        return prepared


class UnitRunner:
    def __init__(self, engine: AsyncEngine, url: str) -> None:
        self.engine = engine
        self._sync: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        if engine.dialect.name == "sqlite" and ":memory:" not in url:
            self._sync = create_engine(sync_url(url), pool_size=1, max_overflow=0,
                                       pool_reset_on_return=None)
            event.listen(self._sync, "connect", sqlite_pragmas)
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gatehouse-sqlite")

    def _in_thread(self, fn: Callable[..., T], transaction: bool, *args: Any) -> T:
        assert self._sync is not None
        with self._sync.connect() as conn:
            if not transaction:
                result = fn(conn, *args)
                conn.rollback()
                return result
            with conn.begin():
                return fn(conn, *args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(conn, *args)` as a read of one statement.

        On PostgreSQL it runs in autocommit: no BEGIN and no ROLLBACK round trips
        around a single SELECT.
        """
        if self._thread is not None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, self._in_thread, fn, False, *args)
        return await self._autocommit(fn, *args)

    async def run_atomic(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a write unit that is atomic by itself: one statement on PostgreSQL (in
        autocommit, one round trip), a transaction on the SQLite writer thread."""
        if self._thread is not None:
            return await self.run_in_transaction(fn, *args)
        return await self._autocommit(fn, *args)

    async def read_then_write(
        self, read: Callable[..., R], args: tuple[Any, ...],
        decide: Callable[[R], tuple[Any, ...] | None], write: Callable[..., T],
    ) -> tuple[R, T | None]:
        """`read(conn, *args)` as `run` does, then `decide(what it read)`: None to stop
        there, or the arguments of `write(conn, *those)`, run as `run_atomic` does. One
        trip for both (the refresh's lookup and rotation), and the same two transactions
        as two calls would give; `decide` runs on the unit's thread, so it must not block
        (it may raise: the exception is the caller's)."""
        if self._thread is not None:
            # _read_decide_write ends its own transactions; _in_thread's rollback is a no-op.
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, self._in_thread, _read_decide_write,
                                              False, read, args, decide, write, True)
        return await self._autocommit(_read_decide_write, read, args, decide, write, False)

    async def _autocommit(self, fn: Callable[..., T], *args: Any) -> T:
        async with self.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            return await conn.run_sync(fn, *args)

    async def run_in_transaction(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(conn, *args)` in one transaction, committed when it returns."""
        if self._thread is not None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, self._in_thread, fn, True, *args)
        async with self.engine.begin() as conn:
            return await conn.run_sync(fn, *args)

    def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True)
        if self._sync is not None:
            self._sync.dispose()


def _read_decide_write(
    conn: Connection, read: Callable[..., R], args: tuple[Any, ...],
    decide: Callable[[R], tuple[Any, ...] | None], write: Callable[..., T], transactions: bool,
) -> tuple[R, T | None]:
    found = read(conn, *args)
    if transactions:
        conn.rollback()  # the read's own transaction ends here, as `run` ends it
    write_args = decide(found)
    if write_args is None:
        return found, None
    if not transactions:  # PostgreSQL in autocommit: the write is one atomic statement
        return found, write(conn, *write_args)
    with conn.begin():
        return found, write(conn, *write_args)
