"""The Python SDK against real `gatehouse serve` processes (issue 5's acceptance checks).

Refreshes are counted on the server side from `gatehouse_auth_refresh_total`:
`success` is a real rotation, `grace` a second refresh of an already-rotated
token (what a racing client causes) and `reused` a theft detection.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from gatehouse.client import (
    AsyncClient,
    Client,
    FileTokenStore,
    Forbidden,
    MemoryTokenStore,
    RetryPolicy,
    SessionExpired,
)
from gatehouse.settings import Settings, load_settings
from gatehouse.store.db import migrate
from tests._servers import METRICS_TOKEN, refresh_counts, seed
from tests.conftest import BASE_ENV, PASSWORD, PostgresDatabases, Server

LOAD_ENV = {
    "ACCESS_TOKEN_TTL": "2",
    "GATEHOUSE_RATE_LIMITS": "off",
    "GATEHOUSE_METRICS_TOKEN": METRICS_TOKEN,
}
EMAIL = "sdk@example.com"
DURATION = 10.0
#: Seconds a call may spend retrying while the server restarts (test_server_restart_...).
RESTART_BUDGET = 120.0


def assert_one_refresh_per_expiry(counts: dict[str, float], duration: float, span: float) -> None:
    """Check the server's refresh counts after ``duration`` s of traffic, ``span`` s login to end.

    Tokens live 2 s and are refreshed in their last 20 %, and a token's clock starts when the
    request that got it was sent: so refreshes are sent at least 1.6 s apart, and no more than
    int(span / 1.6) fit between the login and the last request (one more is a double refresh).
    The span, not the traffic time, bounds them: on a loaded machine the login, a worker
    process's start and the last requests take a while. 10 s of traffic with 2 s tokens need
    at least 4 refreshes.
    """
    assert counts["grace"] == 0, counts
    assert counts["reused"] == 0, counts
    assert duration / 2 - 1 <= counts["success"] <= int(span / 1.6), (counts, span)


@pytest.fixture
def loaded_server(
    make_server: Callable[..., Server], make_settings: Callable[..., Settings]
) -> Server:
    seed(make_settings(), (EMAIL, ["user"]), ("boss@example.com", ["admin"]))
    return make_server(**LOAD_ENV)


def test_64_threads_across_expiries_refresh_once_per_expiry(loaded_server: Server) -> None:
    """64 threads share one Client for 10 s of 2 s tokens: no failure, one refresh per expiry."""
    failures: list[BaseException] = []
    done = [0] * 64  # successful requests per thread
    started = time.monotonic()
    with Client(loaded_server.url) as gh:
        gh.login(EMAIL, PASSWORD)
        deadline = time.monotonic() + DURATION

        def worker(thread: int) -> None:
            while time.monotonic() < deadline:
                try:
                    assert gh.get("/api/v1/auth/validate").json()["active"] is True
                    done[thread] += 1
                except BaseException as exc:  # every failure is a defect here
                    failures.append(exc)
                time.sleep(0.05)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    span = time.monotonic() - started
    assert failures == []
    assert min(done) >= 1, done  # see the 256-task test for why there is no rate floor
    assert_one_refresh_per_expiry(refresh_counts(loaded_server.url), DURATION, span)


def test_256_asyncio_tasks_across_expiries_refresh_once_per_expiry(loaded_server: Server) -> None:
    """256 tasks share an AsyncClient for 10 s of 2 s tokens: no failure, one refresh per expiry."""

    async def main() -> tuple[list[BaseException], list[int]]:
        failures: list[BaseException] = []
        done = [0] * 256  # successful requests per task
        async with AsyncClient(loaded_server.url) as gh:
            await gh.login(EMAIL, PASSWORD)
            deadline = time.monotonic() + DURATION

            async def worker(task: int) -> None:
                while time.monotonic() < deadline:
                    try:
                        r = await gh.get("/api/v1/auth/validate")
                        assert r.json()["active"] is True
                        done[task] += 1
                    except Exception as exc:  # every failure is a defect here
                        failures.append(exc)
                    await asyncio.sleep(0.2)

            await asyncio.gather(*[worker(task) for task in range(256)])
        return failures, done

    started = time.monotonic()
    failures, done = asyncio.run(main())
    span = time.monotonic() - started
    assert failures == []
    # Every task got answers. The SDK refreshes only for a request, so the refresh count's
    # lower bound shows the traffic crossed every expiry. No rate floor: the client's CPU
    # sets the rate (40 to 400 req/s here, by machine load), not the SDK.
    assert min(done) >= 1, done
    assert_one_refresh_per_expiry(refresh_counts(loaded_server.url), DURATION, span)


WORKER = """
import json, sys, threading, time
from gatehouse.client import Client, FileTokenStore
url, path, email, password = sys.argv[1:5]
duration = float(sys.argv[5])
store = FileTokenStore(path)
failures, done = [], [0]
with Client(url, token_store=store) as gh:
    gh.login(email, password)
    deadline = time.monotonic() + duration
    def work():
        while time.monotonic() < deadline:
            try:
                gh.get("/api/v1/users/profile"); done[0] += 1
            except Exception as exc:
                failures.append(repr(exc))
            time.sleep(0.05)
    threads = [threading.Thread(target=work) for _ in range(4)]
    [t.start() for t in threads]; [t.join() for t in threads]
