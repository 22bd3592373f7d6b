"""Revocations survive restarts (API.md §3): an instance started while the database is down
answers 503 until it knows every live revocation, a Redis that comes back empty forgets none,
and after a database restore the not-before times refuse tokens whose session row is gone.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import create_engine, delete, text

from gatehouse.store.db import migrate
from gatehouse.store.db.models import Session
from tests.conftest import (
    PASSWORD,
    REDIS_URL,
    Server,
    asgi_client,
    bearer,
    create_user,
    free_port,
    login,
    run_cli,
)

VALIDATE = "/api/v1/auth/validate"


# -- helpers ------------------------------------------------------------------------------


class DatabaseGate:
    """A TCP forwarder in front of PostgreSQL: until `open()` its port refuses connections, as
    a database host that is down does; `close()` takes it down again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []

    def open(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def status_and_code(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, (r.json().get("code", "") if r.status_code >= 400 else "")


def iat_of(token: str) -> int:
    payload = token.split(".")[1]
    value: int = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["iat"]
    return value


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def sql(database_url: str, statement: str, **params: Any) -> None:
    engine = create_engine(migrate.sync_url(database_url))
    with engine.begin() as conn:
        conn.execute(text(statement), params)
    engine.dispose()


def copy_sqlite(source_url: str, target: Path) -> str:
    """A consistent copy of a SQLite database (the backup API, as `gatehouse db backup` would)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(source_url.removeprefix("sqlite:///"))
    dst = sqlite3.connect(target)
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    return f"sqlite:///{target}"


def http_login(base: str) -> dict[str, Any]:
    r = httpx.post(f"{base}/api/v1/auth/login",
                   json={"email": "alice@example.com", "password": PASSWORD}, timeout=10)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Real `gatehouse serve` processes on any DATABASE_URL, stopped after the test; they share
    one issuer, so a token from one is a token for all (and for the ASGI apps)."""
    started: list[Server] = []

    def factory(database_url: str, **env: Any) -> Server:
        merged = {"DATABASE_URL": database_url, "JWT_ISSUER": "http://127.0.0.1:8000",
                  **{k: str(v) for k, v in env.items()}}
        server = Server(merged, tmp_path).start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


# -- an instance started while the database is down ----------------------------------------


@pytest.mark.asyncio
async def test_instance_started_while_database_is_down_answers_503_until_it_knows_revocations(
    backend: str, database_url: str, ctx: Any, client: httpx.AsyncClient,
    servers: Callable[..., Server], tmp_path: Path,
) -> None:
    """A logged-out token presented to an instance that started with its database unreachable
    gets 503 service_unavailable (never 200); once the database is back, session_revoked."""
    await create_user(ctx)
    tokens = await login(client)
    assert (await client.post("/api/v1/auth/logout", headers=bearer(tokens))).status_code == 204

    gate: DatabaseGate | None = None
    if backend == "postgresql":
        url = httpx.URL(database_url.replace("postgresql://", "http://", 1))
        gate = DatabaseGate((url.host, url.port or 5432))
        down_url = database_url.replace(f"{url.host}:{url.port or 5432}", f"127.0.0.1:{gate.port}")
    else:
        hidden = tmp_path / "not-mounted-yet" / "gatehouse.db"  # its directory does not exist
        down_url = f"sqlite:///{hidden}"
    try:
        server = servers(down_url)
        headers = bearer(tokens)
        for _ in range(3):  # the poller retries meanwhile; it must keep answering 503
            r = httpx.get(server.url + VALIDATE, headers=headers, timeout=10)
            assert status_and_code(r) == (503, "service_unavailable"), r.text
            assert int(r.headers["retry-after"]) >= 1
            time.sleep(0.3)
        assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
        ready = httpx.get(server.url + "/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"]["ok"] is False
        assert "revocations not loaded" in ready.json()["checks"]["database"]["detail"]

        if gate is not None:
            gate.open()
        else:
            copy_sqlite(database_url, hidden)

        def answered_401() -> bool:
            return httpx.get(server.url + VALIDATE, headers=headers, timeout=10).status_code != 503

        wait_for(answered_401)
        r = httpx.get(server.url + VALIDATE, headers=headers, timeout=10)
        assert status_and_code(r) == (401, "session_revoked")
        ready = httpx.get(server.url + "/readyz", timeout=10).json()
        assert ready["checks"]["database"] == {"ok": True, "detail": down_url.split(":")[0]}
        # A fresh login on the instance works once it is ready.
        fresh = http_login(server.url)
        assert httpx.get(server.url + VALIDATE, headers=bearer(fresh), timeout=10).status_code == 200
        assert "revocations_loaded" in server.logs()
    finally:
        if gate is not None:
            gate.close()


# -- Redis that comes back empty ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_redis_flushed_keeps_logged_out_tokens_revoked(
    backend: str, database_url: str, ctx: Any, servers: Callable[..., Server],
) -> None:
    """After FLUSHDB, the instance that logged a token out still refuses it, and so does an
    instance started afterwards; logout-all's not-before survives the flush too."""
    await create_user(ctx)
    store = redis.Redis.from_url(REDIS_URL)
    store.flushdb()
    first = servers(database_url, REDIS_URL=REDIS_URL)
    out, everywhere, kept = http_login(first.url), http_login(first.url), http_login(first.url)
    r = httpx.post(first.url + "/api/v1/auth/logout", headers=bearer(out), timeout=10)
    assert r.status_code == 204
    # Its session row disappears (a restore): only logout-all's not-before can refuse it.
    sql(database_url, "DELETE FROM sessions WHERE id = :sid", sid=everywhere["session_id"])
    r = httpx.post(first.url + "/api/v1/auth/logout-all", headers=bearer(kept), timeout=10)
    assert r.status_code == 204
    after = http_login(first.url)  # a login right after logout-all works
    for tokens in (out, everywhere, kept):
        r = httpx.get(first.url + VALIDATE, headers=bearer(tokens), timeout=10)
        assert status_and_code(r) == (401, "session_revoked")

    store.flushdb()
    second = servers(database_url, REDIS_URL=REDIS_URL)
    for server in (first, second):
        for tokens in (out, everywhere, kept):
            r = httpx.get(server.url + VALIDATE, headers=bearer(tokens), timeout=10)
            assert status_and_code(r) == (401, "session_revoked"), (server.url, r.text)
        assert httpx.get(server.url + VALIDATE, headers=bearer(after), timeout=10).status_code == 200
    store.close()


# -- database restored from a backup -------------------------------------------------------------


def _lose_session_rows(backend: str, database_url: str, snapshot: str | None, tmp: Path) -> str:
    """Simulate restoring a backup taken before the login: its session rows are gone.
    Returns the URL of the restored database."""
    if backend == "sqlite":
        assert snapshot is not None
        restored = tmp / "restored" / "gatehouse.db"
        restored.parent.mkdir()
        shutil.copyfile(snapshot.removeprefix("sqlite:///"), restored)
        return f"sqlite:///{restored}"
    sql(database_url, "DELETE FROM refresh_tokens")
    sql(database_url, "DELETE FROM sessions")
    return database_url


async def _act(action: str, make_app: Callable[..., Any], url: str, cwd: Path) -> None:
    """Revoke alice's sessions the way `action` says, on an instance of the restored database."""
    env = {"DATABASE_URL": url}
    if action.startswith("cli"):
        args = ["sessions", "revoke-all"] + (["--user", "alice@example.com"]
                                             if action == "cli revoke-all --user" else [])
        result = run_cli(*args, env=env, cwd=cwd)
        assert result.returncode == 0, result.stderr
        return
    app = make_app(DATABASE_URL=url)
    ctx = app.state.ctx
    async with asgi_client(app) as admin_client:
        admin = await ctx.accounts.user_by_email("root@example.com")
        alice = await ctx.accounts.user_by_email("alice@example.com")
        assert admin is not None and alice is not None
        tokens = await login(admin_client, "root@example.com")
        path = f"/api/v1/admin/users/{alice.id}"
        if action == "admin disable":
            r = await admin_client.patch(path, json={"disabled": True}, headers=bearer(tokens))
        elif action == "admin delete":
            r = await admin_client.delete(path, headers=bearer(tokens))
        else:
            r = await admin_client.post(path + "/revoke-sessions", headers=bearer(tokens))
        assert r.status_code in (200, 204), r.text


@pytest.mark.asyncio
@pytest.mark.parametrize("action", ["admin disable", "admin revoke-sessions", "admin delete",
                                    "cli revoke-all", "cli revoke-all --user"])
async def test_revocation_after_a_database_restore_refuses_tokens_without_a_session_row(
    backend: str, database_url: str, ctx: Any, client: httpx.AsyncClient,
    make_app: Callable[..., Any], tmp_path: Path, action: str,
) -> None:
    """Tokens issued after the backup was taken lose their session row in the restore; disable,
    revoke-sessions, delete and `sessions revoke-all` still make them session_revoked, on the
    running instance and on a fresh one."""
    await create_user(ctx)
    await create_user(ctx, "root@example.com", ["admin"], name="Root")
    snapshot = copy_sqlite(database_url, tmp_path / "backup" / "gatehouse.db") \
        if backend == "sqlite" else None
    tokens = await login(client)  # after the backup
    assert (await client.get(VALIDATE, headers=bearer(tokens))).status_code == 200

    url = _lose_session_rows(backend, database_url, snapshot, tmp_path)
    running = make_app(DATABASE_URL=url)
    async with asgi_client(running) as c:
        # Before the revocation the restored database knows nothing against the token.
        assert (await c.get(VALIDATE, headers=bearer(tokens))).status_code == 200
        await _act(action, make_app, url, tmp_path)
        # Another instance or process did it: one poll (every 0.5 s in a server) brings it here.
        async with running.state.ctx.db() as db:
            await running.state.ctx.revocations.poll(db)
        r = await c.get(VALIDATE, headers=bearer(tokens))
        assert status_and_code(r) == (401, "session_revoked"), r.text
    async with asgi_client(make_app(DATABASE_URL=url)) as fresh:
        r = await fresh.get(VALIDATE, headers=bearer(tokens))
        assert status_and_code(r) == (401, "session_revoked"), r.text
        r = await fresh.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        expected = "session_revoked" if action == "cli revoke-all" else "refresh_invalid"
        assert status_and_code(r) == (401, expected), r.text


@pytest.mark.asyncio
async def test_cli_revoke_all_reaches_a_running_instance_within_a_second(
    backend: str, database_url: str, ctx: Any, servers: Callable[..., Server], tmp_path: Path,
) -> None:
    """`gatehouse sessions revoke-all` in another process refuses, within a second, a token whose
    session row is gone on a running instance without a shared cache."""
    await create_user(ctx)
    server = servers(database_url)
    tokens = http_login(server.url)
    sql(database_url, "DELETE FROM sessions WHERE id = :sid", sid=tokens["session_id"])
    result = run_cli("sessions", "revoke-all", env={"DATABASE_URL": database_url}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    revoked_at = time.monotonic()

    def refused() -> bool:
        return httpx.get(server.url + VALIDATE, headers=bearer(tokens), timeout=10).status_code == 401

    wait_for(refused, timeout=5)
    assert time.monotonic() - revoked_at < 1.5  # within 1 s, plus this loop's own latency
    r = httpx.get(server.url + VALIDATE, headers=bearer(tokens), timeout=10)
    assert status_and_code(r) == (401, "session_revoked")
    assert httpx.get(server.url + VALIDATE, headers=bearer(http_login(server.url)),
                     timeout=10).status_code == 200


# -- not-before precision -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_not_before_refuses_a_token_of_the_same_second_and_admits_the_next_login(
    ctx: Any, client: httpx.AsyncClient,
) -> None:
    """A token issued in the same second as logout-all, but before it, is refused (iat is whole
    seconds; the not-before is not), while a login right after logout-all works."""
    await create_user(ctx)
    for _ in range(10):
        while time.time() % 1 > 0.2:  # start early in a second so all three steps share it
            await asyncio.sleep(0.01)
        early, caller = await login(client), await login(client)
        async with ctx.db.begin() as db:  # its row is gone: only the not-before can refuse it
            await db.execute(delete(Session).where(Session.id == early["session_id"]))
        r = await client.post("/api/v1/auth/logout-all", headers=bearer(caller))
        assert r.status_code == 204
        fresh = await login(client)
        iats = {iat_of(t["access_token"]) for t in (early, fresh)}
        if len(iats) == 1:
            break
    assert len(iats) == 1, "could not fit login, logout-all and login into one second"
    r = await client.get(VALIDATE, headers=bearer(early))
    assert status_and_code(r) == (401, "session_revoked")
    assert (await client.get(VALIDATE, headers=bearer(fresh))).status_code == 200
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    assert r.status_code == 200, r.text


@pytest.mark.asyncio
async def test_password_change_keeps_the_callers_session_and_refuses_the_others(
    ctx: Any, client: httpx.AsyncClient, database_url: str,
) -> None:
    """After a password change the caller's token and refresh still work, while another
    session's token is refused even without its session row."""
    await create_user(ctx)
    other, caller = await login(client), await login(client)
    sql(database_url, "DELETE FROM sessions WHERE id = :sid", sid=other["session_id"])
    r = await client.post("/api/v1/users/profile/password", headers=bearer(caller),
                          json={"current_password": PASSWORD,
                                "new_password": "another-long-passphrase-2"})
    assert r.status_code == 204, r.text
    assert status_and_code(await client.get(VALIDATE, headers=bearer(other))) == (
        401, "session_revoked")
    assert (await client.get(VALIDATE, headers=bearer(caller))).status_code == 200
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": caller["refresh_token"]})
    assert r.status_code == 200, r.text
