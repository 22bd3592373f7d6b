"""aiosqlite with one thread hop per statement instead of four.

SQLAlchemy's aiosqlite adapter awaits `cursor()`, `execute()`, `fetchall()`
and `close()` separately, and aiosqlite sends each to the connection's
thread and back: about 60-350 µs each depending on load, which made a token
refresh (five statements) cost milliseconds of pure hand-offs. Here
`cursor()` is free and `execute()` runs execute + fetchall + close in one
trip; the other awaits answer from memory.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite


class OneHopCursor:
    arraysize = 1

    def __init__(self, connection: OneHopConnection) -> None:
        self._connection = connection
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: list[Any] = []

    def _run(self, method: str, sql: str, parameters: Any) -> tuple[Any, list[Any], int, int | None]:
        cursor = self._connection._conn.cursor()
        try:
            getattr(cursor, method)(sql, parameters)
            rows = cursor.fetchall() if cursor.description else []
            return cursor.description, rows, cursor.rowcount, cursor.lastrowid
        finally:
            cursor.close()

    async def execute(self, sql: str, parameters: Any = None) -> OneHopCursor:
        result = await self._connection._execute(self._run, "execute", sql, parameters or ())
        self.description, self._rows, self.rowcount, self.lastrowid = result
        return self

    async def executemany(self, sql: str, parameters: Sequence[Any]) -> OneHopCursor:
        result = await self._connection._execute(self._run, "executemany", sql, parameters)
        self.description, self._rows, self.rowcount, self.lastrowid = result
        return self

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        size = size or self.arraysize
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    async def close(self) -> None:
        self._rows = []


class OneHopConnection(aiosqlite.Connection):
    async def cursor(self) -> OneHopCursor:  # type: ignore[override]
        return OneHopCursor(self)

    async def _connect(self) -> OneHopConnection:
        # aiosqlite stops its worker thread when the connection cannot be opened
        # (missing directory, unreadable file) but does not wait for it: the thread
        # then answers into an event loop that may have closed meanwhile, and raises
        # "Event loop is closed" from the thread. Wait for the stop before raising.
        if self._connection is None:
            opened = asyncio.get_running_loop().create_future()
            self._tx.put_nowait((opened, self._connector))
            try:
                self._connection = await opened
            except BaseException:
                stopped = self.stop()
                if stopped is not None:
                    await asyncio.wait({stopped}, timeout=5)
                raise
        return self


def creator(path: str, **kwargs: Any) -> Any:
    """An `async_creator` for create_async_engine."""

    async def connect() -> OneHopConnection:
        connection = OneHopConnection(lambda: sqlite3.connect(path, **kwargs), 64)
        connection._thread.daemon = True  # as SQLAlchemy does: never block interpreter exit
        return await connection

    return connect
