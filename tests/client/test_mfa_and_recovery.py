"""The SDK's second factor, password reset and email verification against the real app.

Everything runs in process on SQLite: the AsyncClient talks to the ASGI app
through ``httpx.ASGITransport``; the sync Client runs in a worker thread and
hands each request to the same transport on the test's event loop. TOTP codes
are computed here from the secret ``mfa_setup`` answered, at a pinned time;
reset and verification tokens are read from the emails a real SMTP server
(aiosmtpd, in this process) received.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from tests._smtp import SmtpServer, link_token
from tests.conftest import PASSWORD, Server, create_user, free_port

from gatehouse.client import (
    AsyncClient,
    Client,
    EmailUnverified,
    Forbidden,
    InvalidCredentials,
    LinkInvalid,
    MfaExpired,
    MfaInvalid,
    MfaRequired,
    NotAuthenticated,
    SessionExpired,
)
from gatehouse.context import Context

pytestmark = [
    pytest.mark.parametrize("backend", ["sqlite"], indirect=True),
    pytest.mark.asyncio,
]

BASE = "http://127.0.0.1:8000"
ROOT = Path(__file__).resolve().parents[2]
EMAIL = "alice@example.com"
NEW_PASSWORD = "a-brand-new-passphrase-42"
T0 = 1_800_000_015.0  # the middle of a 30 s step


class PinnedClock:
    """The server's TOTP clock, pinned so the test computes the codes it accepts."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class LoopTransport(httpx.BaseTransport):
    """A sync transport that runs each request through the app's ASGI transport on ``loop``."""

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.asgi = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        self.loop = loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def send() -> httpx.Response:
            forwarded = httpx.Request(
                request.method, request.url, headers=request.headers, content=body
            )
            answer = await self.asgi.handle_async_request(forwarded)
            raw = b"".join([chunk async for chunk in answer.stream])  # type: ignore[union-attr]
            return httpx.Response(answer.status_code, headers=answer.headers, content=raw)

        return asyncio.run_coroutine_threadsafe(send(), self.loop).result()


def sync_client(app: Any) -> Client:
    return Client(BASE, transport=LoopTransport(app, asyncio.get_running_loop()))


def async_client(app: Any) -> AsyncClient:
    return AsyncClient(BASE, transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 50000)))


