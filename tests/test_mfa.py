"""The TOTP second factor (API.md §8), through the HTTP API and the CLI, on SQLite and PostgreSQL.

Codes are computed here from the secret the setup answered (pyotp, as an
authenticator app does). The service's clock is pinned through its seam
(`ctx.mfa.clock`) so that a code's step is known exactly, never at a boundary.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pyotp
import pytest
import pytest_asyncio
from sqlalchemy import select, update

from gatehouse.audit.service import CLI
from gatehouse.context import Context
from gatehouse.store.db.models import AuditEvent, MfaRecoveryCode, Session, User, UserMfa
from tests._abuse_helpers import COOKIE_MODE, browser, metric, set_cookies
from tests.conftest import PASSWORD, REDIS_URL, asgi_client, bearer, create_user, login, run_cli

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)

P = "/api/v1"
T0 = 1_800_000_015.0  # the middle of a 30 s step (1_800_000_000 is a multiple of 30)
ALICE = {"email": "alice@example.com", "password": PASSWORD}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def code_at(secret: str, at: float) -> str:
    return pyotp.TOTP(secret).at(at)


@dataclass
class Enrolled:
    secret: str
    recovery_codes: list[str]
    tokens: dict[str, Any]  # the session that enabled MFA
    clock: Clock

    def code(self, steps: int = 0) -> str:
        """The code of the current step of the pinned clock, or `steps` away from it."""
        return code_at(self.secret, self.clock.now + 30 * steps)


async def enroll(client: httpx.AsyncClient, ctx: Context, tokens: dict[str, Any]) -> Enrolled:
    clock = Clock()
    ctx.mfa.clock = clock
    r = await client.post(f"{P}/auth/mfa/totp/setup", headers=bearer(tokens))
    assert r.status_code == 200, r.text
    secret = r.json()["secret"]
    r = await client.post(f"{P}/auth/mfa/totp/confirm", json={"code": code_at(secret, T0)},
                          headers=bearer(tokens))
    assert r.status_code == 200, r.text
    clock.now += 60  # two steps on: the confirming code's step is spent
    return Enrolled(secret, r.json()["recovery_codes"], tokens, clock)


@pytest_asyncio.fixture
async def enrolled(ctx: Context, client: httpx.AsyncClient, alice: Any) -> Enrolled:
    return await enroll(client, ctx, await login(client))


async def password_step(client: httpx.AsyncClient, **headers: str) -> str:
    r = await client.post(f"{P}/auth/login", json=ALICE, headers=headers)
    assert (r.status_code, r.json()["code"]) == (401, "mfa_required"), r.text
    token: str = r.json()["mfa_token"]
    return token


async def mfa_step(
    client: httpx.AsyncClient, token: str, code: str, **headers: str
) -> httpx.Response:
    return await client.post(f"{P}/auth/login/mfa", json={"mfa_token": token, "code": code},
                             headers=headers)


async def events(ctx: Context, type_: str) -> list[AuditEvent]:
    async with ctx.db() as db:
        return list((await db.scalars(select(AuditEvent).where(AuditEvent.type == type_)
                                      .order_by(AuditEvent.id))).all())


async def live_sessions(ctx: Context, user_id: str) -> int:
    async with ctx.db() as db:
        rows = (await db.scalars(select(Session).where(Session.user_id == user_id,
                                                       Session.revoked_at.is_(None)))).all()
    return len(rows)


def mfa_metric(ctx: Context, result: str) -> float:
    return metric(ctx.metrics.render().decode(), "gatehouse_auth_mfa_total", result=result)


# -- setup, confirm, sign-in ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_setup_confirm_then_login_needs_the_code_and_answers_tokens(
    ctx: Context, client: httpx.AsyncClient, alice: Any, enrolled: Enrolled
) -> None:
    """After setup and confirm, a right password answers mfa_required (no session opened) and
    the mfa_token with a code answers the TokenPair /auth/login gives."""
    assert len(enrolled.recovery_codes) == 10 == len(set(enrolled.recovery_codes))
    assert all(len(c) == 11 and c[5] == "-" for c in enrolled.recovery_codes)
    assert [e.user_id for e in await events(ctx, "mfa.enabled")] == [alice.id]
    before = await live_sessions(ctx, alice.id)

    r = await client.post(f"{P}/auth/login", json=ALICE)
    body = r.json()
    assert (r.status_code, body["code"], body["methods"]) == (401, "mfa_required",
                                                              ["totp", "recovery_code"])
    assert r.headers["content-type"] == "application/problem+json"
    assert len(body["mfa_token"]) >= 43 and "set-cookie" not in r.headers
    assert await live_sessions(ctx, alice.id) == before
    assert metric(ctx.metrics.render().decode(), "gatehouse_auth_logins_total",
                  result="mfa_required") == 1

    r = await mfa_step(client, body["mfa_token"], enrolled.code())
    assert r.status_code == 200, r.text
    pair = r.json()
    assert {"access_token", "refresh_token", "session_id", "expires_in"} <= set(pair)
    assert pair["user"]["mfa_enabled"] is True and pair["token_type"] == "Bearer"
    assert "gh_device" in set_cookies(r)
    assert await live_sessions(ctx, alice.id) == before + 1
    assert (await client.get(f"{P}/users/profile", headers=bearer(pair))).json()["mfa_enabled"]
    assert mfa_metric(ctx, "success") == 1
    r = await client.post(f"{P}/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert r.status_code == 200 and r.json()["user"]["mfa_enabled"] is True


@pytest.mark.asyncio
async def test_otpauth_uri_names_issuer_and_email_url_encoded(make_app: Any) -> None:
    """The setup answers an otpauth:// URI with MFA_ISSUER and the email, each URL-encoded."""
    app = make_app(MFA_ISSUER="Acme Corp")
    await create_user(app.state.ctx, "a+b@example.com")
    async with asgi_client(app) as client:
        tokens = await login(client, "a+b@example.com")
        r = await client.post(f"{P}/auth/mfa/totp/setup", headers=bearer(tokens))
    assert r.status_code == 200, r.text
    secret, uri = r.json()["secret"], r.json()["otpauth_uri"]
    assert uri.startswith("otpauth://totp/Acme%20Corp:a%2Bb@example.com?")
    query = parse_qs(urlsplit(uri).query)
    assert (query["secret"], query["issuer"]) == ([secret], ["Acme Corp"])
    parsed = pyotp.parse_uri(uri)
    assert (parsed.secret, parsed.issuer, parsed.name) == (secret, "Acme Corp", "a+b@example.com")


