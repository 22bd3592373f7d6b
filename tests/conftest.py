"""Shared fixtures: settings, apps on SQLite or PostgreSQL, HTTP clients, real servers.

PostgreSQL and Redis are real servers: GATEHOUSE_TEST_DATABASE_URL (an admin
URL; a fresh database is created per run and dropped after) and
GATEHOUSE_TEST_REDIS_URL. They default to this machine's local servers; a test
that needs one fails, never skips, when it is not reachable (`.ci/run` starts them).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from gatehouse.app import create_app
from gatehouse.audit.service import CLI
from gatehouse.context import Context
from gatehouse.settings import Settings, load_settings
from gatehouse.store.db import migrate

PG_ADMIN_URL = os.environ.get(
    "GATEHOUSE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _worker_redis_url(url: str) -> str:
    """Under pytest-xdist (.ci/run) each worker has its own Redis database: gw0 the URL's,
    gw1 the one below, and so on, so one worker's FLUSHDB never empties another's keys."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return url
    parts = urlsplit(url)
    db = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(db - int(worker[2:])) % 16}"))


REDIS_URL = _worker_redis_url(
    os.environ.get("GATEHOUSE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
if "GATEHOUSE_TEST_REDIS_URL" in os.environ:  # for the tests that read it themselves
    os.environ["GATEHOUSE_TEST_REDIS_URL"] = REDIS_URL

JWT_SECRET = "test-jwt-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
ENCRYPTION_KEY = "0123456789abcdefghijklmnopqrstuv"
PASSWORD = "correct-horse-battery-staple-1"

# Every variable a test could inherit from the shell is pinned here.
BASE_ENV = {
    "JWT_SECRET": JWT_SECRET,
    "ENCRYPTION_KEY": ENCRYPTION_KEY,
    # Cheaper argon2 keeps the suite fast; production defaults are tested in test_passwords.
    "GATEHOUSE_ARGON2_MEMORY_KIB": "8192",
    "GATEHOUSE_ARGON2_TIME_COST": "1",
    "GATEHOUSE_INSECURE_COOKIES": "0",
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests see only the variables they set, and never a developer's .env file."""
    for name in list(os.environ):
        if name.startswith("GATEHOUSE_") and not name.startswith("GATEHOUSE_TEST_"):
            monkeypatch.delenv(name)
    for name in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET", "ENCRYPTION_KEY", "PUBLIC_API_URL",
                 "CORS_ORIGINS", "JWT_ALGORITHM", "JWT_KEYS_DIR", "ACCESS_TOKEN_TTL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


# -- databases -------------------------------------------------------------------------


class PostgresDatabases:
    """One fresh database per test run on the test server; tables emptied between tests."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.name = f"gatehouse_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        url = make_url(admin_url.replace("postgres://", "postgresql://", 1))
        self.url = url.set(database=self.name).render_as_string(hide_password=False)
        self._admin = create_engine(
            url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False),
            isolation_level="AUTOCOMMIT",
        )
        self.migrated = False

    def create(self) -> None:
        with self._admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))

    def fresh(self) -> str:
        """The test database at head with empty tables."""
        if not self.migrated:
            migrate.upgrade(self.url)
            self.migrated = True
        else:
            engine = create_engine(migrate.sync_url(self.url))
            with engine.begin() as conn:
                conn.execute(text(
                    "TRUNCATE users, sessions, refresh_tokens, api_keys, audit_events, "
                    "token_not_before, push_subscriptions, email_links, user_mfa, mfa_recovery_codes "
                    "RESTART IDENTITY CASCADE"
                ))
            engine.dispose()
        return self.url

    def drop(self) -> None:
        with self._admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self._admin.dispose()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabases]:
    dbs = PostgresDatabases(PG_ADMIN_URL)
    try:
        dbs.create()
    except Exception as exc:  # fail loudly: CI must run these
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not reachable ({type(exc).__name__}); "
                    "start it (see .ci/run) or set GATEHOUSE_TEST_DATABASE_URL")
    yield dbs
    dbs.drop()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """Which database the app uses: every database test runs on both (issue 2)."""
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "postgresql":
        pg: PostgresDatabases = request.getfixturevalue("postgres")
        return pg.fresh()
    url = f"sqlite:///{tmp_path / 'gatehouse.db'}"
    migrate.upgrade(url)
    return url


# -- settings, app, clients ---------------------------------------------------------------


@pytest.fixture
def make_settings(database_url: str) -> Callable[..., Settings]:
    def factory(**env: Any) -> Settings:
        values = {**BASE_ENV, "DATABASE_URL": database_url, **{k: str(v) for k, v in env.items()}}
        return load_settings(**values)

    return factory


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest_asyncio.fixture
async def make_app(make_settings: Callable[..., Settings]) -> AsyncIterator[Callable[..., Any]]:
    contexts: list[Context] = []

    def factory(**env: Any) -> Any:
        app = create_app(make_settings(**env))
        contexts.append(app.state.ctx)
        return app

    yield factory
    for ctx in contexts:
        await ctx.close()


@pytest_asyncio.fixture
async def app(make_app: Callable[..., Any]) -> Any:
    return make_app()


@pytest.fixture
def ctx(app: Any) -> Context:
    context: Context = app.state.ctx
    return context


def asgi_client(app: Any, client_ip: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(client_ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000")


@pytest_asyncio.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as c:
        yield c


async def create_user(
    ctx: Context, email: str = "alice@example.com", roles: list[str] | None = None,
    password: str = PASSWORD, name: str = "Alice",
) -> Any:
    return await ctx.accounts.create(
        email=email, password=password, name=name, roles=roles or ["user"], actor=CLI
    )


async def login(client: httpx.AsyncClient, email: str = "alice@example.com",
                password: str = PASSWORD) -> dict[str, Any]:
    r = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


@pytest_asyncio.fixture
async def alice(ctx: Context) -> Any:
    return await create_user(ctx)


@pytest_asyncio.fixture
async def admin(ctx: Context) -> Any:
    return await create_user(ctx, "root@example.com", ["admin"], name="Root")


# -- real servers -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A real `gatehouse serve` process, stopped by PID."""

    def __init__(self, env: dict[str, str], workdir: Path, workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **BASE_ENV, "PUBLIC_API_URL": self.url, **env}
        self.workdir = workdir
        self.workers = workers
        self.log_path = workdir / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> Server:  # a loaded 2-core CI machine needs > 30 s
        # The child keeps its own descriptor; ours is closed at once (no ResourceWarning).
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "gatehouse", "serve", "--port", str(self.port),
                 "--workers", str(self.workers)],
                env=self.env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not become healthy")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


@pytest.fixture
def make_server(tmp_path: Path, database_url: str) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def factory(workers: int = 1, **env: Any) -> Server:
        merged = {"DATABASE_URL": database_url, **{k: str(v) for k, v in env.items()}}
        server = Server(merged, tmp_path, workers).start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m gatehouse ...` as a user would, with the test env."""
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "gatehouse", *args],
        env={**os.environ, **BASE_ENV, **(env or {})}, cwd=cwd, capture_output=True, text=True,
        input=input_text, timeout=120, check=False,
    )


@pytest.fixture(scope="session", autouse=True)
def _json_logs() -> None:
    """Tests log the way production does: JSON lines on stdout."""
    from gatehouse.ops.logging import configure_logging

    configure_logging()


@pytest.fixture
def openphone() -> Iterator[Any]:
    """A local stand-in for OpenPhone's messages API (tests/_fake_openphone.py)."""
    from tests._fake_openphone import FakeOpenPhone

    fake = FakeOpenPhone().start()
    yield fake
    fake.close()