print(json.dumps({"failures": failures[:5], "failed": len(failures), "done": done[0]}))
"""


def test_two_processes_sharing_a_file_store_never_reuse_a_refresh_token(
    loaded_server: Server, tmp_path: Path
) -> None:
    """Two processes on one FileTokenStore for 10 s across expiries: no reuse, no failure."""
    store = tmp_path / "tokens.json"
    started = time.monotonic()
    with Client(loaded_server.url, token_store=FileTokenStore(store)) as gh:
        gh.login(EMAIL, PASSWORD)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                loaded_server.url,
                str(store),
                EMAIL,
                PASSWORD,
                str(DURATION),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    span = time.monotonic() - started  # includes starting the two interpreters
    assert [r["failed"] for r in results] == [0, 0], results
    assert all(r["done"] > 50 for r in results)
    assert_one_refresh_per_expiry(refresh_counts(loaded_server.url), DURATION, span)


def test_server_restart_mid_traffic_keeps_the_session(loaded_server: Server) -> None:
    """Requests in flight while the server restarts are retried and succeed; the session lives."""
    failures: list[BaseException] = []
    done = [0]
    stop = threading.Event()
    # What is tested is that every call rides out the restart, not how fast this machine
    # restarts a server: on a loaded 2-core machine that can outlast the default 30 s budget
    # (tests/client proves the default rides out 20 s of refused connections).
    patient = RetryPolicy(max_attempts=100, budget=RESTART_BUDGET)
    with Client(loaded_server.url, retry=patient) as gh:
        gh.login(EMAIL, PASSWORD)
        session_before = gh.get("/api/v1/auth/validate").json()["session_id"]

        def worker() -> None:
            while not stop.is_set():
                try:
                    gh.get("/api/v1/users/profile")
                    done[0] += 1
                except BaseException as exc:  # every failure is a defect here
                    failures.append(exc)
                time.sleep(0.05)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        down_at = time.monotonic()
        loaded_server.stop()
        time.sleep(1.0)  # requests now hit a closed port and must be retried
        loaded_server.start(timeout=RESTART_BUDGET - 10)
        down_for = time.monotonic() - down_at
        time.sleep(3.0)  # across at least one token expiry after the restart
        stop.set()
        for t in threads:
            t.join()
        session_after = gh.get("/api/v1/auth/validate").json()["session_id"]
    assert failures == [], f"server down for {down_for:.1f} s"
    assert session_after == session_before


def test_forbidden_keeps_the_session(loaded_server: Server) -> None:
    """A 403 raises Forbidden and leaves the stored session usable."""
    store = MemoryTokenStore()
    with Client(loaded_server.url, token_store=store) as gh:
        gh.login(EMAIL, PASSWORD)
        with pytest.raises(Forbidden) as info:
            gh.get("/api/v1/admin/users")
        assert (info.value.status, info.value.code) == (403, "forbidden")
        assert info.value.request_id
        assert store.load() is not None
        assert gh.profile()["email"] == EMAIL


def test_refresh_reused_ends_the_session(
    make_server: Callable[..., Server], make_settings: Callable[..., Settings]
) -> None:
    """On refresh_reused from the server the SDK raises SessionExpired and clears its store."""
    seed(make_settings(), (EMAIL, ["user"]))
    server = make_server(**{**LOAD_ENV, "REFRESH_GRACE_SECONDS": "0"})
    store = MemoryTokenStore()
    with Client(server.url, token_store=store) as gh:
        gh.login(EMAIL, PASSWORD)
        stolen = store.load()
        assert stolen is not None
        # Someone else (a thief) rotates the token first; our copy is now superseded.
        r = httpx.post(
            f"{server.url}/api/v1/auth/refresh", json={"refresh_token": stolen.refresh_token}
        )
        assert r.status_code == 200
        time.sleep(2.2)  # our access token expires, so the SDK must refresh with the stale token
        with pytest.raises(SessionExpired) as info:
            gh.profile()
        assert info.value.code == "refresh_reused"
        assert store.load() is None


def test_503_with_retry_after_is_retried_until_the_database_is_back(
    postgres: PostgresDatabases, tmp_path: Path
) -> None:
    """While the database is down the server answers 503 + Retry-After; the SDK waits, succeeds."""
    admin = create_engine(
        make_url(postgres.admin_url).set(drivername="postgresql+psycopg"),
        isolation_level="AUTOCOMMIT",
    )
    role, db = f"gh_sdk_{os.getpid()}", f"gh_sdk_{os.getpid()}"
    url = f"postgresql://{role}@127.0.0.1:5432/{db}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        conn.execute(text(f'CREATE DATABASE "{db}" OWNER "{role}"'))
    server = None
    try:
        migrate.upgrade(url)
        seed(load_settings(**BASE_ENV, DATABASE_URL=url), (EMAIL, ["user"]))
        server = Server(
            {"DATABASE_URL": url, "GATEHOUSE_RETRY_AFTER": "1", **LOAD_ENV}, tmp_path
        ).start()
        store = MemoryTokenStore()
        with Client(server.url, token_store=store) as gh:
            gh.login(EMAIL, PASSWORD)
            tokens = store.load()
            assert tokens is not None
            with admin.connect() as conn:  # the database goes away for ~2 s
                conn.execute(text(f'ALTER ROLE "{role}" CONNECTION LIMIT 0'))
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE usename = :role"
                    ),
                    {"role": role},
                )
            direct = httpx.get(
                f"{server.url}/api/v1/users/profile",
                headers={"Authorization": f"Bearer {tokens.access_token}"},
            )
            assert (direct.status_code, direct.headers.get("retry-after")) == (503, "1")

            def restore() -> None:
                time.sleep(2.0)
                with admin.connect() as conn:
                    conn.execute(text(f'ALTER ROLE "{role}" CONNECTION LIMIT -1'))

            restorer = threading.Thread(target=restore)
            restorer.start()
            started = time.monotonic()
            try:
                assert gh.profile()["email"] == EMAIL
                assert time.monotonic() - started >= 1.0  # it did wait for Retry-After
            finally:
                restorer.join()
    finally:
        if server is not None:
            server.stop()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


ROOT = Path(__file__).resolve().parents[1]
DOC_BLOCKS = re.findall(
    r"```python\n(.*?)```", (ROOT / "docs" / "sdk.md").read_text(), flags=re.DOTALL
)


@pytest.mark.parametrize("index", range(len(DOC_BLOCKS)))
def test_sdk_guide_examples_run_against_a_real_server(
    index: int,
    make_server: Callable[..., Server],
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    """Each example in docs/sdk.md runs as written against a real Gatehouse."""
    seed(make_settings(), ("guide@example.com", ["admin"]))
    server = make_server()
    env = {
        **os.environ,
        "GATEHOUSE_URL": server.url,
        "GATEHOUSE_EMAIL": "guide@example.com",
        "GATEHOUSE_PASSWORD": PASSWORD,
        "HOME": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-c", DOC_BLOCKS[index]],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