@pytest.mark.asyncio
async def test_a_new_setup_replaces_a_pending_one_and_setup_when_on_is_conflict(
    ctx: Context, client: httpx.AsyncClient, alice: Any
) -> None:
    """Only the newest pending secret confirms; a wrong code is 422; setup with MFA on is 409."""
    tokens = await login(client)
    ctx.mfa.clock = Clock()
    first = (await client.post(f"{P}/auth/mfa/totp/setup", headers=bearer(tokens))).json()
    second = (await client.post(f"{P}/auth/mfa/totp/setup", headers=bearer(tokens))).json()
    assert first["secret"] != second["secret"]
    # The replaced secret's code, and the new secret's code three steps away.
    for stale in (code_at(first["secret"], T0), code_at(second["secret"], T0 + 90)):
        r = await client.post(f"{P}/auth/mfa/totp/confirm", json={"code": stale},
                              headers=bearer(tokens))
        assert (r.status_code, r.json()["code"]) == (422, "validation_failed")
    r = await client.post(f"{P}/auth/mfa/totp/confirm",
                          json={"code": code_at(second["secret"], T0)}, headers=bearer(tokens))
    assert r.status_code == 200, r.text
    r = await client.post(f"{P}/auth/mfa/totp/setup", headers=bearer(tokens))
    assert (r.status_code, r.json()["code"]) == (409, "conflict")


