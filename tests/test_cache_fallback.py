"""GATEHOUSE_CACHE_FALLBACK under a real Redis outage (issue 12, DESIGN.md "Failure rules").

Each test starts its own `redis-server` on a free port and real `gatehouse serve`
processes on PostgreSQL, kills Redis under steady authenticated traffic and
starts it again on the same port.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from gatehouse.context import Context
from gatehouse.settings import Settings
from tests._servers import RedisProcess
from tests.conftest import PASSWORD, Server, create_user

METRICS_TOKEN = "metrics-scrape-token-for-fallback-tests"
EMAIL = "alice@example.com"


@pytest.fixture
def backend() -> str:
    """Several instances on one Redis is the PostgreSQL deployment."""
    return "postgresql"


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    server = RedisProcess()
    server.start()
    try:
        yield server
    finally:
        server.kill()


def seed(settings: Settings) -> None:
    async def work() -> None:
        ctx = Context.build(settings)
        try:
            await create_user(ctx, EMAIL)
        finally:
            await ctx.close()

    asyncio.run(work())


def gauge(server: Server) -> float:
    text = httpx.get(f"{server.url}/metrics",
                     headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=5).text
    match = re.search(r"^gatehouse_cache_fallback_active ([0-9.]+)$", text, re.M)
    assert match, text[:500]
    return float(match.group(1))


def wait_for(check: Callable[[], bool], timeout: float) -> float:
    """Seconds until `check()` held; fails after `timeout`."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "condition not reached in time"
        time.sleep(0.1)
    return time.monotonic() - started


class Traffic:
    """Steady authenticated traffic without client retries: every answer is recorded."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = httpx.Client(base_url=url, timeout=10)
        r = self.client.post("/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD})
        assert r.status_code == 200, r.text
        self.tokens: dict[str, Any] = r.json()
        self.answers: list[tuple[str, int]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._reads) for _ in range(4)]
        self.threads.append(threading.Thread(target=self._refreshes))

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()
        self.client.close()

    def _record(self, what: str, status: int) -> None:
        with self.lock:
            self.answers.append((what, status))

    def _reads(self) -> None:
        while not self.stop.is_set():
            token = self.tokens["access_token"]
            r = self.client.get("/api/v1/users/profile", headers={"Authorization": f"Bearer {token}"})
            self._record("profile", r.status_code)
            time.sleep(0.02)

    def _refreshes(self) -> None:
        while not self.stop.wait(0.7):
            r = self.client.post("/api/v1/auth/refresh",
                                 json={"refresh_token": self.tokens["refresh_token"]})
            self._record("refresh", r.status_code)
            if r.status_code == 200:
                self.tokens = r.json()

    def failures(self) -> list[tuple[str, int]]:
        return [a for a in self.answers if a[1] != 200]


def remaining(r: httpx.Response) -> int:
    return int(r.headers["ratelimit-remaining"])


def test_redis_killed_and_restarted_under_traffic(
    redis_server: RedisProcess, make_server: Callable[..., Server],
    make_settings: Callable[..., Settings],
) -> None:
    """Redis killed under authenticated traffic: zero failed requests or refreshes, the fallback
    gauge reads 1 and one warning is logged; Redis restarted on the same port: the gauge is back
    to 0 within seconds, one info line, and a rate limit is shared with another instance again."""
    env = {"REDIS_URL": redis_server.url, "GATEHOUSE_METRICS_TOKEN": METRICS_TOKEN,
           "GATEHOUSE_AUTH_RATE_LIMIT": "300/minute", "GATEHOUSE_RATE_LIMIT": "6000/minute"}
    seed(make_settings(**env))
    with ThreadPoolExecutor(2) as pool:  # two instances on one Redis and one database
        a, b = pool.map(lambda _: make_server(**env), range(2))
    with Traffic(a.url) as traffic:
        time.sleep(1.0)
        redis_server.kill()
        time.sleep(2.5)
        assert gauge(a) == 1.0
        during = len(traffic.answers)
        redis_server.start()
        recovered_in = wait_for(lambda: gauge(a) == 0.0, timeout=5)
        time.sleep(1.0)
    assert len(traffic.answers) > during > 40
    assert traffic.failures() == []
    assert sum(1 for what, _ in traffic.answers if what == "refresh") >= 5
    logs = a.logs()
    assert logs.count('"cache_fallback_active"') == 1, logs[-3000:]
    assert logs.count('"cache_restored"') == 1
    assert recovered_in < 4
    # Shared again: the other instance on the same Redis sees the first one's bucket.
    wait_for(lambda: gauge(b) == 0.0, timeout=5)
    with httpx.Client() as client:
        for _ in range(3):
            client.post(f"{a.url}/api/v1/auth/register", json={})
        first = remaining(client.post(f"{a.url}/api/v1/auth/register", json={}))
        second = remaining(client.post(f"{b.url}/api/v1/auth/register", json={}))
    assert second == first - 1


def test_deny_answers_503_on_login_and_keeps_validating(
    redis_server: RedisProcess, make_server: Callable[..., Server],
    make_settings: Callable[..., Settings],
) -> None:
    """With GATEHOUSE_CACHE_FALLBACK=deny and Redis down, login answers 503 service_unavailable
    with Retry-After, while access tokens keep validating; logins work again once Redis is back."""
    env = {"REDIS_URL": redis_server.url, "GATEHOUSE_METRICS_TOKEN": METRICS_TOKEN,
           "GATEHOUSE_CACHE_FALLBACK": "deny", "GATEHOUSE_RETRY_AFTER": "3"}
    seed(make_settings(**env))
    server = make_server(**env)
    credentials = {"email": EMAIL, "password": PASSWORD}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        tokens = client.post("/api/v1/auth/login", json=credentials).json()
        redis_server.kill()
        denied = client.post("/api/v1/auth/login", json=credentials)
        profile = client.get("/api/v1/users/profile",
                             headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert gauge(server) == 1.0
        redis_server.start()
        wait_for(lambda: gauge(server) == 0.0, timeout=5)
        again = client.post("/api/v1/auth/login", json=credentials)
    assert (denied.status_code, denied.json()["code"]) == (503, "service_unavailable")
    assert denied.headers["retry-after"] == "3"
    assert profile.status_code == 200
    assert again.status_code == 200
