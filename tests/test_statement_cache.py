"""A login and a rotating refresh compile no SQL once warm (bench/RESULTS.md, 2026-12-03 W2).

SQLAlchemy keeps a compiled form per statement shape; a construct it cannot cache (the
dialects' ON CONFLICT inserts) is compiled at every execution. These tests run the hot
paths twice and look at how SQLAlchemy served each statement of the second round.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event
from sqlalchemy.engine.interfaces import CacheStats

from tests.conftest import bearer, login

pytestmark = pytest.mark.asyncio


@pytest.fixture
def served() -> Iterator[list[tuple[CacheStats, str]]]:
    """(how SQLAlchemy's cache served it, SQL) for every statement any engine runs."""
    seen: list[tuple[CacheStats, str]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, context: Any,
               executemany: bool) -> None:
        if context is not None and context.compiled is not None:
            seen.append((context.cache_hit, statement))

    event.listen(Engine, "before_cursor_execute", record)
    yield seen
    event.remove(Engine, "before_cursor_execute", record)


async def _round(client: httpx.AsyncClient) -> None:
    tokens = await login(client)
    for _ in range(2):
        r = await client.post("/api/v1/auth/refresh",
                              json={"refresh_token": tokens["refresh_token"]})
        assert r.status_code == 200, r.text
        tokens = r.json()
    r = await client.get("/api/v1/users/profile", headers=bearer(tokens))
    assert r.status_code == 200, r.text


async def test_warm_logins_and_refreshes_compile_nothing(
    client: httpx.AsyncClient, alice: Any, served: list[tuple[CacheStats, str]]
) -> None:
    """The second login, its refreshes and a profile read: every statement from the cache
    (on SQLite the new-device upsert and the successor's insert were compiled each time)."""
    await _round(client)
    served.clear()
    await _round(client)

    assert len(served) >= 10, served
    assert [(how.name, sql) for how, sql in served if how is not CacheStats.CACHE_HIT] == []