@pytest.mark.asyncio
async def test_existing_sessions_survive_enabling_and_disabling_mfa(
    ctx: Context, client: httpx.AsyncClient, alice: Any
) -> None:
    """Sessions opened before MFA was turned on keep working (access and refresh), and after."""
    older = await login(client)
    enrolled = await enroll(client, ctx, await login(client))
    for tokens in (older, enrolled.tokens):
        assert (await client.get(f"{P}/users/profile", headers=bearer(tokens))).status_code == 200
    r = await client.post(f"{P}/auth/refresh", json={"refresh_token": older["refresh_token"]})
    assert r.status_code == 200, r.text
    r = await client.request("DELETE", f"{P}/auth/mfa/totp", json={"code": enrolled.code()},
                             headers=bearer(enrolled.tokens))
    assert r.status_code == 204, r.text
    assert (await client.get(f"{P}/users/profile", headers=bearer(older))).status_code == 200


# -- codes: replay, skew, recovery codes ------------------------------------------------------


@pytest.mark.asyncio
async def test_a_used_code_is_refused_when_replayed(
    ctx: Context, client: httpx.AsyncClient, enrolled: Enrolled
) -> None:
    """A TOTP code opens one session; the same code again, or the confirming one, is mfa_invalid."""
    code = enrolled.code()
    assert (await mfa_step(client, await password_step(client), code)).status_code == 200
    r = await mfa_step(client, await password_step(client), code)
    assert (r.status_code, r.json()["code"]) == (401, "mfa_invalid")
    assert "mfa_token" not in r.json()
    r = await mfa_step(client, await password_step(client), code_at(enrolled.secret, T0))
    assert (r.status_code, r.json()["code"]) == (401, "mfa_invalid")
    assert mfa_metric(ctx, "invalid") == 2


@pytest.mark.asyncio
async def test_racing_requests_with_one_code_open_one_session(
    ctx: Context, client: httpx.AsyncClient, alice: Any, enrolled: Enrolled
) -> None:
    """Five simultaneous sign-ins with the same code: exactly one gets a session."""
    tokens = [await password_step(client) for _ in range(5)]
    before = await live_sessions(ctx, alice.id)
    answers = await asyncio.gather(*(mfa_step(client, t, enrolled.code()) for t in tokens))
    assert sorted(r.status_code for r in answers) == [200, 401, 401, 401, 401]
    assert await live_sessions(ctx, alice.id) == before + 1


@pytest.mark.asyncio
async def test_codes_one_step_off_are_accepted_two_steps_off_refused(
    client: httpx.AsyncClient, enrolled: Enrolled
) -> None:
    """Clock skew: the previous and next step's codes work, codes two steps away do not."""
    token = await password_step(client)
    for steps in (-2, 2):
        r = await mfa_step(client, token, enrolled.code(steps))
        assert (r.status_code, r.json()["code"]) == (401, "mfa_invalid"), steps
    assert (await mfa_step(client, token, enrolled.code(-1))).status_code == 200
    r = await mfa_step(client, await password_step(client), enrolled.code(1))
    assert r.status_code == 200, r.text


@pytest.mark.asyncio
async def test_recovery_codes_are_single_use_any_case_with_or_without_hyphen(
    ctx: Context, client: httpx.AsyncClient, alice: Any, enrolled: Enrolled
) -> None:
    """A recovery code works once, typed upper-case without its hyphen; then it is mfa_invalid."""
    code = enrolled.recovery_codes[0]
    r = await mfa_step(client, await password_step(client), code.replace("-", "").upper())
    assert r.status_code == 200, r.text
    r = await mfa_step(client, await password_step(client), code)
    assert (r.status_code, r.json()["code"]) == (401, "mfa_invalid")
    spaced = f" {enrolled.recovery_codes[1].upper()} "
    r = await mfa_step(client, await password_step(client), spaced)
    assert r.status_code == 200, r.text
    used = await events(ctx, "mfa.recovery_code_used")
    assert [e.user_id for e in used] == [alice.id, alice.id]
    assert mfa_metric(ctx, "recovery_code") == 2


