"""Sessions through the ASGI app (API.md §3-4), on SQLite and PostgreSQL.

Login, refresh rotation with idempotent grace, reuse detection, lifetimes,
logout, the session listing, register, profile, password change, role
changes, API keys on user routes, the unversioned /api routes and metrics.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.util import await_only

from gatehouse.audit.service import CLI
from gatehouse.auth import refresh_units
from gatehouse.auth.rbac import ALL_PERMISSIONS
from gatehouse.context import Context
from gatehouse.store.db.models import AuditEvent, RefreshToken, Session
from tests.conftest import PASSWORD, asgi_client, bearer, create_user, login

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)

P = "/api/v1"
TOKEN_PAIR_KEYS = {"access_token", "token_type", "expires_in", "refresh_token",
                   "refresh_expires_in", "session_id", "user"}
# API.md §4 `User` (email_verified and mfa_enabled came with §8).
USER_KEYS = {"id", "email", "name", "roles", "disabled", "created_at", "email_verified",
             "mfa_enabled"}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def fullwidth(text: str) -> str:
    """The fullwidth look-alike of ASCII text, which NFKC folds back to the original."""
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


# -- helpers ------------------------------------------------------------------------------


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(f"{P}/auth/refresh", json={"refresh_token": token})


def code_of(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, (r.json().get("code", "") if r.status_code >= 400 else "")


async def status_with(client: httpx.AsyncClient, tokens: dict[str, Any],
                      path: str = f"{P}/auth/validate") -> tuple[int, str]:
    return code_of(await client.get(path, headers=bearer(tokens)))


async def set_session(ctx: Context, sid: str, **values: Any) -> None:
    async with ctx.db.begin() as db:
        await db.execute(update(Session).where(Session.id == sid).values(**values))


async def refresh_rows(ctx: Context, sid: str) -> int:
    async with ctx.db() as db:
        count = await db.scalar(
            select(func.count()).select_from(RefreshToken).where(RefreshToken.session_id == sid))
    return int(count or 0)


async def audit_events(ctx: Context, type_: str) -> list[AuditEvent]:
    async with ctx.db() as db:
        return list((await db.scalars(
            select(AuditEvent).where(AuditEvent.type == type_).order_by(AuditEvent.id))).all())


def metric(text: str, name: str, **labels: str) -> float:
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(f"{name}{{{label_text}}}" if labels else name) + r" (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    assert match is not None, f"{name} {labels} not exported"
    return float(match.group(1))


# -- login ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_login_answers_a_token_pair(client: httpx.AsyncClient, alice: Any) -> None:
    """Token-mode login answers exactly the TokenPair fields, with the User inside, and no-store."""
    r = await client.post(f"{P}/auth/login",
                          json={"email": "alice@example.com", "password": PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == TOKEN_PAIR_KEYS
    assert body["token_type"] == "Bearer"
    assert set(body["user"]) == USER_KEYS
    assert (body["user"]["id"], body["user"]["email"], body["user"]["roles"],
            body["user"]["disabled"]) == (alice.id, "alice@example.com", ["user"], False)
    assert RFC3339.match(body["user"]["created_at"])
    sid, secret = body["refresh_token"].split(".")
    assert sid == body["session_id"]
    assert len(secret) >= 43  # 256 bits in unpadded base64url
    assert 2_592_000 - 60 <= body["refresh_expires_in"] <= 2_592_000
    assert r.headers["cache-control"] == "no-store"


@pytest.mark.asyncio
async def test_login_failure_is_identical_for_unknown_email_and_wrong_password(
    client: httpx.AsyncClient, alice: Any
) -> None:
    """Unknown email and wrong password get the same status, body and headers (no enumeration)."""
    unknown = await client.post(f"{P}/auth/login",
                                json={"email": "nobody@example.com", "password": PASSWORD})
    wrong = await client.post(f"{P}/auth/login",
                              json={"email": "alice@example.com", "password": "Wrong-password-123"})
    strip = {"request_id"}
    assert ({k: v for k, v in unknown.json().items() if k not in strip}
            == {k: v for k, v in wrong.json().items() if k not in strip})
    assert code_of(unknown) == (401, "invalid_credentials")
    ignored = {"x-request-id", "content-length", "ratelimit-remaining", "ratelimit-reset"}
    assert ({k: v for k, v in unknown.headers.items() if k not in ignored}
            == {k: v for k, v in wrong.headers.items() if k not in ignored})


@pytest.mark.asyncio
async def test_disabled_account_is_reported_only_after_the_correct_password(
    ctx: Context, client: httpx.AsyncClient, alice: Any
) -> None:
    """A disabled account answers account_disabled for the right password, invalid_credentials
    otherwise.
    """
    await ctx.accounts.admin_update(alice.id, {"disabled": True}, CLI)
    wrong = await client.post(f"{P}/auth/login",
                              json={"email": "alice@example.com", "password": "Wrong-password-123"})
    right = await client.post(f"{P}/auth/login",
                              json={"email": "alice@example.com", "password": PASSWORD})
    assert (code_of(wrong), code_of(right)) == ((401, "invalid_credentials"),
                                                (403, "account_disabled"))


@pytest.mark.asyncio
async def test_login_ignores_client_supplied_session_ids(
    client: httpx.AsyncClient, alice: Any
) -> None:
    """A login body cannot choose its session: unknown fields are 422."""
    r = await client.post(f"{P}/auth/login", json={"email": "alice@example.com",
                                                   "password": PASSWORD, "session_id": "x"})
    assert code_of(r) == (422, "validation_failed")


# -- refresh rotation and grace -------------------------------------------------------------


@pytest.mark.asyncio
async def test_refresh_rotates_the_refresh_token(ctx: Context, client: httpx.AsyncClient,
                                                 alice: Any) -> None:
    """Refresh answers a TokenPair of the same session with a new refresh token and a working access
    token.
    """
    tokens = await login(client)
    r = await refresh(client, tokens["refresh_token"])
    assert r.status_code == 200
    new = r.json()
    assert set(new) == TOKEN_PAIR_KEYS
    assert new["session_id"] == tokens["session_id"]
    assert new["refresh_token"] != tokens["refresh_token"]
    assert new["access_token"] != tokens["access_token"]
    assert await status_with(client, new) == (200, "")
    assert await refresh_rows(ctx, tokens["session_id"]) == 2
    assert r.headers["cache-control"] == "no-store"


@pytest.mark.asyncio
async def test_superseded_token_within_grace_returns_the_current_token_without_rotating(
    ctx: Context, client: httpx.AsyncClient, alice: Any
) -> None:
    """Inside the grace window a superseded token answers the session's current token, every time.
    """
    tokens = await login(client)
    first = (await refresh(client, tokens["refresh_token"])).json()
    again = [(await refresh(client, tokens["refresh_token"])).json() for _ in range(3)]
    assert [a["refresh_token"] for a in again] == [first["refresh_token"]] * 3
    assert await refresh_rows(ctx, tokens["session_id"]) == 2  # no second rotation
    # After the successor itself rotates, the oldest token converges on the newest.
    second = (await refresh(client, first["refresh_token"])).json()
    latest = (await refresh(client, tokens["refresh_token"])).json()
    assert latest["refresh_token"] == second["refresh_token"]
    assert await status_with(client, latest) == (200, "")


@pytest.mark.asyncio
async def test_concurrent_refresh_converges_on_one_successor(
    ctx: Context, client: httpx.AsyncClient, alice: Any
) -> None:
    """Eight parallel refreshes of one token all succeed with one and the same successor."""
    tokens = await login(client)
    answers = await asyncio.gather(*(refresh(client, tokens["refresh_token"]) for _ in range(8)))
    assert [r.status_code for r in answers] == [200] * 8
    assert len({r.json()["refresh_token"] for r in answers}) == 1
    assert await refresh_rows(ctx, tokens["session_id"]) == 2
    # The session lives on: its successor refreshes normally.
    assert (await refresh(client, answers[0].json()["refresh_token"])).status_code == 200


@pytest.mark.asyncio
async def test_slow_racer_receives_the_current_token_not_a_stale_successor(
    make_app: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refresh that read its token as current just before another instance rotated it twice
    still answers the newest token.

    The slow racer stalls between its lookup and its write (inside its unit of work, on its
    writer thread or in the PostgreSQL driver's greenlet) while the other instance, on the
    same database, rotates twice; its write then finds the token superseded.
    """
    slow_app, other_app = make_app(), make_app()
    ctx: Context = slow_app.state.ctx
    await create_user(ctx)
    original = refresh_units.rotate
    paused, resume, resume_thread = threading.Event(), asyncio.Event(), threading.Event()
    calls = 0

    def rotate(conn: Any, *args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:  # the slow racer: it has read the token as current, then stalls
            paused.set()
            if conn.dialect.name == "postgresql":
                await_only(resume.wait())  # on the event loop: let the other instance run
            else:
                resume_thread.wait(10)  # its own writer thread
        return original(conn, *args)

    monkeypatch.setattr(refresh_units, "rotate", rotate)
    async with asgi_client(slow_app) as slow_client, asgi_client(other_app) as other:
        tokens = await login(slow_client)
        slow = asyncio.create_task(refresh(slow_client, tokens["refresh_token"]))
        assert await asyncio.to_thread(paused.wait, 5)
        first = (await refresh(other, tokens["refresh_token"])).json()
        second = (await refresh(other, first["refresh_token"])).json()
        resume.set()
        resume_thread.set()
        r = await slow
    assert (r.status_code, r.json()["refresh_token"]) == (200, second["refresh_token"])
    assert await refresh_rows(ctx, tokens["session_id"]) == 3


@pytest.mark.asyncio
async def test_replay_after_grace_revokes_the_whole_session(make_app: Callable[..., Any]) -> None:
    """A superseded token replayed after the grace window answers refresh_reused and ends the
    session.
    """
    app = make_app(REFRESH_GRACE_SECONDS=0)
    ctx: Context = app.state.ctx
    alice = await create_user(ctx)
    async with asgi_client(app) as client:
        tokens = await login(client)
        current = (await refresh(client, tokens["refresh_token"])).json()
        await asyncio.sleep(0.05)
        assert code_of(await refresh(client, tokens["refresh_token"])) == (401, "refresh_reused")
        assert await status_with(client, current) == (401, "session_revoked")
        assert await status_with(client, tokens) == (401, "session_revoked")
        assert code_of(await refresh(client, current["refresh_token"])) == (401, "session_revoked")
        # The replayed token keeps saying why the session ended.
        assert code_of(await refresh(client, tokens["refresh_token"])) == (401, "refresh_reused")
    events = await audit_events(ctx, "refresh.reuse_detected")
    assert len(events) == 1
    assert (events[0].data["session_id"], events[0].data["target_user_id"]) == (
        tokens["session_id"], alice.id)


@pytest.mark.asyncio
async def test_replay_just_after_the_default_grace_window_is_reuse(
    ctx: Context, client: httpx.AsyncClient, alice: Any
) -> None:
    """With the default 60 s grace, a token superseded 61 s ago is refresh_reused."""
    tokens = await login(client)
    await refresh(client, tokens["refresh_token"])
    async with ctx.db.begin() as db:
        await db.execute(update(RefreshToken).where(RefreshToken.superseded_at.is_not(None))
                         .values(superseded_at=datetime.now(UTC) - timedelta(seconds=61)))
    assert code_of(await refresh(client, tokens["refresh_token"])) == (401, "refresh_reused")
    assert await status_with(client, tokens) == (401, "session_revoked")


@pytest.mark.asyncio
async def test_refresh_after_absolute_lifetime_is_refresh_expired(
    ctx: Context, client: httpx.AsyncClient, alice: Any
) -> None:
    """A session past its absolute lifetime cannot be refreshed."""
    tokens = await login(client)
    await set_session(ctx, tokens["session_id"],
                      expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert code_of(await refresh(client, tokens["refresh_token"])) == (401, "refresh_expired")


@pytest.mark.asyncio
async def test_refresh_token_ttl_sets_the_absolute_lifetime(make_app: Callable[..., Any]) -> None:
    """REFRESH_TOKEN_TTL is the session's lifetime: refresh_expires_in counts down from it."""
    app = make_app(REFRESH_TOKEN_TTL=120)
    await create_user(app.state.ctx)
    async with asgi_client(app) as client:
        tokens = await login(client)
        assert 110 <= tokens["refresh_expires_in"] <= 120
        again = (await refresh(client, tokens["refresh_token"])).json()
        assert again["refresh_expires_in"] <= tokens["refresh_expires_in"]


@pytest.mark.asyncio
async def test_refresh_after_idle_lifetime_is_refresh_expired(make_app: Callable[..., Any]) -> None:
    """A session unused for longer than SESSION_IDLE_TTL ends; one used within it continues."""
    app = make_app(SESSION_IDLE_TTL=60)
    ctx: Context = app.state.ctx
    await create_user(ctx)
    async with asgi_client(app) as client:
        idle, active = await login(client), await login(client)
        now = datetime.now(UTC)
        await set_session(ctx, idle["session_id"], last_used_at=now - timedelta(seconds=61))
        await set_session(ctx, active["session_id"], last_used_at=now - timedelta(seconds=30))
        assert code_of(await refresh(client, idle["refresh_token"])) == (401, "refresh_expired")
        assert (await refresh(client, active["refresh_token"])).status_code == 200
        listed = (await client.get(f"{P}/auth/sessions", headers=bearer(active))).json()
        assert [s["id"] for s in listed["items"]] == [active["session_id"]]


@pytest.mark.asyncio
async def test_refresh_records_last_use_ip_and_user_agent(
    app: Any, ctx: Context, client: httpx.AsyncClient, alice: Any
) -> None:
    """Sessions show the IP and user agent of their last login or refresh, and when that was."""
    r = await client.post(f"{P}/auth/login", headers={"User-Agent": "phone-app/1.0"},
                          json={"email": "alice@example.com", "password": PASSWORD})
    tokens = r.json()
    before = (await client.get(f"{P}/auth/sessions", headers=bearer(tokens))).json()["items"][0]
    assert (before["ip"], before["user_agent"], before["current"]) == ("127.0.0.1", "phone-app/1.0",
                                                                       True)
    # Age the session by a minute instead of sleeping (timestamps show whole seconds).
    async with ctx.db() as db:
        last_used = await db.scalar(select(Session.last_used_at)
                                    .where(Session.id == tokens["session_id"]))
    assert last_used is not None
    await set_session(ctx, tokens["session_id"], last_used_at=last_used - timedelta(minutes=1))
    before = (await client.get(f"{P}/auth/sessions", headers=bearer(tokens))).json()["items"][0]
    async with asgi_client(app, client_ip="10.1.2.3") as other:
        r = await other.post(f"{P}/auth/refresh", headers={"User-Agent": "phone-app/2.0"},
                             json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200
    after = (await client.get(f"{P}/auth/sessions", headers=bearer(r.json()))).json()["items"][0]
    assert (after["id"], after["ip"], after["user_agent"]) == (tokens["session_id"], "10.1.2.3",
                                                               "phone-app/2.0")
    assert after["created_at"] == before["created_at"]
    assert after["last_used_at"] > before["last_used_at"]


@pytest.mark.asyncio
@pytest.mark.parametrize("body", [
    {"refresh_token": "garbage"},
    {"refresh_token": "00000000-0000-7000-8000-000000000000." + "A" * 43},
    {},
], ids=["garbage", "unknown", "missing"])
async def test_unknown_or_malformed_refresh_token_is_refresh_invalid(
    client: httpx.AsyncClient, alice: Any, body: dict[str, str]
) -> None:
    """Refresh tokens that were never issued answer refresh_invalid."""
    r = await client.post(f"{P}/auth/refresh", json=body)
    assert code_of(r) == (401, "refresh_invalid")


@pytest.mark.asyncio
async def test_refresh_token_of_another_session_with_swapped_id_is_refresh_invalid(
    client: httpx.AsyncClient, alice: Any
) -> None:
    """A secret only works with its own session id."""
    a, b = await login(client), await login(client)
    swapped = a["session_id"] + "." + b["refresh_token"].split(".")[1]
    assert code_of(await refresh(client, swapped)) == (401, "refresh_invalid")


# -- logout ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_logout_revokes_this_session_at_once(client: httpx.AsyncClient, alice: Any) -> None:
    """After logout the access token is session_revoked on the very next request; other sessions
    live.
    """
    tokens, other = await login(client), await login(client)
    r = await client.post(f"{P}/auth/logout", headers=bearer(tokens))
    assert (r.status_code, r.content) == (204, b"")
    assert await status_with(client, tokens) == (401, "session_revoked")
    assert code_of(await refresh(client, tokens["refresh_token"])) == (401, "session_revoked")
    assert await status_with(client, other) == (200, "")


@pytest.mark.asyncio
async def test_logout_all_revokes_every_session_of_the_user(
    ctx: Context, client: httpx.AsyncClient, alice: Any
) -> None:
    """logout-all ends all of the user's sessions, access and refresh tokens alike, and audits it.
    """
    await create_user(ctx, "bob@example.com", name="Bob")
    sessions = [await login(client) for _ in range(3)]
    bob = await login(client, "bob@example.com")
    r = await client.post(f"{P}/auth/logout-all", headers=bearer(sessions[0]))
    assert r.status_code == 204
    for tokens in sessions:
        assert await status_with(client, tokens) == (401, "session_revoked")
        assert code_of(await refresh(client, tokens["refresh_token"])) == (401, "session_revoked")
    assert await status_with(client, bob) == (200, "")
    (event,) = await audit_events(ctx, "sessions.revoked_all")
    assert (event.user_id, event.data["target_user_id"]) == (alice.id, alice.id)
    assert len(await audit_events(ctx, "logout_all")) == 1


# -- the session listing ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_session_listing_marks_the_current_session(client: httpx.AsyncClient,
                                                         alice: Any) -> None:
    """GET /auth/sessions lists the live sessions with exactly the documented fields, one `current`.
    """
    first, second = await login(client), await login(client)
    r = await client.get(f"{P}/auth/sessions", headers=bearer(second))
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"items", "next_cursor"}
    assert body["next_cursor"] is None
    by_id = {s["id"]: s for s in body["items"]}
    assert set(by_id) == {first["session_id"], second["session_id"]}
    assert all(set(s) == {"id", "created_at", "last_used_at", "ip", "user_agent", "current"}
               for s in body["items"])
    assert (by_id[first["session_id"]]["current"], by_id[second["session_id"]]["current"]) == (
        False, True)
    assert all(RFC3339.match(s["created_at"]) and RFC3339.match(s["last_used_at"])
               for s in body["items"])


@pytest.mark.asyncio
async def test_session_listing_paginates_with_limit_and_cursor(client: httpx.AsyncClient,
                                                               alice: Any) -> None:
    """Pages of `limit` items chained by `next_cursor` cover every session exactly once."""
    all_tokens = [await login(client) for _ in range(5)]
    seen: list[str] = []
    sizes = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"{P}/auth/sessions", params=params,
                                 headers=bearer(all_tokens[0]))).json()
        sizes.append(len(page["items"]))
        seen += [s["id"] for s in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sizes == [2, 2, 1]
    assert sorted(seen) == sorted(t["session_id"] for t in all_tokens)


@pytest.mark.asyncio
@pytest.mark.parametrize("limit", [0, 201, -1])
async def test_session_listing_limit_out_of_range_is_422(
    client: httpx.AsyncClient, alice: Any, limit: int
) -> None:
    """limit must be 1-200."""
    tokens = await login(client)
    r = await client.get(f"{P}/auth/sessions", params={"limit": limit}, headers=bearer(tokens))
    assert code_of(r) == (422, "validation_failed")
    assert r.json()["errors"]
    r = await client.get(f"{P}/auth/sessions", params={"limit": 200}, headers=bearer(tokens))
    assert r.status_code == 200


@pytest.mark.asyncio
async def test_deleting_an_own_session_revokes_it(ctx: Context, client: httpx.AsyncClient,
                                                  alice: Any) -> None:
    """DELETE /auth/sessions/{id} of one's own other session is 204 and ends that session."""
    mine, other = await login(client), await login(client)
    r = await client.delete(f"{P}/auth/sessions/{other['session_id']}", headers=bearer(mine))
    assert r.status_code == 204
    assert await status_with(client, other) == (401, "session_revoked")
    assert code_of(await refresh(client, other["refresh_token"])) == (401, "session_revoked")
    listed = (await client.get(f"{P}/auth/sessions", headers=bearer(mine))).json()["items"]
    assert [s["id"] for s in listed] == [mine["session_id"]]
    (event,) = await audit_events(ctx, "session.revoked")
    assert (event.user_id, event.data["session_id"]) == (alice.id, other["session_id"])


@pytest.mark.asyncio
async def test_deleting_someone_elses_session_is_404(ctx: Context, client: httpx.AsyncClient,
                                                     alice: Any) -> None:
    """Another user's session id is not_found (and keeps working); so is an unknown id."""
    await create_user(ctx, "bob@example.com", name="Bob")
    mine, bob = await login(client), await login(client, "bob@example.com")
    r = await client.delete(f"{P}/auth/sessions/{bob['session_id']}", headers=bearer(mine))
    assert code_of(r) == (404, "not_found")
    assert await status_with(client, bob) == (200, "")
    r = await client.delete(f"{P}/auth/sessions/no-such-session", headers=bearer(mine))
    assert code_of(r) == (404, "not_found")


# -- validate ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_validate_describes_the_token(
    client: httpx.AsyncClient, alice: Any, admin: Any
) -> None:
    """/auth/validate answers active, ids, roles, permissions and expires_at of the caller's token.
    """
    tokens = await login(client)
    body = (await client.get(f"{P}/auth/validate", headers=bearer(tokens))).json()
    exp = datetime.fromtimestamp(int(_claims(tokens)["exp"]), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert body == {"active": True, "user_id": alice.id, "session_id": tokens["session_id"],
                    "roles": ["user"], "permissions": [], "expires_at": exp}
    root = await login(client, "root@example.com")
    body = (await client.get(f"{P}/auth/validate", headers=bearer(root))).json()
    assert (body["roles"], body["permissions"]) == (["admin"], sorted(ALL_PERMISSIONS))


def _claims(tokens: dict[str, Any]) -> dict[str, Any]:
    part = tokens["access_token"].split(".")[1]
    value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return value


@pytest.mark.asyncio
async def test_protected_route_without_credentials_is_token_missing(
    client: httpx.AsyncClient
) -> None:
    """No credentials at all is 401 token_missing with a WWW-Authenticate challenge."""
    r = await client.get(f"{P}/auth/validate")
    assert code_of(r) == (401, "token_missing")
    assert r.headers["www-authenticate"].startswith("Bearer")


# -- register ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_register_is_404_unless_signup_is_open(client: httpx.AsyncClient) -> None:
    """With the default GATEHOUSE_SIGNUP=closed, /auth/register does not exist, whatever the body."""
    r = await client.post(f"{P}/auth/register",
                          json={"email": "new@example.com", "password": PASSWORD, "name": "N"})
    assert code_of(r) == (404, "not_found")
    for body in ({}, {"email": "new@example.com", "roles": ["admin"]}):
        assert code_of(await client.post(f"{P}/auth/register", json=body)) == (404, "not_found")
    schema = (await client.get("/openapi.json")).json()
    assert f"{P}/auth/register" not in schema["paths"]


@pytest.mark.asyncio
async def test_open_signup_registers_normalised_unique_emails(make_app: Callable[..., Any]) -> None:
    """Open sign-up answers 201 User; look-alike forms of one email are the same account (409).
    The audit event names the new user as its own actor.
    """
    app = make_app(GATEHOUSE_SIGNUP="open")
    async with asgi_client(app) as client:
        r = await client.post(f"{P}/auth/register", json={
            "email": fullwidth("ALICE") + "@example.com", "password": PASSWORD, "name": "Alice"})
        assert r.status_code == 201
        user = r.json()
        assert set(user) == USER_KEYS
        assert (user["email"], user["name"], user["roles"], user["disabled"]) == (
            "alice@example.com", "Alice", ["user"], False)
        for email in ("alice@example.com", "Alice@Example.COM",
                      fullwidth("alice") + "@example.com"):
            dup = await client.post(f"{P}/auth/register",
                                    json={"email": email, "password": PASSWORD, "name": "A"})
            assert code_of(dup) == (409, "conflict")
        tokens = await login(client, fullwidth("ALICE") + "@EXAMPLE.COM")
        assert tokens["user"]["id"] == user["id"]
    (event,) = await audit_events(app.state.ctx, "user.created")
    assert (event.user_id, event.data["target_user_id"]) == (user["id"], user["id"])


@pytest.mark.asyncio
async def test_register_cannot_choose_roles(make_app: Callable[..., Any]) -> None:
    """Self-registration cannot grant itself roles: the unknown field is refused."""
    async with asgi_client(make_app(GATEHOUSE_SIGNUP="open")) as client:
        r = await client.post(f"{P}/auth/register", json={
            "email": "eve@example.com", "password": PASSWORD, "name": "Eve", "roles": ["admin"]})
        assert code_of(r) == (422, "validation_failed")


# -- profile and password ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_profile_get_and_patch(client: httpx.AsyncClient, alice: Any) -> None:
    """The caller reads their User and changes its name; other fields cannot be patched."""
    tokens = await login(client)
    r = await client.get(f"{P}/users/profile", headers=bearer(tokens))
    profile_keys = USER_KEYS | {"notify", "phone", "phone_verified"}  # API.md §10
    assert (r.status_code, set(r.json()), r.json()["name"]) == (200, profile_keys, "Alice")
    r = await client.patch(f"{P}/users/profile", json={"name": "Alice Liddell"},
                           headers=bearer(tokens))
    assert (r.status_code, r.json()["name"], r.json()["id"]) == (200, "Alice Liddell", alice.id)
    refused = await client.patch(f"{P}/users/profile", json={"name": "A", "roles": ["admin"]},
                                 headers=bearer(tokens))
    assert code_of(refused) == (422, "validation_failed")
    r = await client.get(f"{P}/users/profile", headers=bearer(tokens))
    assert (r.json()["name"], r.json()["roles"]) == ("Alice Liddell", ["user"])


@pytest.mark.asyncio
async def test_password_change_revokes_other_sessions_and_keeps_this_one(
    ctx: Context, client: httpx.AsyncClient, alice: Any
) -> None:
    """Changing the password is 204, ends every other session, keeps the current one and swaps the
    password.
    """
    current, other = await login(client), await login(client)
    new_password = "a-brand-new-passphrase-42"
    r = await client.post(f"{P}/users/profile/password", headers=bearer(current),
                          json={"current_password": PASSWORD, "new_password": new_password})
    assert r.status_code == 204
    assert await status_with(client, other) == (401, "session_revoked")
    assert code_of(await refresh(client, other["refresh_token"])) == (401, "session_revoked")
    assert await status_with(client, current) == (200, "")
    assert (await refresh(client, current["refresh_token"])).status_code == 200
    old = await client.post(f"{P}/auth/login",
                            json={"email": "alice@example.com", "password": PASSWORD})
    assert code_of(old) == (401, "invalid_credentials")
    await login(client, password=new_password)
    (event,) = await audit_events(ctx, "password.changed")
    assert event.user_id == alice.id


@pytest.mark.asyncio
async def test_wrong_current_password_is_422_and_counts_as_a_failed_login(
    make_app: Callable[..., Any]
) -> None:
    """A wrong current_password is 422 validation_failed and feeds the login throttle."""
    app = make_app(LOGIN_MAX_FAILURES=1)
    await create_user(app.state.ctx)
    async with asgi_client(app) as client:
        tokens = await login(client)
        r = await client.post(f"{P}/users/profile/password", headers=bearer(tokens), json={
            "current_password": "not-my-password-1", "new_password": "a-brand-new-passphrase-42"})
        assert code_of(r) == (422, "validation_failed")
        assert r.json()["errors"][0]["loc"] == ["body", "current_password"]
        assert "current_password" in r.json()["detail"]
        # One failure was the limit: even the right password must now wait.
        r = await client.post(f"{P}/auth/login",
                              json={"email": "alice@example.com", "password": PASSWORD})
        assert code_of(r) == (429, "login_throttled")
        assert int(r.headers["retry-after"]) >= 1


# -- role changes -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_role_change_expires_old_tokens_and_refresh_brings_new_roles(
    client: httpx.AsyncClient, alice: Any, admin: Any
) -> None:
    """After a role change, older access tokens answer token_expired within 1 s and a refresh
    carries the new roles.
    """
    tokens = await login(client)
    root = await login(client, "root@example.com")
    r = await client.patch(f"{P}/admin/users/{alice.id}", json={"roles": ["support"]},
                           headers=bearer(root))
    assert (r.status_code, r.json()["roles"]) == (200, ["support"])
    deadline = time.monotonic() + 1.0
    while await status_with(client, tokens) != (401, "token_expired"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    fresh = (await refresh(client, tokens["refresh_token"])).json()
    assert fresh["user"]["roles"] == ["support"]
    body = (await client.get(f"{P}/auth/validate", headers=bearer(fresh))).json()
    assert (body["roles"], body["permissions"]) == (["support"], ["audit:read", "users:read"])
    assert (await client.get(f"{P}/admin/users", headers=bearer(fresh))).status_code == 200
    # The session was never ended: only the old token is stale.
    assert fresh["session_id"] == tokens["session_id"]


# -- API keys on user routes ----------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/auth/logout"), ("POST", "/auth/logout-all"), ("GET", "/auth/sessions"),
    ("DELETE", "/auth/sessions/x"), ("GET", "/auth/validate"), ("GET", "/users/profile"),
    ("PATCH", "/users/profile"), ("POST", "/users/profile/password"),
])
async def test_api_key_on_a_user_session_route_is_403(
    client: httpx.AsyncClient, admin: Any, method: str, path: str
) -> None:
    """An API key (even with every scope) is authenticated but forbidden on routes that need a user
    session.
    """
    root = await login(client, "root@example.com")
    created = await client.post(f"{P}/admin/api-keys", headers=bearer(root),
                                json={"name": "all", "scopes": sorted(ALL_PERMISSIONS)})
    key = created.json()["key"]
    body = ({"name": "x"} if path == "/users/profile" else
            {"current_password": PASSWORD, "new_password": "another-passphrase-77"}
            if path.endswith("password") else None)
    for headers in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
        r = await client.request(method, f"{P}{path}", headers=headers, json=body)
        assert code_of(r) == (403, "forbidden")
    assert await status_with(client, root) == (200, "")


