"""Redaction proven: no secret of a run over every route family reaches a log line, an
audit row, an error body, a Sentry event or a Slack alert.

One run with real credentials of every kind (passwords, access and refresh tokens in
token and cookie mode, CSRF and device cookies, API keys and a signing secret with
signed requests, reset links, TOTP secrets and recovery codes, the metrics token) and
the failures that tend to echo them (wrong passwords, throttling, refresh reuse, bad
signatures, bad links, an unhandled error). Everything written is then searched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from sqlalchemy import select

from gatehouse.auth.apikeys import sign
from gatehouse.context import Context
from gatehouse.ops import sentry
from gatehouse.store.db.models import AuditEvent
from tests._abuse_helpers import COOKIE_MODE, browser, cookie_login, create_api_key
from tests._smtp import SmtpServer, link_token, part
from tests.conftest import (
    ENCRYPTION_KEY,
    JWT_SECRET,
    PASSWORD,
    asgi_client,
    bearer,
    create_user,
    free_port,
    login,
)
from tests.test_alerts import FakeSlack, until
from tests.test_sentry import FakeSentry

P = "/api/v1"
METRICS_TOKEN = "metrics-token-redaction-0123456789"
NEW_PASSWORD = "a-brand-new-passphrase-42"
RESET_PASSWORD = "reset-via-link-passphrase-77"
BOB_PASSWORD = "bobs-own-long-passphrase-9"
CAROL_PASSWORD = "carol-registers-herself-31"
WRONG_PASSWORD = "wrong-but-long-guess-5"


@pytest.fixture
def smtp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    server = SmtpServer(tmp_path, free_port()).start()
    monkeypatch.setenv("SSL_CERT_FILE", str(server.cert))
    yield server
    server.stop()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    server = FakeSlack()
    yield server
    server.close()


@pytest.fixture
def fake_sentry() -> Iterator[FakeSentry]:
    server = FakeSentry()
    yield server
    sentry.shutdown()
    server.close()


class Recorder:
    """Every secret handed out, and every error body received."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {
            "password": PASSWORD, "new password": NEW_PASSWORD, "reset password": RESET_PASSWORD,
            "bob password": BOB_PASSWORD, "carol password": CAROL_PASSWORD,
            "wrong password": WRONG_PASSWORD, "metrics token": METRICS_TOKEN,
            "jwt secret": JWT_SECRET, "encryption key": ENCRYPTION_KEY,
        }
        self.error_bodies: list[str] = []
        # Bodies that hand out a secret by contract (the mfa_required answer's mfa_token).
        self.allowed: dict[str, str] = {}

    def keep(self, name: str, value: str) -> str:
        assert value, name
        self.secrets[name] = value
        return value

    def tokens(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self.keep(f"{name} access", body["access_token"])
        self.keep(f"{name} refresh", body["refresh_token"])
        return body

    async def on_response(self, response: httpx.Response) -> None:
        await response.aread()
        if response.status_code >= 400:
            self.error_bodies.append(response.text)

    def leaks(self, where: str, text: str) -> list[str]:
        return [f"{name} in {where}" for name, value in self.secrets.items()
                if value in text and self.allowed.get(name) != text]


@asynccontextmanager
async def running(app: Any, recorder: Recorder) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        client.event_hooks["response"] = [recorder.on_response]
        yield client


def ok(r: httpx.Response, *status: int) -> httpx.Response:
    assert r.status_code in (status or (200,)), (r.request.url.path, r.status_code, r.text)
    return r


async def exercise(client: httpx.AsyncClient, ctx: Context, smtp: SmtpServer,
                   rec: Recorder) -> None:
    """Every route family, with real credentials and the failures that could echo them."""
    alice = await create_user(ctx)
    root = await create_user(ctx, "root@example.com", ["admin"], name="Root")
    admin = bearer(rec.tokens("root", await login(client, "root@example.com")))

    # ops and public routes
    for path in ("/healthz", "/readyz", "/.well-known/jwks.json", "/openapi.json", "/docs",
                 "/console", f"{P}/push/vapid-public-key"):
        ok(await client.get(path), 200, 404)
    ok(await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}))
    ok(await client.get("/metrics", headers={"Authorization": "Bearer metrics-token-wrong-1"}),
       401, 403)
    rec.keep("wrong metrics token", "metrics-token-wrong-1")

    # signup, login (token mode), validate, sessions, profile
    ok(await client.post(f"{P}/auth/register",
                         json={"email": "carol@example.com", "password": CAROL_PASSWORD}), 201)
    (verify_msg,) = await asyncio.to_thread(smtp.inbox.wait, 1)
    verify_token = rec.keep("verify token", link_token(verify_msg, "verify-email"))
    tokens = rec.tokens("alice", await login(client))
    me = bearer(tokens)
    ok(await client.get(f"{P}/auth/validate", headers=me))
    ok(await client.get(f"{P}/auth/sessions", headers=me))
    ok(await client.get(f"{P}/users/profile", headers=me))
    ok(await client.patch(f"{P}/users/profile", json={"name": "Alice A."}, headers=me))
    ok(await client.get(f"{P}/auth/validate",
                        headers={"Authorization": f"Bearer {tokens['access_token']}x"}), 401)

    # refresh, then its replay: reuse detected (Slack alert, audit row, 401)
    r = ok(await client.post(f"{P}/auth/refresh", json={"refresh_token": tokens["refresh_token"]}))
    fresh = rec.tokens("alice refreshed", r.json())
    await asyncio.sleep(0.05)
    ok(await client.post(f"{P}/auth/refresh", json={"refresh_token": tokens["refresh_token"]}),
       401)
    ok(await client.post(f"{P}/auth/refresh", json={"refresh_token": fresh["refresh_token"]}),
       401)

    # wrong passwords until throttled
    for _ in range(5):
        ok(await client.post(f"{P}/auth/login",
                             json={"email": "carol@example.com", "password": WRONG_PASSWORD}),
           401, 429)

    # cookie mode: login, an authenticated read, a CSRF-protected write, refresh, logout
    jar = await cookie_login(client)
    for name, value in jar.items():
        rec.keep(f"cookie {name}", value)
    ok(await client.get(f"{P}/users/profile", headers=browser(jar)))
    ok(await client.patch(f"{P}/users/profile", json={"name": "Alice C."},
                          headers=browser(jar, csrf=jar["gh_csrf"])))
    ok(await client.patch(f"{P}/users/profile", json={"name": "No CSRF"},
                          headers=browser(jar, csrf="forged-csrf-value-1")), 403)
    rec.keep("forged csrf", "forged-csrf-value-1")
    r = ok(await client.post(f"{P}/auth/refresh",
                             headers={**COOKIE_MODE, **browser(jar, csrf=jar["gh_csrf"])}))
    for header in r.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        value = rest.split(";", 1)[0]
        if value:
            rec.keep(f"refreshed cookie {name}", value)
    client.cookies.clear()

    # password change (a wrong current one first), forgot and reset by link
    fresh_me = bearer(rec.tokens("alice again", await login(client)))
    ok(await client.post(f"{P}/users/profile/password", headers=fresh_me,
                         json={"current_password": WRONG_PASSWORD, "new_password": NEW_PASSWORD}),
       400, 401, 403, 422)
    ok(await client.post(f"{P}/users/profile/password", headers=fresh_me,
                         json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}), 204)
    ok(await client.post(f"{P}/auth/password/forgot", json={"email": "alice@example.com"}), 202)
    # the newest email with a reset link (the password change also emailed a notification)
    await until(lambda: any("/reset-password#" in part(m, "plain") for m in smtp.inbox.messages))
    msg = [m for m in smtp.inbox.messages if "/reset-password#" in part(m, "plain")][-1]
    reset_token = rec.keep("reset token", link_token(msg, "reset-password"))
    ok(await client.post(f"{P}/auth/password/reset",
                         json={"token": reset_token + "x", "new_password": RESET_PASSWORD}), 400)
    ok(await client.post(f"{P}/auth/password/reset",
                         json={"token": reset_token, "new_password": RESET_PASSWORD}), 204)
    ok(await client.post(f"{P}/auth/email/verify-request", json={"email": "alice@example.com"}),
       202, 204)
    ok(await client.post(f"{P}/auth/email/verify", json={"token": verify_token + "x"}), 400)
    ok(await client.post(f"{P}/auth/email/verify", json={"token": verify_token}), 200, 204)

    # MFA: enrol, log in with a recovery code (a wrong code first), regenerate, admin reset
    mine = bearer(rec.tokens("alice mfa", await login(client, password=RESET_PASSWORD)))
    r = ok(await client.post(f"{P}/auth/mfa/totp/setup", headers=mine))
    secret = rec.keep("totp secret", r.json()["secret"])
    confirmed = ok(await client.post(f"{P}/auth/mfa/totp/confirm", headers=mine,
                                     json={"code": pyotp.TOTP(secret).now()})).json()
    codes = confirmed["recovery_codes"]
    for i, code in enumerate(codes):
        rec.keep(f"recovery code {i}", code)
    r = ok(await client.post(f"{P}/auth/login",
                             json={"email": "alice@example.com", "password": RESET_PASSWORD}), 401)
    mfa_token = rec.keep("mfa token", r.json()["mfa_token"])
    rec.allowed["mfa token"] = r.text
    ok(await client.post(f"{P}/auth/login/mfa", json={"mfa_token": mfa_token, "code": "000000"}),
       400, 401)
    done = ok(await client.post(f"{P}/auth/login/mfa",
                                json={"mfa_token": mfa_token, "code": codes[0]})).json()
    rec.tokens("alice after mfa", done)
    regenerated = ok(await client.post(f"{P}/auth/mfa/recovery-codes", headers=bearer(done),
                                       json={"code": codes[1]})).json()
    for i, code in enumerate(regenerated["recovery_codes"]):
        rec.keep(f"new recovery code {i}", code)
    ok(await client.delete(f"{P}/admin/users/{alice.id}/mfa", headers=admin), 204)

    # admin: users, roles, audit, sessions, unlock, delete
    bob = ok(await client.post(f"{P}/admin/users", headers=admin,
                               json={"email": "bob@example.com", "password": BOB_PASSWORD}),
             201).json()
    ok(await client.patch(f"{P}/admin/users/{bob['id']}", headers=admin,
                          json={"roles": ["support"]}))
    ok(await client.get(f"{P}/admin/users", headers=admin, params={"q": "example"}))
    ok(await client.get(f"{P}/admin/users/{bob['id']}", headers=admin))
    ok(await client.get(f"{P}/admin/audit", headers=admin))
    ok(await client.post(f"{P}/admin/users/{alice.id}/revoke-sessions", headers=admin), 200, 204)
    ok(await client.post(f"{P}/admin/users/{bob['id']}/unlock", headers=admin), 204)
    ok(await client.delete(f"{P}/admin/users/{bob['id']}", headers=admin), 204)

    # API keys: bearer and X-API-Key transports, a signed request, a forged signature
    plain = await create_api_key(client, admin, ["users:read"])
    rec.keep("api key", plain["key"])
    ok(await client.get(f"{P}/admin/users", headers={"X-API-Key": plain["key"]}))
    ok(await client.get(f"{P}/admin/users", headers={"X-API-Key": plain["key"] + "x"}), 401)
    signed = await create_api_key(client, admin, ["users:read"], require_signature=True)
    rec.keep("signed api key", signed["key"])
    signing_secret = rec.keep("signing secret", signed["signing_secret"])
    signature = rec.keep("signature", sign(signing_secret, int(time.time()), "GET",
                                           f"{P}/admin/users", b""))
    ok(await client.get(f"{P}/admin/users",
                        headers={"Authorization": f"Bearer {signed['key']}",
                                 "X-Signature": signature}))
    forged = sign("ghs_not-the-secret", int(time.time()), "GET", f"{P}/admin/users", b"")
    ok(await client.get(f"{P}/admin/users",
                        headers={"Authorization": f"Bearer {signed['key']}",
                                 "X-Signature": forged}), 401)
    ok(await client.get(f"{P}/admin/api-keys", headers=admin))
    ok(await client.delete(f"{P}/admin/api-keys/{plain['id']}", headers=admin), 204)

    # push subscriptions (without VAPID keys they may be refused: the body is still searched)
    ok(await client.post(f"{P}/push/subscriptions", headers=admin, json={
        "endpoint": "https://push.example.com/send/abc",
        "keys": {"p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1X"
                           "bjhazAkj7I99e8QcYP7DkM",
                 "auth": "tBHItJI5svbpez7KI4CCXg"}}), 201, 200, 204, 400, 404, 409, 422, 503)
    ok(await client.request("DELETE", f"{P}/push/subscriptions", headers=admin,
                            json={"endpoint": "https://push.example.com/send/abc"}),
       200, 204, 400, 404, 422)

    # browser error reports carrying a token in the page address; the console's list
    ok(await client.post(f"{P}/client-errors", json={
        "message": "TypeError in reset page",
        "url": f"https://app.example.com/console/reset-password?token={reset_token}#token={reset_token}",
        "request_id": "browser-1"}), 202)
    ok(await client.get(f"{P}/ops/client-errors", headers=admin))

    # an unhandled error with every credential attached
    ok(await client.get(f"{P}/test-only-boom", params={"token": tokens["access_token"]},
                        headers={**browser(jar, csrf=jar["gh_csrf"]), **admin,
                                 "X-API-Key": signed["key"], "X-Signature": signature}), 500)

    # logout, then every session of the admin
    final = rec.tokens("alice final", await login(client, password=RESET_PASSWORD))
    ok(await client.post(f"{P}/auth/logout", headers=bearer(final)), 204)
    ok(await client.post(f"{P}/auth/logout-all", headers=admin), 200, 204)
    assert root.id