@pytest.mark.asyncio
async def test_regenerating_recovery_codes_invalidates_the_old_set(
    client: httpx.AsyncClient, enrolled: Enrolled
) -> None:
    """A new set (proven by a TOTP code) works, the old set stops working; wrong codes are 422."""
    r = await client.post(f"{P}/auth/mfa/recovery-codes", json={"code": "abcde-fghjk"},
                          headers=bearer(enrolled.tokens))
    assert (r.status_code, r.json()["code"]) == (422, "validation_failed")
    r = await client.post(f"{P}/auth/mfa/recovery-codes", json={"code": enrolled.code()},
                          headers=bearer(enrolled.tokens))
    assert r.status_code == 200, r.text
    fresh = r.json()["recovery_codes"]
    assert len(fresh) == 10 and not set(fresh) & set(enrolled.recovery_codes)
    r = await mfa_step(client, await password_step(client), enrolled.recovery_codes[2])
    assert (r.status_code, r.json()["code"]) == (401, "mfa_invalid")
    assert (await mfa_step(client, await password_step(client), fresh[0])).status_code == 200


@pytest.mark.asyncio
async def test_disable_with_a_recovery_code_turns_mfa_off(
    ctx: Context, client: httpx.AsyncClient, alice: Any, enrolled: Enrolled
) -> None:
    """DELETE /auth/mfa/totp with a recovery code: 204, audited, and the password alone signs in."""
    r = await client.request("DELETE", f"{P}/auth/mfa/totp", json={"code": "123456"},
                             headers=bearer(enrolled.tokens))
    assert (r.status_code, r.json()["code"]) == (422, "validation_failed")
    r = await client.request("DELETE", f"{P}/auth/mfa/totp",
                             json={"code": enrolled.recovery_codes[3]},
                             headers=bearer(enrolled.tokens))
    assert r.status_code == 204, r.text
    assert [e.user_id for e in await events(ctx, "mfa.disabled")] == [alice.id]
    assert (await login(client))["user"]["mfa_enabled"] is False
    r = await client.request("DELETE", f"{P}/auth/mfa/totp", json={"code": enrolled.code()},
                             headers=bearer(enrolled.tokens))
    assert (r.status_code, r.json()["code"]) == (409, "conflict")


# -- the mfa_token: throttling, burning, expiry ---------------------------------------------


@pytest.mark.asyncio
async def test_wrong_codes_count_as_failed_logins_until_login_throttled(make_app: Any) -> None:
    """Wrong codes count for the email and IP, across fresh password steps (which reset
    nothing), until even a right code answers 429 login_throttled, and so does the password."""
    app = make_app(LOGIN_MAX_FAILURES="3")
    ctx: Context = app.state.ctx
    await create_user(ctx)
    async with asgi_client(app) as client:
        enrolled = await enroll(client, ctx, await login(client))
        first = await password_step(client)
        for wrong in ("000001", "000002"):
            r = await mfa_step(client, first, wrong)
            assert (r.status_code, r.json()["code"]) == (401, "mfa_invalid")
        second = await password_step(client)  # a right password does not reset the counter
        r = await mfa_step(client, second, "000003")
        assert (r.status_code, r.json()["code"]) == (401, "mfa_invalid")
        r = await mfa_step(client, second, enrolled.code())
        assert (r.status_code, r.json()["code"]) == (429, "login_throttled")
        assert int(r.headers["Retry-After"]) == r.json()["retry_after"] >= 1
        r = await client.post(f"{P}/auth/login", json=ALICE)
        assert (r.status_code, r.json()["code"]) == (429, "login_throttled")
    assert len(await events(ctx, "mfa.failure")) == 3


@pytest.mark.asyncio
async def test_five_wrong_codes_burn_the_mfa_token(make_app: Any) -> None:
    """After five wrong codes the mfa_token is spent: a right code then answers mfa_expired."""
    app = make_app(LOGIN_MAX_FAILURES="50")
    ctx: Context = app.state.ctx
    await create_user(ctx)
    async with asgi_client(app) as client:
        enrolled = await enroll(client, ctx, await login(client))
        token = await password_step(client)
        for i in range(5):
            r = await mfa_step(client, token, f"00000{i}")
            assert (r.status_code, r.json()["code"]) == (401, "mfa_invalid")
        r = await mfa_step(client, token, enrolled.code())
        assert (r.status_code, r.json()["code"]) == (401, "mfa_expired")
        r = await mfa_step(client, await password_step(client), enrolled.code())
        assert r.status_code == 200, r.text
    assert mfa_metric(ctx, "expired") == 1