# -- unversioned routes ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_unversioned_routes_answer_with_deprecation_headers(
    client: httpx.AsyncClient, alice: Any, admin: Any
) -> None:
    """Every /api/v1 route is also served at /api with Deprecation and a successor Link."""
    legacy = await client.post("/api/auth/login",
                               json={"email": "alice@example.com", "password": PASSWORD})
    assert legacy.status_code == 200
    tokens = legacy.json()
    root = await login(client, "root@example.com")
    calls = [
        ("POST", "/auth/login", None, {"email": "alice@example.com", "password": PASSWORD}, 200),
        ("POST", "/auth/refresh", None, {"refresh_token": tokens["refresh_token"]}, 200),
        ("GET", "/auth/validate", bearer(tokens), None, 200),
        ("GET", "/auth/sessions", bearer(tokens), None, 200),
        ("GET", "/users/profile", bearer(tokens), None, 200),
        ("GET", f"/admin/users/{alice.id}", bearer(root), None, 200),
        ("GET", "/admin/audit", bearer(tokens), None, 403),
        ("GET", "/auth/validate", None, None, 401),
        ("POST", "/auth/logout", bearer(tokens), None, 204),
    ]
    for method, path, headers, body, status in calls:
        r = await client.request(method, f"/api{path}", headers=headers, json=body)
        assert r.status_code == status, (path, r.text)
        assert r.headers["deprecation"].startswith("@"), path
        assert r.headers["link"] == f'</api/v1{path}>; rel="successor-version"'
    current = await client.get(f"{P}/users/profile", headers=bearer(root))
    assert ("deprecation" in current.headers, "link" in current.headers) == (False, False)