async def in_thread(call: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking sync-client call off the loop the app runs on."""
    return await asyncio.to_thread(call, *args)


async def enable_mfa(app: Any, gh: Client) -> tuple[PinnedClock, str, list[str]]:
    """Sign alice in with ``gh`` and turn MFA on through the SDK; return clock, secret, codes."""
    ctx: Context = app.state.ctx
    clock = PinnedClock()
    ctx.mfa.clock = clock
    await create_user(ctx)
    await in_thread(gh.login, EMAIL, PASSWORD)
    setup = await in_thread(gh.mfa_setup)
    assert setup["otpauth_uri"].startswith("otpauth://totp/")
    codes = await in_thread(gh.mfa_confirm, pyotp.TOTP(setup["secret"]).at(T0))
    assert len(codes) == 10
    clock.now += 60  # the confirming code's step is spent
    return clock, setup["secret"], codes


# -- second factor (sync) ---------------------------------------------------------------


async def test_login_with_mfa_on_raises_mfa_required_and_keeps_the_stored_session(
    make_app: Callable[..., Any],
) -> None:
    """login() of an MFA account raises MfaRequired with mfa_token and methods, opens no
    session, neither clears nor replaces the stored one, and never shows the token."""
    app = make_app()
    with sync_client(app) as gh:
        await enable_mfa(app, gh)
        before = gh.token_store.load()
        with pytest.raises(MfaRequired) as caught:
            await in_thread(lambda: gh.login(EMAIL, PASSWORD, force=True))
        error = caught.value
        assert isinstance(error, NotAuthenticated) and not isinstance(error, SessionExpired)
        assert error.status == 401 and error.code == "mfa_required"
        assert error.mfa_token and error.methods == ("totp", "recovery_code")
        assert error.mfa_token not in str(error) and error.mfa_token not in repr(error)
        assert pickle.loads(pickle.dumps(error)).mfa_token == error.mfa_token  # noqa: S301
        assert gh.token_store.load() == before
        assert (await in_thread(gh.profile))["email"] == EMAIL

    with Client(BASE, transport=LoopTransport(app, asyncio.get_running_loop())) as fresh:
        with pytest.raises(MfaRequired):
            await in_thread(fresh.login, EMAIL, PASSWORD)
        assert fresh.token_store.load() is None


async def test_login_mfa_with_a_totp_code_stores_the_session(
    make_app: Callable[..., Any],
) -> None:
    """login_mfa(mfa_token, code) with the current TOTP code answers as login does: the
    session is stored and profile() works with it."""
    app = make_app()
    with sync_client(app) as enrol:
        clock, secret, _ = await enable_mfa(app, enrol)
    with sync_client(app) as gh:
        with pytest.raises(MfaRequired) as caught:
            await in_thread(gh.login, EMAIL, PASSWORD)
        user = await in_thread(
            gh.login_mfa, caught.value.mfa_token, pyotp.TOTP(secret).at(clock.now)
        )
        assert user["email"] == EMAIL
        assert gh.token_store.load() is not None
        assert (await in_thread(gh.profile))["email"] == EMAIL


async def test_a_wrong_code_is_mfa_invalid_and_leaves_the_stored_tokens_untouched(
    make_app: Callable[..., Any],
) -> None:
    """A wrong code raises MfaInvalid and a made-up mfa_token MfaExpired; neither touches the
    stored session, and the same mfa_token still works with the right code afterwards."""
    app = make_app()
    with sync_client(app) as gh:
        clock, secret, _ = await enable_mfa(app, gh)
        before = gh.token_store.load()
        with pytest.raises(MfaRequired) as caught:
            await in_thread(lambda: gh.login(EMAIL, PASSWORD, force=True))
        mfa_token = caught.value.mfa_token
        right = pyotp.TOTP(secret).at(clock.now)
        wrong = "000000" if right != "000000" else "111111"

        with pytest.raises(MfaInvalid) as invalid:
            await in_thread(gh.login_mfa, mfa_token, wrong)
        assert invalid.value.status == 401 and invalid.value.code == "mfa_invalid"
        with pytest.raises(MfaExpired) as expired:
            await in_thread(gh.login_mfa, "not-a-real-mfa-token-" + "x" * 30, right)
        assert expired.value.code == "mfa_expired"
        assert gh.token_store.load() == before
        assert (await in_thread(gh.profile))["email"] == EMAIL

        await in_thread(gh.login_mfa, mfa_token, right)
        after = gh.token_store.load()
        assert after is not None and before is not None
        assert after.refresh_token != before.refresh_token


async def test_recovery_codes_are_replaced_and_disable_turns_mfa_off(
    make_app: Callable[..., Any],
) -> None:
    """mfa_recovery_codes() returns a new set that logs in (the old set does not), and
    mfa_disable() with a TOTP code turns MFA off: login() answers tokens again."""
    app = make_app()
    with sync_client(app) as gh:
        clock, secret, old_codes = await enable_mfa(app, gh)
        new_codes = await in_thread(gh.mfa_recovery_codes, pyotp.TOTP(secret).at(clock.now))
        assert len(new_codes) == 10 and set(new_codes).isdisjoint(old_codes)

        with sync_client(app) as other:
            with pytest.raises(MfaRequired) as caught:
                await in_thread(other.login, EMAIL, PASSWORD)
            with pytest.raises(MfaInvalid):
                await in_thread(other.login_mfa, caught.value.mfa_token, old_codes[0])
            await in_thread(other.login_mfa, caught.value.mfa_token, new_codes[0])
            assert (await in_thread(other.profile))["email"] == EMAIL

        clock.now += 60
        await in_thread(gh.mfa_disable, pyotp.TOTP(secret).at(clock.now))
        user = await in_thread(lambda: gh.login(EMAIL, PASSWORD, force=True))
        assert user["email"] == EMAIL


# -- second factor (async) --------------------------------------------------------------


async def test_async_login_raises_mfa_required_then_login_mfa_stores_the_session(
    make_app: Callable[..., Any],
) -> None:
    """AsyncClient: login() raises MfaRequired, a wrong code MfaInvalid with nothing stored,
    and login_mfa() with the right code stores the session."""
    app = make_app()
    with sync_client(app) as enrol:
        clock, secret, _ = await enable_mfa(app, enrol)
    async with async_client(app) as gh:
        with pytest.raises(MfaRequired) as caught:
            await gh.login(EMAIL, PASSWORD)
        assert caught.value.methods == ("totp", "recovery_code")
        assert gh.token_store.load() is None
        right = pyotp.TOTP(secret).at(clock.now)
        with pytest.raises(MfaInvalid):
            await gh.login_mfa(caught.value.mfa_token, "000000" if right != "000000" else "111111")
        assert gh.token_store.load() is None
        user = await gh.login_mfa(caught.value.mfa_token, right)
        assert user["email"] == EMAIL
        assert (await gh.profile())["email"] == EMAIL


async def test_async_mfa_management_round_trip(make_app: Callable[..., Any]) -> None:
    """AsyncClient: mfa_setup, mfa_confirm, mfa_recovery_codes and mfa_disable work as on Client."""
    app = make_app()
    ctx: Context = app.state.ctx
    clock = PinnedClock()
    ctx.mfa.clock = clock
    await create_user(ctx)
    async with async_client(app) as gh:
        await gh.login(EMAIL, PASSWORD)
        setup = await gh.mfa_setup()
        totp = pyotp.TOTP(setup["secret"])
        assert len(await gh.mfa_confirm(totp.at(clock.now))) == 10
        clock.now += 60
        assert len(await gh.mfa_recovery_codes(totp.at(clock.now))) == 10
        clock.now += 60
        await gh.mfa_disable(totp.at(clock.now))
        assert (await gh.login(EMAIL, PASSWORD, force=True))["email"] == EMAIL


# -- account recovery and email verification --------------------------------------------


@pytest.fixture
def smtp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    server = SmtpServer(tmp_path, free_port()).start()
    monkeypatch.setenv("SSL_CERT_FILE", str(server.cert))  # trust its self-signed certificate
    yield server
    server.stop()


@asynccontextmanager
async def mailing_app(make_app: Callable[..., Any], smtp: SmtpServer) -> AsyncIterator[Any]:
    """The app with its lifespan running, so its mail workers deliver to ``smtp``."""
    app = make_app(SMTP_URL=smtp.url, GATEHOUSE_MAIL_RETRY_BASE="0.1")
    async with app.router.lifespan_context(app):
        yield app


async def test_forgot_then_reset_sets_the_password_once(
    make_app: Callable[..., Any], smtp: SmtpServer
) -> None:
    """forgot_password() emails a link whose token reset_password() spends: the new password
    logs in, the old one raises InvalidCredentials, and a second use is LinkInvalid."""
    async with mailing_app(make_app, smtp) as app:
        await create_user(app.state.ctx)
        with sync_client(app) as gh:
            assert await in_thread(gh.forgot_password, "Alice@Example.com") is None
            assert await in_thread(gh.forgot_password, "nobody@example.com") is None
            (msg,) = await asyncio.to_thread(smtp.inbox.wait, 1)
            token = link_token(msg, "reset-password")

            assert await in_thread(gh.reset_password, token, NEW_PASSWORD) is None
            with pytest.raises(LinkInvalid) as reused:
                await in_thread(gh.reset_password, token, NEW_PASSWORD + "!")
            assert reused.value.status == 400 and reused.value.code == "link_invalid"
            assert gh.token_store.load() is None  # nothing was stored along the way

            with pytest.raises(InvalidCredentials):
                await in_thread(gh.login, EMAIL, PASSWORD)
            user = await in_thread(gh.login, EMAIL, NEW_PASSWORD)
            assert user["email"] == EMAIL and user["email_verified"] is True
            assert (await in_thread(gh.profile))["email"] == EMAIL


async def test_verification_with_and_without_a_session(
    make_app: Callable[..., Any], smtp: SmtpServer
) -> None:
    """request_email_verification() with a session emails a link that verify_email() spends
    (a reuse is LinkInvalid and keeps the session); without a session it takes an email."""
    async with mailing_app(make_app, smtp) as app:
        ctx: Context = app.state.ctx
        await create_user(ctx)
        await create_user(ctx, "bob@example.com", name="Bob")
        async with async_client(app) as gh:
            await gh.login(EMAIL, PASSWORD)
            assert (await gh.profile())["email_verified"] is False
            await gh.request_email_verification()
            (msg,) = await asyncio.to_thread(smtp.inbox.wait, 1)
            assert msg["To"] == EMAIL
            token = link_token(msg, "verify-email")
            await gh.verify_email(token)
            assert (await gh.profile())["email_verified"] is True
            with pytest.raises(LinkInvalid):
                await gh.verify_email(token)
            assert (await gh.profile())["email"] == EMAIL  # the session was kept

        with sync_client(app) as anonymous:
            await in_thread(anonymous.request_email_verification, "bob@example.com")
            messages = await asyncio.to_thread(smtp.inbox.wait, 2)
            assert messages[1]["To"] == "bob@example.com"
            await in_thread(anonymous.verify_email, link_token(messages[1], "verify-email"))


async def test_login_of_an_unverified_address_raises_email_unverified(
    make_app: Callable[..., Any],
) -> None:
    """With GATEHOUSE_REQUIRE_VERIFIED_EMAIL=1, login() of an unverified address raises
    EmailUnverified (a Forbidden, not a session end) and stores nothing."""
    app = make_app(GATEHOUSE_REQUIRE_VERIFIED_EMAIL="1")
    await create_user(app.state.ctx)
    async with async_client(app) as gh:
        with pytest.raises(EmailUnverified) as caught:
            await gh.login(EMAIL, PASSWORD)
        assert isinstance(caught.value, Forbidden)
        assert caught.value.status == 403 and caught.value.code == "email_unverified"
        assert gh.token_store.load() is None


# -- the guide's example -----------------------------------------------------------------


async def test_the_guides_mfa_example_logs_in_with_a_code_on_a_real_server(
    make_server: Callable[..., Server], alice: Any
) -> None:
    """docs/sdk.md's second-factor example, run as written against `gatehouse serve` for an
    account with MFA on, takes the code on stdin and logs in."""
    (example,) = [
        block
        for block in re.findall(
            r"```python\n(.*?)```", (ROOT / "docs" / "sdk.md").read_text(), flags=re.DOTALL
        )
        if "login_mfa" in block
    ]
    server = make_server()
    with Client(server.url) as gh:
        gh.login(EMAIL, PASSWORD)
        totp = pyotp.TOTP(gh.mfa_setup()["secret"])
        gh.mfa_confirm(totp.now())
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "GATEHOUSE_URL": server.url,
        "GATEHOUSE_EMAIL": EMAIL,
        "GATEHOUSE_PASSWORD": PASSWORD,
    }
    code = totp.at(time.time() + 30)  # the next step: one step of skew is accepted
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", example],
        input=code + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "second factor needed: totp, recovery_code" in result.stdout
    assert f"logged in as {EMAIL}" in result.stdout