@pytest.mark.asyncio
async def test_an_old_used_or_unknown_mfa_token_is_expired(make_app: Any) -> None:
    """An mfa_token past its lifetime, already used, or never issued answers mfa_expired."""
    app = make_app(GATEHOUSE_MFA_TOKEN_TTL="1")
    ctx: Context = app.state.ctx
    await create_user(ctx)
    async with asgi_client(app) as client:
        enrolled = await enroll(client, ctx, await login(client))
        old = await password_step(client)
        await asyncio.sleep(1.3)
        r = await mfa_step(client, old, enrolled.code())
        assert (r.status_code, r.json()["code"]) == (401, "mfa_expired")
        used = await password_step(client)
        assert (await mfa_step(client, used, enrolled.code())).status_code == 200
        enrolled.clock.now += 30
        for token in (used, "x" * 43):
            r = await mfa_step(client, token, enrolled.code())
            assert (r.status_code, r.json()["code"]) == (401, "mfa_expired")


# -- order of checks, cookie mode, API keys ----------------------------------------------------


@pytest.mark.asyncio
async def test_a_disabled_account_answers_account_disabled_not_mfa_required(
    ctx: Context, client: httpx.AsyncClient, alice: Any, enrolled: Enrolled
) -> None:
    """A disabled account with MFA on answers account_disabled to the right password, and an
    mfa_token earned before the disable opens no session."""
    token = await password_step(client)
    await ctx.accounts.admin_update(alice.id, {"disabled": True}, CLI)
    r = await client.post(f"{P}/auth/login", json=ALICE)
    assert (r.status_code, r.json()["code"]) == (403, "account_disabled")
    r = await mfa_step(client, token, enrolled.code())
    assert (r.status_code, r.json()["code"]) == (403, "account_disabled")


@pytest.mark.asyncio
async def test_an_unverified_address_answers_email_unverified_before_mfa(make_app: Any) -> None:
    """With GATEHOUSE_REQUIRE_VERIFIED_EMAIL=1, an unverified address with MFA on answers
    email_unverified to the right password, before any second factor."""
    app = make_app(GATEHOUSE_REQUIRE_VERIFIED_EMAIL="1")
    ctx: Context = app.state.ctx
    user = await ctx.accounts.create(email="alice@example.com", password=PASSWORD, name="A",
                                     roles=["user"], actor=CLI, email_verified=True)
    async with asgi_client(app) as client:
        await enroll(client, ctx, await login(client))
        async with ctx.db.begin() as db:
            await db.execute(update(User).where(User.id == user.id).values(email_verified=False))
        r = await client.post(f"{P}/auth/login", json=ALICE)
    assert (r.status_code, r.json()["code"]) == (403, "email_unverified")


@pytest.mark.asyncio
async def test_cookie_mode_mfa_login_sets_cookies_and_unsafe_requests_need_csrf(
    client: httpx.AsyncClient, enrolled: Enrolled
) -> None:
    """Cookie mode: the password step sets no cookie; the MFA step sets the session cookies and
    no token fields; a later unsafe request needs X-CSRF-Token."""
    token = await password_step(client, **COOKIE_MODE)
    client.cookies.clear()
    r = await mfa_step(client, token, enrolled.code(), **COOKIE_MODE)
    assert r.status_code == 200, r.text
    assert not {"access_token", "refresh_token"} & set(r.json())
    assert r.json()["user"]["mfa_enabled"] is True
    cookies = {name: attrs["value"] for name, attrs in set_cookies(r).items()}
    assert set(cookies) == {"gh_access", "gh_refresh", "gh_csrf", "gh_device"}
    client.cookies.clear()
    session = {k: cookies[k] for k in ("gh_access", "gh_csrf")}
    r = await client.patch(f"{P}/users/profile", json={"name": "A"}, headers=browser(session))
    assert (r.status_code, r.json()["code"]) == (403, "csrf_failed")
    r = await client.patch(f"{P}/users/profile", json={"name": "A"},
                           headers=browser(session, csrf=cookies["gh_csrf"]))
    assert r.status_code == 200, r.text


