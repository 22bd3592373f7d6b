"""Slack alerts for security events (API.md §6 GATEHOUSE_ALERTS, §7 gatehouse_alerts_total).

A real HTTP server on a free loopback port plays the Slack webhook and records every JSON
payload; the app runs its lifespan (the alert worker) as `gatehouse serve` does.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from gatehouse.context import Context
from gatehouse.settings import SettingsError, load_settings
from tests.conftest import (
    BASE_ENV,
    PASSWORD,
    asgi_client,
    bearer,
    create_user,
    login,
    run_cli,
)


class FakeSlack:
    """A webhook that records JSON bodies; `mode` ok | fail (500) | hang (sleeps 10 s)."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.mode = "ok"
        slack = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                slack.raw.append(body)
                if slack.mode == "hang":
                    time.sleep(10)
                    return
                if slack.mode == "fail":
                    self.send_response(500)
                    self.end_headers()
                    return
                slack.payloads.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T0/B0/secret"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def texts(self) -> list[str]:
        return [p["text"] for p in self.payloads]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    server = FakeSlack()
    yield server
    server.close()


@asynccontextmanager
async def running(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan (the alert worker) and a client."""
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        yield client


def alerts_metric(ctx: Context, kind: str, result: str) -> float:
    value = ctx.metrics.registry.get_sample_value(
        "gatehouse_alerts_total", {"kind": kind, "result": result})
    return value or 0.0


async def until(check: Any, seconds: float = 8.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


def assert_no_secrets(slack: FakeSlack, *secrets: str) -> None:
    for body in slack.raw:
        for secret in (PASSWORD, *secrets):
            assert secret not in body


@pytest.mark.asyncio
async def test_refresh_reuse_posts_user_ip_and_session_never_a_token(
    make_app: Any, slack: FakeSlack
) -> None:
    """A replayed refresh token posts one `reuse` alert naming the user, the IP and the
    session (id prefix), and no token."""
    app = make_app(SLACK_WEBHOOK_URL=slack.url, REFRESH_GRACE_SECONDS=0)
    ctx: Context = app.state.ctx
    await create_user(ctx)
    async with running(app) as client:
        tokens = await login(client)
        refresh = {"refresh_token": tokens["refresh_token"]}
        new = await client.post("/api/v1/auth/refresh", json=refresh)
        assert new.status_code == 200
        await asyncio.sleep(0.05)
        replay = await client.post("/api/v1/auth/refresh", json=refresh)
        assert replay.json()["code"] == "refresh_reused"
        await ctx.alerts.drain()
    [text] = slack.texts()
    assert "reuse" in text.lower()
    assert "alice@example.com" in text and "127.0.0.1" in text
    assert tokens["session_id"][:8] in text and tokens["session_id"] not in text
    assert alerts_metric(ctx, "reuse", "sent") == 1
    assert_no_secrets(slack, tokens["refresh_token"], tokens["access_token"],
                      new.json()["refresh_token"], new.json()["access_token"])


@pytest.mark.asyncio
async def test_a_burst_of_login_throttling_posts_one_message(
    make_app: Any, slack: FakeSlack
) -> None:
    """Many 429s for one account are one `throttle_burst` message, not one per attempt."""
    app = make_app(SLACK_WEBHOOK_URL=slack.url, LOGIN_MAX_FAILURES="2")
    ctx: Context = app.state.ctx
    await create_user(ctx)
    async with running(app) as client:
        statuses = []
        for _ in range(12):
            r = await client.post("/api/v1/auth/login",
                                  json={"email": "alice@example.com", "password": "wrong-guess-1"})
            statuses.append(r.status_code)
        assert statuses.count(429) >= 8
        await ctx.alerts.drain()
    [text] = slack.texts()
    assert "throttl" in text.lower() and "alice@example.com" in text and "127.0.0.1" in text
    assert alerts_metric(ctx, "throttle_burst", "sent") == 1
    assert_no_secrets(slack, "wrong-guess-1")


@pytest.mark.asyncio
async def test_role_change_is_posted_once_a_minute_per_user(
    make_app: Any, slack: FakeSlack
) -> None:
    """An admin's role change posts actor, target and old → new roles; a second change of
    the same user within the minute is suppressed (counted), another user's is posted."""
    app = make_app(SLACK_WEBHOOK_URL=slack.url)
    ctx: Context = app.state.ctx
    alice = await create_user(ctx)
    bob = await create_user(ctx, "bob@example.com", name="Bob")
    root = await create_user(ctx, "root@example.com", ["admin"], name="Root")
    async with running(app) as client:
        admin = bearer(await login(client, "root@example.com"))
        for user, roles in ((alice, ["support"]), (alice, ["operator"]), (bob, ["support"])):
            r = await client.patch(f"/api/v1/admin/users/{user.id}", json={"roles": roles},
                                   headers=admin)
            assert r.status_code == 200, r.text
        await ctx.alerts.drain()
    first, second = slack.texts()
    assert "role" in first.lower() and "alice@example.com" in first and root.id in first
    assert "user → support" in first
    assert "bob@example.com" in second
    assert alerts_metric(ctx, "role_change", "sent") == 2
    assert alerts_metric(ctx, "role_change", "suppressed") == 1


@pytest.mark.asyncio
async def test_cli_mfa_reset_and_revoke_all_post_before_the_command_exits(
    make_app: Any, slack: FakeSlack, database_url: str
) -> None:
    """The CLI has no server loop: `users reset-mfa` and `sessions revoke-all` (with and
    without --user) post their alerts before they exit."""
    app = make_app()
    await create_user(app.state.ctx)
    env = {"DATABASE_URL": database_url, "SLACK_WEBHOOK_URL": slack.url}
    for args in (("users", "reset-mfa", "alice@example.com"),
                 ("sessions", "revoke-all", "--user", "alice@example.com"),
                 ("sessions", "revoke-all")):
        result = run_cli(*args, env=env)
        assert result.returncode == 0, result.stderr
    reset, one, everyone = slack.texts()
    assert "MFA reset" in reset and "alice@example.com" in reset and "cli" in reset
    assert "revoke-all" in one and "alice@example.com" in one
    assert "revoke-all" in everyone and "all users" in everyone


@pytest.mark.asyncio
async def test_admin_mfa_reset_over_http_is_posted(make_app: Any, slack: FakeSlack) -> None:
    """An admin resetting a user's MFA over the API posts an `mfa_reset` alert with the actor."""
    app = make_app(SLACK_WEBHOOK_URL=slack.url)
    ctx: Context = app.state.ctx
    alice = await create_user(ctx)
    root = await create_user(ctx, "root@example.com", ["admin"], name="Root")
    async with running(app) as client:
        admin = bearer(await login(client, "root@example.com"))
        r = await client.delete(f"/api/v1/admin/users/{alice.id}/mfa", headers=admin)
        assert r.status_code in (200, 204), r.text
        await ctx.alerts.drain()
    [text] = slack.texts()
    assert "MFA reset" in text and "alice@example.com" in text and root.id in text


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["fail", "hang"])
async def test_a_failing_or_hanging_webhook_slows_no_request_and_counts_failed(
    make_app: Any, slack: FakeSlack, mode: str
) -> None:
    """A webhook answering 500 or never answering leaves the triggering requests as fast
    as without alerts; the alert is retried a bounded number of times, then counted failed."""
    slack.mode = mode
    app = make_app(SLACK_WEBHOOK_URL=slack.url)
    ctx: Context = app.state.ctx
    ctx.alerts.timeout, ctx.alerts.retries, ctx.alerts.retry_base = 0.5, 1, 0.05
    users = [await create_user(ctx, f"u{i}@example.com", name=f"U{i}") for i in range(3)]
    await create_user(ctx, "root@example.com", ["admin"], name="Root")
    async with running(app) as client:
        admin = bearer(await login(client, "root@example.com"))
        started = time.monotonic()
        for user in users:
            r = await client.patch(f"/api/v1/admin/users/{user.id}", json={"roles": ["support"]},
                                   headers=admin)
            assert r.status_code == 200, r.text
        elapsed = time.monotonic() - started
        assert elapsed < 2.0  # three requests; one hanging post alone would take 10 s
        await until(lambda: alerts_metric(ctx, "role_change", "failed") == 3)
    assert alerts_metric(ctx, "role_change", "sent") == 0
    assert len(slack.raw) == 6  # each alert: one try and one retry