# -- metrics ---------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_refresh_and_revocation_metrics_count_grace_reuse_and_logout(
    make_app: Callable[..., Any]
) -> None:
    """Refresh results (success, grace, reused) and revoked sessions by reason show in /metrics."""
    app = make_app()
    ctx: Context = app.state.ctx
    await create_user(ctx)
    await create_user(ctx, "root@example.com", ["admin"], name="Root")
    async with asgi_client(app) as client:
        root = await login(client, "root@example.com")

        async def read() -> str:
            r = await client.get("/metrics", headers=bearer(root))
            assert r.status_code == 200
            return r.text

        before = await read()
        tokens = await login(client)
        await refresh(client, tokens["refresh_token"])
        await refresh(client, tokens["refresh_token"])  # grace
        await refresh(client, tokens["refresh_token"])  # grace
        other = await login(client)
        await client.post(f"{P}/auth/logout", headers=bearer(other))
        async with ctx.db.begin() as db:  # the grace window ends
            await db.execute(update(RefreshToken).where(RefreshToken.superseded_at.is_not(None))
                             .values(superseded_at=datetime.now(UTC) - timedelta(seconds=61)))
        assert code_of(await refresh(client, tokens["refresh_token"])) == (401, "refresh_reused")
        after = await read()

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert [delta("gatehouse_auth_refresh_total", result=r)
            for r in ("success", "grace", "reused")] == [1.0, 2.0, 1.0]
    assert [delta("gatehouse_sessions_revoked_total", reason=r)
            for r in ("logout", "reuse", "admin")] == [1.0, 1.0, 0.0]
    assert delta("gatehouse_auth_logins_total", result="success") == 2.0