@pytest.mark.asyncio
async def test_cookie_mode_mfa_step_from_a_foreign_origin_is_refused(
    client: httpx.AsyncClient, enrolled: Enrolled
) -> None:
    """The cookie-mode MFA step obeys the login's origin rule: a foreign Origin is csrf_failed."""
    token = await password_step(client)
    r = await mfa_step(client, token, enrolled.code(), Origin="https://evil.example.net",
                       **COOKIE_MODE)
    assert (r.status_code, r.json()["code"]) == (403, "csrf_failed")


@pytest.mark.asyncio
async def test_api_keys_cannot_use_the_mfa_account_routes(
    ctx: Context, client: httpx.AsyncClient, admin: Any
) -> None:
    """The /auth/mfa/* routes need a user's session: an API key answers 403 forbidden."""
    tokens = await login(client, "root@example.com")
    r = await client.post(f"{P}/admin/api-keys", json={"name": "k", "scopes": ["users:write"]},
                          headers=bearer(tokens))
    key = {"X-API-Key": r.json()["key"]}
    for method, path, body in (("POST", "/auth/mfa/totp/setup", None),
                               ("POST", "/auth/mfa/totp/confirm", {"code": "123456"}),
                               ("DELETE", "/auth/mfa/totp", {"code": "123456"}),
                               ("POST", "/auth/mfa/recovery-codes", {"code": "123456"})):
        r = await client.request(method, f"{P}{path}", json=body, headers=key)
        assert (r.status_code, r.json()["code"]) == (403, "forbidden"), path


# -- reset by an admin or the CLI, storage -------------------------------------------------------


@pytest.mark.asyncio
async def test_admin_reset_needs_every_permission_of_the_target(
    ctx: Context, client: httpx.AsyncClient, admin: Any
) -> None:
    """An operator cannot reset an admin's second factor (403, nothing changes); an admin
    resets a user's (204, audited mfa.reset with the target), and the password alone signs in."""
    await create_user(ctx, "op@example.com", ["operator"])
    await create_user(ctx)
    root = {"email": "root@example.com", "password": PASSWORD}
    root_tokens = await login(client, "root@example.com")
    root_mfa = await enroll(client, ctx, root_tokens)
    alice_mfa = await enroll(client, ctx, await login(client))
    r = await client.post(f"{P}/auth/login", json=root)
    assert r.json()["code"] == "mfa_required"
    r = await mfa_step(client, r.json()["mfa_token"], root_mfa.code())
    root_tokens = r.json()
    op_tokens = await login(client, "op@example.com")

    r = await client.delete(f"{P}/admin/users/{admin.id}/mfa", headers=bearer(op_tokens))
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    r = await client.post(f"{P}/auth/login", json=root)
    assert r.json()["code"] == "mfa_required"

    alice = await ctx.accounts.user_by_email("alice@example.com")
    assert alice is not None and alice_mfa.recovery_codes
    r = await client.delete(f"{P}/admin/users/{alice.id}/mfa", headers=bearer(root_tokens))
    assert r.status_code == 204, r.text
    assert (await login(client))["user"]["mfa_enabled"] is False
    [reset] = await events(ctx, "mfa.reset")
    assert (reset.user_id, reset.data["target_user_id"]) == (admin.id, alice.id)
    r = await client.delete(f"{P}/admin/users/no-such-user/mfa", headers=bearer(root_tokens))
    assert (r.status_code, r.json()["code"]) == (404, "not_found")


