"""Password reset and email verification (API.md §8), with real email: an aiosmtpd server in
the test process (STARTTLS, AUTH) receives what the app sends, and the tests follow the links.

Each app runs its lifespan (`async with running(app)`), as `gatehouse serve` does: the mail
workers start there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from gatehouse.context import Context
from gatehouse.store.db.models import AuditEvent, EmailLink
from tests._abuse_helpers import metric
from tests._smtp import SmtpServer, link_token, part
from tests.conftest import PASSWORD, asgi_client, bearer, create_user, free_port, login

NEW_PASSWORD = "a-brand-new-passphrase-42"
P = "/api/v1"


@asynccontextmanager
async def running(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan (mail workers, revocation poller) and a client."""
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        yield client


@pytest.fixture
def smtp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    server = SmtpServer(tmp_path, free_port()).start()
    monkeypatch.setenv("SSL_CERT_FILE", str(server.cert))  # trust its self-signed certificate
    yield server
    server.stop()


@pytest.fixture
def mail_app(make_app: Callable[..., Any], smtp: SmtpServer) -> Callable[..., Any]:
    def factory(**env: Any) -> Any:
        return make_app(SMTP_URL=smtp.url, GATEHOUSE_MAIL_RETRY_BASE="0.1", **env)
    return factory


async def audit(ctx: Context, type_: str) -> list[AuditEvent]:
    async with ctx.db() as db:
        return list((await db.scalars(
            select(AuditEvent).where(AuditEvent.type == type_).order_by(AuditEvent.id))).all())


async def forgot(client: httpx.AsyncClient, email: str) -> httpx.Response:
    r = await client.post(f"{P}/auth/password/forgot", json={"email": email})
    assert r.status_code == 202 and r.content == b"", r.text
    return r