@pytest.mark.asyncio
async def test_revoked_sessions_metric_labels_each_reason(
    ctx: Context, client: httpx.AsyncClient, alice: Any, admin: Any
) -> None:
    """logout_all, password_change, admin revoke and disable each count under their own reason."""
    root = await login(client, "root@example.com")
    before = (await client.get("/metrics", headers=bearer(root))).text
    first = [await login(client) for _ in range(2)]
    await client.post(f"{P}/auth/logout-all", headers=bearer(first[0]))  # 2 x logout_all
    current, _ = await login(client), await login(client)
    await client.post(f"{P}/users/profile/password", headers=bearer(current), json={
        "current_password": PASSWORD, "new_password": "a-brand-new-passphrase-42"})  # 1
    await client.post(f"{P}/admin/users/{alice.id}/revoke-sessions", headers=bearer(root))  # 1
    await login(client, password="a-brand-new-passphrase-42")
    await client.patch(f"{P}/admin/users/{alice.id}", headers=bearer(root),
                       json={"disabled": True})  # 1
    after = (await client.get("/metrics", headers=bearer(root))).text
    reasons = ("logout_all", "password_change", "admin", "disabled", "logout", "reuse")
    deltas = [metric(after, "gatehouse_sessions_revoked_total", reason=r)
              - metric(before, "gatehouse_sessions_revoked_total", reason=r) for r in reasons]
    assert dict(zip(reasons, deltas, strict=True)) == {
        "logout_all": 2.0, "password_change": 1.0, "admin": 1.0, "disabled": 1.0,
        "logout": 0.0, "reuse": 0.0}


@pytest.mark.asyncio
async def test_refresh_token_is_stored_only_as_a_hash(ctx: Context, client: httpx.AsyncClient,
                                                      alice: Any) -> None:
    """The database never holds a refresh secret, only keyed hashes of it."""
    tokens = await login(client)
    rotated = (await refresh(client, tokens["refresh_token"])).json()
    secrets_ = [t["refresh_token"].split(".")[1] for t in (tokens, rotated)]
    async with ctx.db() as db:
        rows = (await db.execute(select(RefreshToken.token_hash, RefreshToken.session_id))).all()
        sessions = (await db.execute(select(Session))).scalars().all()
    dump = repr([tuple(r) for r in rows]) + repr([vars(s) for s in sessions])
    assert len(rows) == 2
    assert all(re.fullmatch(r"[0-9a-f]{64}", r.token_hash) for r in rows)
    assert [secret in dump for secret in secrets_] == [False, False]