@pytest.mark.asyncio
async def test_cli_reset_mfa_turns_the_factor_off_audited_with_no_actor(
    ctx: Context, client: httpx.AsyncClient, alice: Any, enrolled: Enrolled, database_url: str
) -> None:
    """`gatehouse users reset-mfa EMAIL` turns MFA off (audited mfa.reset, user_id null); the
    user then signs in with the password and can set it up again."""
    result = await asyncio.to_thread(run_cli, "users", "reset-mfa", "alice@example.com",
                                     env={"DATABASE_URL": database_url})
    assert result.returncode == 0, result.stderr
    assert "turned off" in result.stdout
    [reset] = await events(ctx, "mfa.reset")
    assert (reset.user_id, reset.data["target_user_id"]) == (None, alice.id)
    tokens = await login(client)
    assert tokens["user"]["mfa_enabled"] is False
    r = await client.post(f"{P}/auth/mfa/totp/setup", headers=bearer(tokens))
    assert r.status_code == 200, r.text
    result = await asyncio.to_thread(run_cli, "users", "reset-mfa", "nobody@example.com",
                                     env={"DATABASE_URL": database_url})
    assert result.returncode != 0 and "Traceback" not in result.stderr + result.stdout


@pytest.mark.asyncio
async def test_secrets_and_recovery_codes_are_not_stored_in_the_clear(
    ctx: Context, alice: Any, enrolled: Enrolled
) -> None:
    """The database holds the TOTP secret only encrypted and recovery codes only hashed."""
    async with ctx.db() as db:
        row = await db.get(UserMfa, alice.id)
        hashes = (await db.scalars(select(MfaRecoveryCode.code_hash)
                                   .where(MfaRecoveryCode.user_id == alice.id))).all()
    assert row is not None and row.totp_secret_encrypted is not None
    stored = " ".join([row.totp_secret_encrypted, *hashes])
    assert enrolled.secret not in stored and enrolled.secret.lower() not in stored
    assert not any(c in stored or c.replace("-", "") in stored for c in enrolled.recovery_codes)
    assert ctx.server_keys.decrypt(row.totp_secret_encrypted) == enrolled.secret
    assert len(hashes) == 10


@pytest.mark.asyncio
async def test_a_secret_sealed_under_another_encryption_key_is_a_wrong_code_not_an_error(
    make_app: Any
) -> None:
    """After ENCRYPTION_KEY changes, the stored secret cannot verify: mfa_invalid, never a 500."""
    before = make_app()
    ctx: Context = before.state.ctx
    await create_user(ctx)
    async with asgi_client(before) as client:
        enrolled = await enroll(client, ctx, await login(client))
    after = make_app(ENCRYPTION_KEY="Zq8vN3kT1pW6xR4mB7cY2hJ5dL9fG0sA")
    after.state.ctx.mfa.clock = enrolled.clock
    async with asgi_client(after) as client:
        for code in (enrolled.code(), enrolled.recovery_codes[0]):
            r = await mfa_step(client, await password_step(client), code)
            assert (r.status_code, r.json()["code"]) == (401, "mfa_invalid")


@pytest.mark.asyncio
async def test_an_mfa_token_from_one_instance_is_redeemed_once_on_another(make_app: Any) -> None:
    """With REDIS_URL, the second step may reach another instance, which spends the token for
    both: the first instance then answers mfa_expired."""
    prefix = f"mfa{uuid.uuid4().hex[:8]}:"
    one = make_app(REDIS_URL=REDIS_URL, GATEHOUSE_REDIS_PREFIX=prefix)
    other = make_app(REDIS_URL=REDIS_URL, GATEHOUSE_REDIS_PREFIX=prefix)
    await create_user(one.state.ctx)
    async with asgi_client(one) as first, asgi_client(other) as second:
        enrolled = await enroll(first, one.state.ctx, await login(first))
        other.state.ctx.mfa.clock = enrolled.clock
        token = await password_step(first)
        r = await mfa_step(second, token, enrolled.code())
        assert r.status_code == 200, r.text
        enrolled.clock.now += 30
        r = await mfa_step(first, token, enrolled.code())
        assert (r.status_code, r.json()["code"]) == (401, "mfa_expired")