@pytest.mark.asyncio
async def test_a_full_alert_queue_drops_and_counts_failed(make_app: Any, slack: FakeSlack) -> None:
    """With the worker stuck on a hanging webhook and the queue full, a new alert is dropped
    at once and counted failed; the request that raised it still answers."""
    slack.mode = "hang"
    app = make_app(SLACK_WEBHOOK_URL=slack.url)
    ctx: Context = app.state.ctx
    ctx.alerts.timeout, ctx.alerts.retries, ctx.alerts.queue_max = 5.0, 0, 1
    users = [await create_user(ctx, f"u{i}@example.com", name=f"U{i}") for i in range(3)]
    await create_user(ctx, "root@example.com", ["admin"], name="Root")
    async with running(app) as client:
        admin = bearer(await login(client, "root@example.com"))
        for user in users:
            r = await client.patch(f"/api/v1/admin/users/{user.id}", json={"roles": ["support"]},
                                   headers=admin)
            assert r.status_code == 200, r.text
            await asyncio.sleep(0.1)  # the worker takes the first one and hangs on it
        assert alerts_metric(ctx, "role_change", "failed") == 1  # the third: queue full
        ctx.alerts.flush_budget = 0.1


@pytest.mark.asyncio
async def test_only_the_kinds_listed_in_gatehouse_alerts_are_posted(
    make_app: Any, slack: FakeSlack
) -> None:
    """With GATEHOUSE_ALERTS=reuse a role change posts nothing."""
    app = make_app(SLACK_WEBHOOK_URL=slack.url, GATEHOUSE_ALERTS="reuse")
    ctx: Context = app.state.ctx
    alice = await create_user(ctx)
    await create_user(ctx, "root@example.com", ["admin"], name="Root")
    async with running(app) as client:
        admin = bearer(await login(client, "root@example.com"))
        r = await client.patch(f"/api/v1/admin/users/{alice.id}", json={"roles": ["support"]},
                               headers=admin)
        assert r.status_code == 200
        await ctx.alerts.drain()
    assert slack.raw == []


def test_an_unknown_alert_kind_is_one_config_error_line() -> None:
    """GATEHOUSE_ALERTS naming an unknown kind fails with one line naming the variable."""
    with pytest.raises(SettingsError) as caught:
        load_settings(**BASE_ENV, GATEHOUSE_ALERTS="reuse,tokn_theft")
    [line] = caught.value.lines
    assert line.startswith("GATEHOUSE_ALERTS:") and "tokn_theft" in line
    result = run_cli("doctor", env={"GATEHOUSE_ALERTS": "reuse,tokn_theft"})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "GATEHOUSE_ALERTS" in result.stderr + result.stdout