def assert_problem(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code


async def reset(client: httpx.AsyncClient, token: str, password: str = NEW_PASSWORD) -> httpx.Response:
    return await client.post(f"{P}/auth/password/reset",
                             json={"token": token, "new_password": password})


# -- password reset ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_reset_link_sets_the_password_once_and_ends_every_session(
    mail_app: Callable[..., Any], smtp: SmtpServer
) -> None:
    """The emailed link (token in the fragment, text and HTML parts) sets a new password once:
    a second use is link_invalid, every earlier session answers session_revoked (refresh and
    access token), the address becomes verified and both steps are audited."""
    app = mail_app()
    ctx: Context = app.state.ctx
    async with running(app) as client:
        alice = await create_user(ctx)
        sessions = [await login(client) for _ in range(2)]
        await forgot(client, "Alice@Example.com")
        (msg,) = await asyncio.to_thread(smtp.inbox.wait, 1)
        assert msg["To"] == "alice@example.com" and msg["Subject"] == "Reset your Gatehouse password"
        assert "Gatehouse <no-reply@127.0.0.1>" == msg["From"]
        assert "http://127.0.0.1:8000/console/reset-password#token=" in part(msg, "plain")
        token = link_token(msg, "reset-password")
        assert len(token) >= 43  # 256 bits, base64url

        assert (await reset(client, token)).status_code == 204
        assert_problem(await reset(client, token), 400, "link_invalid")
        for tokens in sessions:
            r = await client.post(f"{P}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            assert_problem(r, 401, "session_revoked")
            assert_problem(await client.get(f"{P}/users/profile", headers=bearer(tokens)),
                           401, "session_revoked")
        r = await client.post(f"{P}/auth/login", json={"email": alice.email, "password": PASSWORD})
        assert_problem(r, 401, "invalid_credentials")
        fresh = await login(client, password=NEW_PASSWORD)
        assert fresh["user"]["email_verified"] is True
        (requested,) = await audit(ctx, "password.reset_requested")
        assert requested.data["target_user_id"] == alice.id
        (done,) = await audit(ctx, "password.reset")
        assert done.user_id == alice.id and done.data["revoked_sessions"] == 2
        async with ctx.db() as db:  # only the hash is stored
            hashes = list(await db.scalars(select(EmailLink.token_hash)))
        assert token not in hashes and len(hashes) == 1
        text = ctx.metrics.render().decode()
        assert metric(text, "gatehouse_sessions_revoked_total", reason="password_reset") == 2
        assert metric(text, "gatehouse_mail_sent_total", kind="password_reset", result="sent") == 1


@pytest.mark.asyncio
async def test_a_newer_email_or_a_password_change_invalidates_older_links(
    mail_app: Callable[..., Any], smtp: SmtpServer, backend: str
) -> None:
    """An older reset link stops working once a newer one is emailed, and every link stops
    working once the password changes by any other way (here: the profile's password change)."""
    app = mail_app()
    ctx: Context = app.state.ctx
    async with running(app) as client:
        await create_user(ctx)
        await forgot(client, "alice@example.com")
        await asyncio.to_thread(smtp.inbox.wait, 1)
        await forgot(client, "alice@example.com")
        first, second = await asyncio.to_thread(smtp.inbox.wait, 2)
        older, newer = link_token(first, "reset-password"), link_token(second, "reset-password")
        assert older != newer
        assert_problem(await reset(client, older), 400, "link_invalid")

        tokens = await login(client)
        r = await client.post(f"{P}/users/profile/password", headers=bearer(tokens),
                              json={"current_password": PASSWORD, "new_password": NEW_PASSWORD})
        assert r.status_code == 204, r.text
        assert_problem(await reset(client, newer, "yet-another-passphrase-77"), 400, "link_invalid")
        await login(client, password=NEW_PASSWORD)


@pytest.mark.asyncio
async def test_an_expired_reset_link_is_link_invalid(
    mail_app: Callable[..., Any], smtp: SmtpServer
) -> None:
    """With PASSWORD_RESET_TTL=1 the link is refused once the second is over."""
    app = mail_app(PASSWORD_RESET_TTL=1)
    async with running(app) as client:
        await create_user(app.state.ctx)
        await forgot(client, "alice@example.com")
        (msg,) = await asyncio.to_thread(smtp.inbox.wait, 1)
        await asyncio.sleep(1.2)
        assert_problem(await reset(client, link_token(msg, "reset-password")), 400, "link_invalid")
        await login(client)  # the password did not change


@pytest.mark.asyncio
async def test_unknown_and_disabled_addresses_get_the_same_202_and_no_email(
    mail_app: Callable[..., Any], smtp: SmtpServer, backend: str
) -> None:
    """forgot answers 202 with an empty body for unknown, disabled and real addresses alike;
    only the real, enabled account gets an email, and only it is audited."""
    app = mail_app()
    ctx: Context = app.state.ctx
    async with running(app) as client:
        alice = await create_user(ctx)
        bob = await create_user(ctx, "bob@example.com")
        await ctx.accounts.admin_update(bob.id, {"disabled": True}, actor=_cli())
        answers = [await forgot(client, e) for e in
                   ("nobody@example.com", "bob@example.com", "alice@example.com")]
        assert len({(r.status_code, r.content, r.headers.get("content-type")) for r in answers}) == 1
        await ctx.mailer.drain()
        await asyncio.sleep(0.3)
        assert [m["To"] for m in smtp.inbox.messages] == ["alice@example.com"]
        assert [e.data["target_user_id"] for e in await audit(ctx, "password.reset_requested")] \
            == [alice.id]


@pytest.mark.asyncio
async def test_the_fourth_reset_request_in_an_hour_sends_no_email(
    mail_app: Callable[..., Any], smtp: SmtpServer, backend: str
) -> None:
    """At most 3 reset emails per account per hour: the fourth request is still 202, but no
    email goes out (the audit event says so)."""
    app = mail_app()
    ctx: Context = app.state.ctx
    async with running(app) as client:
        await create_user(ctx)
        for _ in range(4):
            await forgot(client, "alice@example.com")
            await ctx.mailer.drain()
        await asyncio.to_thread(smtp.inbox.wait, 3)
        await asyncio.sleep(0.3)
        assert len(smtp.inbox.messages) == 3
        sent = [e.data["email_sent"] for e in await audit(ctx, "password.reset_requested")]
        assert sent == [True, True, True, False]


@pytest.mark.asyncio
async def test_reset_applies_the_password_policy_and_keeps_the_link_on_422(
    mail_app: Callable[..., Any], smtp: SmtpServer
) -> None:
    """A weak new password is 422 validation_failed and does not spend the link; malformed
    bodies and tokens are 422 / 400, never 500."""
    app = mail_app()
    async with running(app) as client:
        await create_user(app.state.ctx)
        await forgot(client, "alice@example.com")
        (msg,) = await asyncio.to_thread(smtp.inbox.wait, 1)
        token = link_token(msg, "reset-password")
        assert_problem(await reset(client, token, "password"), 422, "validation_failed")
        assert_problem(await reset(client, "x" * 43), 400, "link_invalid")
        assert_problem(await reset(client, "not a token!"), 400, "link_invalid")
        r = await client.post(f"{P}/auth/password/reset", json={"token": token})
        assert_problem(r, 422, "validation_failed")
        r = await client.post(f"{P}/auth/password/forgot", json={"email": "not-an-address"})
        assert_problem(r, 422, "validation_failed")
        assert (await reset(client, token)).status_code == 204


@pytest.mark.asyncio
async def test_reset_clears_the_login_throttling_of_the_account(
    mail_app: Callable[..., Any], smtp: SmtpServer
) -> None:
    """After 5 wrong passwords the account is throttled (429); a reset lifts it at once."""
    app = mail_app(LOGIN_MAX_FAILURES=3)
    async with running(app) as client:
        await create_user(app.state.ctx)
        for _ in range(3):
            await client.post(f"{P}/auth/login", json={"email": "alice@example.com",
                                                        "password": "wrong-guess-123456"})
        r = await client.post(f"{P}/auth/login", json={"email": "alice@example.com",
                                                        "password": PASSWORD})
        assert_problem(r, 429, "login_throttled")
        await forgot(client, "alice@example.com")
        (msg,) = await asyncio.to_thread(smtp.inbox.wait, 1)
        assert (await reset(client, link_token(msg, "reset-password"))).status_code == 204
        await login(client, password=NEW_PASSWORD)


# -- delivery off the request path -----------------------------------------------------------


async def _timed_forgot(client: httpx.AsyncClient, email: str) -> float:
    started = time.perf_counter()
    await forgot(client, email)
    return time.perf_counter() - started


@pytest.mark.asyncio
async def test_a_mail_server_that_is_down_neither_slows_nor_fails_forgot_and_mail_goes_out_later(
    make_app: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    """With nothing listening on SMTP_URL's port, forgot for a real address answers 202 as fast
    as for an unknown one; once the server comes up, the retried email arrives."""
    port = free_port()
    down = SmtpServer(tmp_path, port)  # made, not started: the port is closed
    monkeypatch.setenv("SSL_CERT_FILE", str(down.cert))
    app = make_app(SMTP_URL=down.url, GATEHOUSE_MAIL_RETRY_BASE="0.2", GATEHOUSE_MAIL_RETRIES="8")
    async with running(app) as client:
        await create_user(app.state.ctx)
        real = [await _timed_forgot(client, "alice@example.com")]
        unknown = [await _timed_forgot(client, "nobody@example.com")]
        assert max(real + unknown) < 0.5, (real, unknown)
        await asyncio.sleep(0.5)  # a first attempt or two fail
        down.start()
        try:
            (msg,) = await asyncio.to_thread(down.inbox.wait, 1, 20)
            assert msg["To"] == "alice@example.com"
        finally:
            down.stop()


@pytest.mark.asyncio
async def test_a_slow_mail_server_does_not_slow_forgot(
    make_app: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that takes 2 s to accept each message: forgot still answers at once, for real
    and unknown addresses alike, and the email is delivered."""
    slow = SmtpServer(tmp_path, free_port(), delay=2.0).start()
    monkeypatch.setenv("SSL_CERT_FILE", str(slow.cert))
    try:
        app = make_app(SMTP_URL=slow.url)
        async with running(app) as client:
            await create_user(app.state.ctx)
            timings = [await _timed_forgot(client, "alice@example.com"),
                       await _timed_forgot(client, "nobody@example.com"),
                       await _timed_forgot(client, "alice@example.com")]
            assert max(timings) < 0.5, timings
            await asyncio.to_thread(slow.inbox.wait, 2, 15)
    finally:
        slow.stop()


# -- email verification ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_verify_request_and_verify_mark_the_address_verified_once(
    mail_app: Callable[..., Any], smtp: SmtpServer, backend: str
) -> None:
    """A signed-in user asks for a verification email; its link makes email_verified true
    (audited email.verified) and works once; a verified address gets no further email."""
    app = mail_app()
    ctx: Context = app.state.ctx
    async with running(app) as client:
        alice = await create_user(ctx)
        headers = bearer(await login(client))
        assert (await client.get(f"{P}/users/profile", headers=headers)).json()["email_verified"] \
            is False
        r = await client.post(f"{P}/auth/email/verify-request", headers=headers)
        assert r.status_code == 202, r.text
        (msg,) = await asyncio.to_thread(smtp.inbox.wait, 1)
        assert msg["Subject"] == "Confirm your email address"
        assert "http://127.0.0.1:8000/console/verify-email#token=" in part(msg, "plain")
        token = link_token(msg, "verify-email")
        assert_problem(await reset(client, token), 400, "link_invalid")  # not a reset link
        assert (await client.post(f"{P}/auth/email/verify", json={"token": token})).status_code == 204
        r = await client.post(f"{P}/auth/email/verify", json={"token": token})
        assert_problem(r, 400, "link_invalid")
        assert (await client.get(f"{P}/users/profile", headers=headers)).json()["email_verified"] \
            is True
        (event,) = await audit(ctx, "email.verified")
        assert event.user_id == alice.id
        assert (await client.post(f"{P}/auth/email/verify-request", headers=headers)).status_code \
            == 202
        await ctx.mailer.drain()
        await asyncio.sleep(0.3)
        assert len(smtp.inbox.messages) == 1


@pytest.mark.asyncio
async def test_verify_request_without_a_session_follows_the_rules_of_forgot(
    mail_app: Callable[..., Any], smtp: SmtpServer
) -> None:
    """Without a session, {"email"} gets 202 whatever the address; only a real unverified one
    gets the email. Without a session and without a body, the answer is 401 token_missing."""
    app = mail_app()
    async with running(app) as client:
        await create_user(app.state.ctx)
        for email in ("nobody@example.com", "alice@example.com"):
            r = await client.post(f"{P}/auth/email/verify-request", json={"email": email})
            assert r.status_code == 202 and r.content == b""
        await app.state.ctx.mailer.drain()
        await asyncio.sleep(0.3)
        assert [m["To"] for m in smtp.inbox.messages] == ["alice@example.com"]
        assert_problem(await client.post(f"{P}/auth/email/verify-request"), 401, "token_missing")


@pytest.mark.asyncio
async def test_registration_sends_a_verification_email(
    mail_app: Callable[..., Any], smtp: SmtpServer
) -> None:
    """With GATEHOUSE_SIGNUP=open a new account starts unverified and gets a verification email;
    an admin-created account may start verified."""
    app = mail_app(GATEHOUSE_SIGNUP="open")
    ctx: Context = app.state.ctx
    async with running(app) as client:
        r = await client.post(f"{P}/auth/register",
                              json={"email": "carol@example.com", "password": PASSWORD})
        assert r.status_code == 201 and r.json()["email_verified"] is False
        (msg,) = await asyncio.to_thread(smtp.inbox.wait, 1)
        assert msg["To"] == "carol@example.com"
        link_token(msg, "verify-email")

        await create_user(ctx, "root@example.com", ["admin"])
        admin = bearer(await login(client, "root@example.com"))
        r = await client.post(f"{P}/admin/users", headers=admin, json={
            "email": "dave@example.com", "password": PASSWORD, "email_verified": True})
        assert r.status_code == 201 and r.json()["email_verified"] is True


@pytest.mark.asyncio
async def test_required_verification_refuses_login_of_an_unverified_address(
    mail_app: Callable[..., Any], smtp: SmtpServer, backend: str
) -> None:
    """GATEHOUSE_REQUIRE_VERIFIED_EMAIL=1: a correct password of an unverified address is 403
    email_unverified (counted `unverified`), a wrong one still invalid_credentials; after the
    emailed link (asked for without a session) the login works."""
    app = mail_app(GATEHOUSE_REQUIRE_VERIFIED_EMAIL="1")
    ctx: Context = app.state.ctx
    async with running(app) as client:
        await create_user(ctx)
        body = {"email": "alice@example.com", "password": PASSWORD}
        assert_problem(await client.post(f"{P}/auth/login", json=body), 403, "email_unverified")
        r = await client.post(f"{P}/auth/login", json={**body, "password": "wrong-guess-123456"})
        assert_problem(r, 401, "invalid_credentials")
        text = ctx.metrics.render().decode()
        assert metric(text, "gatehouse_auth_logins_total", result="unverified") == 1
        r = await client.post(f"{P}/auth/email/verify-request", json={"email": body["email"]})
        assert r.status_code == 202
        (msg,) = await asyncio.to_thread(smtp.inbox.wait, 1)
        r = await client.post(f"{P}/auth/email/verify",
                              json={"token": link_token(msg, "verify-email")})
        assert r.status_code == 204
        assert (await client.post(f"{P}/auth/login", json=body)).status_code == 200


@pytest.mark.asyncio
async def test_the_new_routes_have_their_own_rate_limit_bucket(make_app: Callable[..., Any]) -> None:
    """forgot, reset, verify-request and verify count against GATEHOUSE_AUTH_RATE_LIMIT
    (the `recovery` bucket), not against the general API limit."""
    app = make_app(GATEHOUSE_AUTH_RATE_LIMIT="2/minute", GATEHOUSE_RATE_LIMIT="1000/minute")
    async with asgi_client(app) as client:
        for _ in range(2):
            await forgot(client, "nobody@example.com")
        r = await client.post(f"{P}/auth/email/verify", json={"token": "x" * 43})
        assert_problem(r, 429, "rate_limited")
        assert (await client.get("/healthz")).status_code == 200


def _cli() -> Any:
    from gatehouse.audit.service import CLI
    return CLI



@pytest.mark.asyncio
async def test_cli_create_and_import_may_mark_addresses_verified(
    ctx: Context, database_url: str, tmp_path: Path
) -> None:
    """`users create --email-verified` and a JSON import row with "email_verified": true start
    verified; other rows start unverified, and a non-boolean value refuses the import."""
    import json

    from tests.conftest import run_cli

    env = {"DATABASE_URL": database_url}
    r = run_cli("users", "create", "--email", "ops@example.com", "--password-stdin",
                "--email-verified", env=env, cwd=tmp_path, input_text=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    argon = ctx.hasher
    rows = [{"email": "v@example.com", "password_hash": await argon.hash(PASSWORD),
             "email_verified": True},
            {"email": "u@example.com", "password_hash": await argon.hash(PASSWORD)}]
    path = tmp_path / "users.json"
    path.write_text(json.dumps([{**rows[1], "email_verified": "yes"}]))
    r = run_cli("users", "import", str(path), env=env, cwd=tmp_path)
    assert r.returncode == 1 and "email_verified must be true or false" in r.stderr
    path.write_text(json.dumps(rows))
    r = run_cli("users", "import", str(path), env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for email, verified in (("ops@example.com", True), ("v@example.com", True),
                            ("u@example.com", False)):
        user = await ctx.accounts.user_by_email(email)
        assert user is not None and user.email_verified is verified, email


@pytest.mark.asyncio
async def test_expired_links_are_pruned_an_hour_after_they_expire(
    mail_app: Callable[..., Any], smtp: SmtpServer, backend: str
) -> None:
    """The janitor's prune deletes links an hour past their expiry and keeps the others (they
    still count towards the hourly cap)."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import func

    from gatehouse.users.recovery import prune_links

    app = mail_app()
    ctx: Context = app.state.ctx
    async with running(app) as client:
        await create_user(ctx)
        await forgot(client, "alice@example.com")
        await asyncio.to_thread(smtp.inbox.wait, 1)
    async with ctx.db.begin() as db:
        assert await prune_links(db) == 0
        assert await prune_links(db, datetime.now(UTC) + timedelta(seconds=1800 + 3700)) == 1
        assert await db.scalar(select(func.count()).select_from(EmailLink)) == 0
