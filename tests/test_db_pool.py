"""PostgreSQL pool limits (API.md §6, §7; issue 12): a request never hangs on the database.

Requests are made slow the way production makes them slow: the test holds an
exclusive lock on the token tables from its own connection, so refreshes block
inside PostgreSQL while holding a pooled connection.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from gatehouse.store.db.engine import sync_url
from tests.conftest import asgi_client, login


@pytest.fixture
def backend() -> str:
    """The pool and statement_timeout are PostgreSQL's."""
    return "postgresql"


@contextmanager
def tables_locked(database_url: str) -> Iterator[None]:
    """Hold ACCESS EXCLUSIVE on the token tables from another connection until the block ends."""
    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as conn, conn.begin():
            conn.execute(text("LOCK TABLE sessions, refresh_tokens IN ACCESS EXCLUSIVE MODE"))
            yield
    finally:
        engine.dispose()


def sample(metrics: bytes, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+]+)$", metrics.decode(), re.M)
    assert match, name
    return float(match.group(1))


@pytest.mark.asyncio
async def test_exhausted_pool_answers_503_after_the_pool_timeout(
    make_app: Any, alice: Any, database_url: str,
) -> None:
    """A pool of 2 and 50 concurrent refreshes blocked in the database: every one answers 503
    service_unavailable with Retry-After within seconds (never a hang, never a 500), the pool
    timeouts are counted, and the pool gauges read 2 of 2."""
    app = make_app(GATEHOUSE_DB_POOL_SIZE=2, GATEHOUSE_DB_POOL_TIMEOUT=1,
                   GATEHOUSE_DB_STATEMENT_TIMEOUT=3, GATEHOUSE_AUTH_RATE_LIMIT="1000/minute")
    metrics = app.state.ctx.metrics
    async with asgi_client(app) as c:
        tokens = await login(c)
        refresh = {"refresh_token": tokens["refresh_token"]}
        with tables_locked(database_url):
            started = time.monotonic()
            pending = [asyncio.create_task(c.post("/api/v1/auth/refresh", json=refresh))
                       for _ in range(50)]
            # While the two pooled connections wait on the lock (up to the 3 s statement
            # timeout), the gauges read 2 of 2. Polled: on a loaded CI machine the second
            # request can take longer than a fixed 0.5 s to check its connection out.
            deadline = time.monotonic() + 2.5
            while True:
                await asyncio.sleep(0.05)
                in_use, size = (sample(metrics.render(), n) for n in
                                ("gatehouse_db_pool_in_use", "gatehouse_db_pool_size"))
                if (in_use, size) == (2, 2) or time.monotonic() > deadline:
                    break
            async with asyncio.timeout(20):  # "never a hang"
                answers = await asyncio.gather(*pending)
            took = time.monotonic() - started
        after = await c.post("/api/v1/auth/refresh", json=refresh)
    assert (in_use, size) == (2, 2)
    assert {(r.status_code, r.json()["code"]) for r in answers} == {(503, "service_unavailable")}
    assert all(r.headers["retry-after"] == "5" for r in answers)
    timeouts = sample(metrics.render(), "gatehouse_db_pool_timeouts_total")
    assert timeouts >= 40, timeouts  # all but the few that got a connection
    assert took < 15
    assert after.status_code == 200, after.text  # the lock gone, the pool serves again


@pytest.mark.asyncio
async def test_statement_timeout_cancels_a_blocked_statement_with_503(
    make_app: Any, alice: Any, database_url: str,
) -> None:
    """GATEHOUSE_DB_STATEMENT_TIMEOUT: a statement blocked in PostgreSQL is cancelled after it,
    and the request answers 503 service_unavailable with Retry-After, not 500."""
    app = make_app(GATEHOUSE_DB_STATEMENT_TIMEOUT=1, GATEHOUSE_RETRY_AFTER=2)
    async with asgi_client(app) as c:
        tokens = await login(c)
        with tables_locked(database_url):
            started = time.monotonic()
            async with asyncio.timeout(10):
                r = await c.post("/api/v1/auth/refresh",
                                 json={"refresh_token": tokens["refresh_token"]})
            took = time.monotonic() - started
    assert (r.status_code, r.json()["code"]) == (503, "service_unavailable"), r.text
    assert r.headers["retry-after"] == "2"
    assert 0.9 < took < 5
    assert sample(app.state.ctx.metrics.render(), "gatehouse_db_pool_timeouts_total") == 0
