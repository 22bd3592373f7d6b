"""Helpers for tests that run real servers: a `redis-server` of the test's own, seeding users,
reading refresh counts from `/metrics`, and a round-robin "load balancer" transport.

Kept out of conftest.py because only the multi-process tests (issue 5, issue 12) need them.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import time
from typing import Any

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from gatehouse.context import Context
from gatehouse.settings import Settings
from gatehouse.store.db.engine import sync_url
from tests.conftest import Server, create_user, free_port

METRICS_TOKEN = "metrics-scrape-token-for-tests"


class RedisProcess:
    """A `redis-server` of the test's own, without persistence, stopped by PID."""

    def __init__(self, *args: str, config: str | None = None, **client: Any) -> None:
        """`args` are more redis-server options (TLS, cluster, sentinel: the last one of an
        option wins), `config` a config file read first (a sentinel needs one), `client` the
        redis-py options the readiness ping needs (e.g. TLS)."""
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.args, self.config, self.client = list(args), config, client

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", *([self.config] if self.config else []), "--port", str(self.port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no",
             *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, **self.client)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


def seed(settings: Settings, *users: tuple[str, list[str]]) -> None:
    """Create `users` (email, roles) with the test password in the settings' database."""
    async def work() -> None:
        ctx = Context.build(settings)
        try:
            for email, roles in users:
                await create_user(ctx, email, roles)
        finally:
            await ctx.close()

    asyncio.run(work())


def refresh_counts(url: str) -> dict[str, float]:
    """`gatehouse_auth_refresh_total` by result, from a server run with METRICS_TOKEN."""
    r = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    r.raise_for_status()
    for family in text_string_to_metric_families(r.text):
        if family.name == "gatehouse_auth_refresh":
            return {
                s.labels["result"]: s.value for s in family.samples if s.name.endswith("_total")
            }
    raise AssertionError("no refresh metric")


def revoked_sessions(database_url: str) -> int:
    """How many sessions the database holds as revoked (for "no session was lost")."""
    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as conn:
            return int(conn.scalar(text(
                "SELECT count(*) FROM sessions WHERE revoked_at IS NOT NULL")) or 0)
    finally:
        engine.dispose()


class RoundRobin(httpx.BaseTransport):
    """Sends each request to the next of several instances, as a load balancer without health
    checks does: a request to an instance that is down fails, and the client's retry goes on
    to the next one."""

    def __init__(self, servers: list[Server]) -> None:
        self.ports = [s.port for s in servers]
        self._turn = itertools.count()
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        port = self.ports[next(self._turn) % len(self.ports)]
        request.url = request.url.copy_with(port=port)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()