@pytest.mark.asyncio
async def test_no_secret_reaches_logs_audit_rows_error_bodies_sentry_or_slack(
    make_app: Callable[..., Any], smtp: SmtpServer, slack: FakeSlack,
    fake_sentry: FakeSentry, capsys: pytest.CaptureFixture[str],
) -> None:
    """A run over every route family with real tokens, cookies, passwords, API keys and a
    signing secret leaves none of those values in any log line, audit row, error body,
    Sentry envelope or Slack payload."""
    app = make_app(
        SMTP_URL=smtp.url, GATEHOUSE_MAIL_RETRY_BASE="0.1", GATEHOUSE_METRICS_TOKEN=METRICS_TOKEN,
        GATEHOUSE_SIGNUP="open", REFRESH_GRACE_SECONDS=0, LOGIN_MAX_FAILURES="2",
        SLACK_WEBHOOK_URL=slack.url, SENTRY_DSN=fake_sentry.dsn, GATEHOUSE_LOG_LEVEL="debug",
    )

    @app.get(f"{P}/test-only-boom")
    async def boom() -> None:
        raise RuntimeError("kaboom")

    ctx: Context = app.state.ctx
    rec = Recorder()
    async with running(app, rec) as client:
        await exercise(client, ctx, smtp, rec)
        await ctx.mailer.drain()
        await ctx.alerts.drain()
    fake_sentry.wait_for(2)  # the 500 and the browser report
    async with ctx.db() as db:
        rows = (await db.scalars(select(AuditEvent).order_by(AuditEvent.id))).all()
    audit = [repr({c.key: getattr(row, c.key) for c in AuditEvent.__mapper__.column_attrs})
             for row in rows]
    captured = capsys.readouterr()
    logs = captured.out + captured.err

    # The run really produced what is searched.
    assert len(logs.splitlines()) > 50 and '"event"' in logs
    assert len(audit) > 20 and any("refresh.reuse_detected" in a for a in audit)
    assert len(rec.error_bodies) > 10
    assert any("reuse" in p["text"].lower() for p in slack.payloads)
    assert len(rec.secrets) > 30

    leaks = rec.leaks("logs", logs)
    for row in audit:
        leaks += rec.leaks("audit", row)
    for body in rec.error_bodies:
        leaks += rec.leaks("error body", body)
    for envelope in fake_sentry.raw:
        leaks += rec.leaks("sentry", envelope)
    for payload in slack.raw:
        leaks += rec.leaks("slack", payload)
    assert leaks == []
