"""Admin API (API.md §4): users CRUD behind RBAC, disable/unlock/revoke/delete, and the audit log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from gatehouse.auth.rbac import ROLE_PERMISSIONS
from gatehouse.context import Context
from gatehouse.store.db.models import Session
from tests.conftest import PASSWORD, Server, asgi_client, bearer, create_user, login

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)

P = "/api/v1"
USER_KEYS = {"id", "email", "name", "roles", "disabled", "created_at", "email_verified",
             "mfa_enabled"}
AUDIT_KEYS = {"id", "at", "type", "user_id", "ip", "request_id", "data"}


def fullwidth(text: str) -> str:
    """The fullwidth look-alike of ASCII text, which NFKC folds back to the original."""
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


def code_of(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, (r.json().get("code", "") if r.status_code >= 400 else "")


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(f"{P}/auth/refresh", json={"refresh_token": token})


async def validate(client: httpx.AsyncClient, tokens: dict[str, Any]) -> tuple[int, str]:
    return code_of(await client.get(f"{P}/auth/validate", headers=bearer(tokens)))


async def audit(
    client: httpx.AsyncClient, tokens: dict[str, Any], **params: Any
) -> list[dict[str, Any]]:
    r = await client.get(f"{P}/admin/audit", params=params, headers=bearer(tokens))
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


@pytest_asyncio.fixture
async def root(client: httpx.AsyncClient, admin: Any) -> dict[str, Any]:
    return await login(client, "root@example.com")


# -- RBAC --------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("role", ["admin", "operator", "support", "user"])
async def test_each_role_gets_exactly_its_permissions(
    ctx: Context, client: httpx.AsyncClient, alice: Any, role: str
) -> None:
    """Every admin route answers 403 forbidden (never 401) to a role without its permission, and
    works with it.
    """
    await create_user(ctx, "caller@example.com", [role], name="Caller")
    caller = await login(client, "caller@example.com")
    granted = ROLE_PERMISSIONS[role]
    uid = alice.id
    calls: list[tuple[str, str, str, dict[str, Any] | None, int]] = [
        ("users:read", "GET", "/admin/users", None, 200),
        ("users:read", "GET", f"/admin/users/{uid}", None, 200),
        ("users:write", "POST", "/admin/users",
         {"email": "made@example.com", "name": "M", "password": PASSWORD, "roles": ["user"]}, 201),
        ("users:write", "PATCH", f"/admin/users/{uid}", {"name": "Renamed"}, 200),
        ("users:write", "POST", f"/admin/users/{uid}/unlock", None, 204),
        ("sessions:revoke", "POST", f"/admin/users/{uid}/revoke-sessions", None, 204),
        ("audit:read", "GET", "/admin/audit", None, 200),
        ("api_keys:manage", "GET", "/admin/api-keys", None, 200),
        ("api_keys:manage", "POST", "/admin/api-keys", {"name": "k", "scopes": []}, 201),
        ("ops:read", "GET", "/metrics", None, 200),
        ("users:write", "DELETE", f"/admin/users/{uid}", None, 204),
    ]
    outcome = []
    expected = []
    for permission, method, path, body, ok_status in calls:
        url = path if path == "/metrics" else f"{P}{path}"
        r = await client.request(method, url, headers=bearer(caller), json=body)
        outcome.append((method, path, code_of(r)))
        expected.append((method, path,
                         (ok_status, "") if permission in granted else (403, "forbidden")))
    assert outcome == expected
    # A 403 is never a reason to log out: the caller's session is intact.
    assert await validate(client, caller) == (200, "")


@pytest.mark.asyncio
async def test_api_key_scopes_are_its_permissions(client: httpx.AsyncClient, root: dict[str, Any],
                                                  alice: Any) -> None:
    """An API key may do what its scopes allow and gets 403 forbidden for the rest."""
    r = await client.post(f"{P}/admin/api-keys", headers=bearer(root),
                          json={"name": "reader", "scopes": ["users:read"]})
    key = {"X-API-Key": r.json()["key"]}
    assert (await client.get(f"{P}/admin/users", headers=key)).status_code == 200
    r = await client.patch(f"{P}/admin/users/{alice.id}", headers=key, json={"name": "x"})
    assert code_of(r) == (403, "forbidden")
    assert code_of(await client.get(f"{P}/admin/audit", headers=key)) == (403, "forbidden")


@pytest.mark.asyncio
async def test_admin_routes_without_credentials_are_401(client: httpx.AsyncClient) -> None:
    """Without any credentials, admin routes ask for authentication (token_missing)."""
    assert code_of(await client.get(f"{P}/admin/users")) == (401, "token_missing")


# -- users CRUD --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_admin_creates_a_user_with_roles(client: httpx.AsyncClient, root: dict[str, Any],
                                               admin: Any) -> None:
    """POST /admin/users answers 201 User (email normalised), audited as user.created by the admin.
    """
    r = await client.post(f"{P}/admin/users", headers=bearer(root), json={
        "email": fullwidth("Ops") + "@Example.com", "name": "Ops", "password": PASSWORD,
        "roles": ["operator"]})
    assert r.status_code == 201
    user = r.json()
    assert set(user) == USER_KEYS
    assert (user["email"], user["name"], user["roles"], user["disabled"]) == (
        "ops@example.com", "Ops", ["operator"], False)
    assert "password" not in r.text
    dup = await client.post(f"{P}/admin/users", headers=bearer(root), json={
        "email": "ops@example.com", "name": "Ops", "password": PASSWORD, "roles": ["user"]})
    assert code_of(dup) == (409, "conflict")
    bad_role = await client.post(f"{P}/admin/users", headers=bearer(root), json={
        "email": "x@example.com", "name": "X", "password": PASSWORD, "roles": ["superuser"]})
    assert code_of(bad_role) == (422, "validation_failed")
    (event,) = await audit(client, root, type="user.created", user_id=admin.id)
    assert event["data"]["target_user_id"] == user["id"]
    assert "password" not in str(event["data"]) and PASSWORD not in str(event["data"])
    await login(client, "ops@example.com")


@pytest.mark.asyncio
async def test_get_user_answers_the_user_or_404(client: httpx.AsyncClient, root: dict[str, Any],
                                                alice: Any) -> None:
    """GET /admin/users/{id} is the User; an unknown id is not_found."""
    r = await client.get(f"{P}/admin/users/{alice.id}", headers=bearer(root))
    assert (r.status_code, r.json()["email"], set(r.json())) == (
        200, "alice@example.com", USER_KEYS)
    r = await client.get(f"{P}/admin/users/00000000-0000-0000-0000-000000000000",
                         headers=bearer(root))
    assert code_of(r) == (404, "not_found")


@pytest.mark.asyncio
async def test_user_list_filters_by_q_and_paginates(ctx: Context, client: httpx.AsyncClient,
                                                    root: dict[str, Any]) -> None:
    """`q` is a case-insensitive substring of email or name; pages chained by cursor cover everyone
    once.
    """
    for i in range(5):
        await create_user(ctx, f"member{i}@example.com", name=f"Team Member {i}")
    await create_user(ctx, "axb@example.com", name="Literal")
    await create_user(ctx, "other@elsewhere.org", name="MEMBER by name")

    async def emails(**params: Any) -> list[str]:
        r = await client.get(f"{P}/admin/users", params=params, headers=bearer(root))
        assert r.status_code == 200, r.text
        return [u["email"] for u in r.json()["items"]]

    assert sorted(await emails(q="MEMBER")) == sorted(
        [f"member{i}@example.com" for i in range(5)] + ["other@elsewhere.org"])
    assert await emails(q="a_b") == []  # `_` is a character, not a wildcard
    assert await emails(q="100%") == []

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"{P}/admin/users", params=params, headers=bearer(root))).json()
        assert len(page["items"]) <= 3
        seen += [u["email"] for u in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert (pages, sorted(seen), len(seen)) == (3, sorted(set(seen)), 8)
    for limit in (0, 201):
        r = await client.get(f"{P}/admin/users", params={"limit": limit}, headers=bearer(root))
        assert code_of(r) == (422, "validation_failed")


@pytest.mark.asyncio
async def test_patch_user_changes_name_and_roles_with_audit(
    client: httpx.AsyncClient, root: dict[str, Any], admin: Any, alice: Any
) -> None:
    """PATCH changes name and roles; the audit names the admin as actor and alice as target."""
    r = await client.patch(f"{P}/admin/users/{alice.id}", headers=bearer(root),
                           json={"name": "Alice L.", "roles": ["support", "user"]})
    assert (r.status_code, r.json()["name"], r.json()["roles"]) == (200, "Alice L.",
                                                                     ["support", "user"])
    (changed,) = await audit(client, root, type="user.role_changed")
    assert (changed["user_id"], changed["data"]["target_user_id"], changed["data"]["roles"],
            changed["data"]["old_roles"]) == (admin.id, alice.id, ["support", "user"], ["user"])
    (updated,) = await audit(client, root, type="user.updated")
    assert (updated["user_id"], updated["data"]["target_user_id"]) == (admin.id, alice.id)
    r = await client.patch(f"{P}/admin/users/{alice.id}", headers=bearer(root),
                           json={"email": "new@example.com"})
    assert code_of(r) == (422, "validation_failed")


@pytest.mark.asyncio
async def test_disable_revokes_sessions_and_blocks_login(
    client: httpx.AsyncClient, root: dict[str, Any], admin: Any, alice: Any
) -> None:
    """Disabling ends every session (access and refresh) and login then answers account_disabled."""
    tokens = await login(client)
    r = await client.patch(f"{P}/admin/users/{alice.id}", headers=bearer(root),
                           json={"disabled": True})
    assert (r.status_code, r.json()["disabled"]) == (200, True)
    assert await validate(client, tokens) == (401, "session_revoked")
    assert code_of(await refresh(client, tokens["refresh_token"])) == (401, "session_revoked")
    r = await client.post(f"{P}/auth/login", json={"email": "alice@example.com",
                                                   "password": PASSWORD})
    assert code_of(r) == (403, "account_disabled")
    (event,) = await audit(client, root, type="user.disabled")
    assert (event["user_id"], event["data"]["target_user_id"]) == (admin.id, alice.id)
    # Re-enabling lets the user log in again (old sessions stay ended).
    await client.patch(f"{P}/admin/users/{alice.id}", headers=bearer(root),
                       json={"disabled": False})
    await login(client)
    assert code_of(await refresh(client, tokens["refresh_token"])) == (401, "session_revoked")


@pytest.mark.asyncio
async def test_unlock_clears_login_throttling(make_app: Callable[..., Any]) -> None:
    """After too many failures the account is throttled; unlock lets the right password in at once.
    """
    app = make_app(LOGIN_MAX_FAILURES=2)
    ctx: Context = app.state.ctx
    alice = await create_user(ctx)
    admin = await create_user(ctx, "root@example.com", ["admin"], name="Root")
    async with asgi_client(app) as client:
        root = await login(client, "root@example.com")
        for _ in range(2):
            await client.post(f"{P}/auth/login",
                              json={"email": "alice@example.com", "password": "Wrong-password-1"})
        r = await client.post(f"{P}/auth/login",
                              json={"email": "alice@example.com", "password": PASSWORD})
        assert code_of(r) == (429, "login_throttled")
        r = await client.post(f"{P}/admin/users/{alice.id}/unlock", headers=bearer(root))
        assert r.status_code == 204
        await login(client)
        (event,) = await audit(client, root, type="user.unlocked")
        assert (event["user_id"], event["data"]["target_user_id"]) == (admin.id, alice.id)


@pytest.mark.asyncio
async def test_revoke_sessions_ends_every_session_of_the_user(
    client: httpx.AsyncClient, root: dict[str, Any], admin: Any, alice: Any
) -> None:
    """POST revoke-sessions is 204 and all the user's tokens answer session_revoked; the admin's do
    not.
    """
    sessions = [await login(client) for _ in range(2)]
    r = await client.post(f"{P}/admin/users/{alice.id}/revoke-sessions", headers=bearer(root))
    assert r.status_code == 204
    for tokens in sessions:
        assert await validate(client, tokens) == (401, "session_revoked")
        assert code_of(await refresh(client, tokens["refresh_token"])) == (401, "session_revoked")
    assert await validate(client, root) == (200, "")
    (event,) = await audit(client, root, type="sessions.revoked_all")
    assert (event["user_id"], event["data"]["target_user_id"]) == (admin.id, alice.id)
    await login(client)  # the account itself is fine
    r = await client.post(f"{P}/admin/users/00000000-0000-0000-0000-000000000000/revoke-sessions",
                          headers=bearer(root))
    assert code_of(r) == (404, "not_found")


@pytest.mark.asyncio
async def test_delete_user_revokes_sessions_and_removes_the_account(
    client: httpx.AsyncClient, root: dict[str, Any], admin: Any, alice: Any
) -> None:
    """DELETE is 204; the user's access and refresh tokens answer session_revoked and the account is
    gone.
    """
    tokens = await login(client)
    r = await client.delete(f"{P}/admin/users/{alice.id}", headers=bearer(root))
    assert r.status_code == 204
    assert await validate(client, tokens) == (401, "session_revoked")
    assert code_of(await refresh(client, tokens["refresh_token"])) == (401, "session_revoked")
    r = await client.get(f"{P}/admin/users/{alice.id}", headers=bearer(root))
    assert code_of(r) == (404, "not_found")
    r = await client.post(f"{P}/auth/login", json={"email": "alice@example.com",
                                                   "password": PASSWORD})
    assert code_of(r) == (401, "invalid_credentials")
    events = await audit(client, root, type="sessions.revoked_all")
    assert [(e["user_id"], e["data"]["target_user_id"]) for e in events] == [(admin.id, alice.id)]
    r = await client.delete(f"{P}/admin/users/{alice.id}", headers=bearer(root))
    assert code_of(r) == (404, "not_found")


@pytest.mark.asyncio
async def test_a_deleted_users_tokens_stay_revoked_after_a_restart(
    make_server: Callable[..., Server], ctx: Context, admin: Any, alice: Any
) -> None:
    """After DELETE, a restarted server (in-process store, so nothing cached) still answers
    session_revoked for the deleted user's access and refresh tokens; the detached session keeps
    no IP or user agent, and the email can be used for a new account.
    """
    env = {"JWT_ISSUER": "https://auth.example.test"}  # both processes issue and accept alike
    first = make_server(**env)
    async with httpx.AsyncClient(base_url=first.url) as c:
        tokens = await login(c)
        admin_tokens = await login(c, "root@example.com")
        r = await c.delete(f"{P}/admin/users/{alice.id}", headers=bearer(admin_tokens))
        assert r.status_code == 204
    first.stop()
    second = make_server(**env)
    async with httpx.AsyncClient(base_url=second.url) as c:
        assert await validate(c, tokens) == (401, "session_revoked")
        assert code_of(await refresh(c, tokens["refresh_token"])) == (401, "session_revoked")
    async with ctx.db() as db:
        row = (await db.execute(select(Session.user_id, Session.ip, Session.user_agent,
                                       Session.revoked_at)
                                .where(Session.id == tokens["session_id"]))).one()
    assert row[:3] == (None, None, None) and row[3] is not None
    again = await create_user(ctx)
    assert again.id != alice.id


# -- audit ---------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_audit_lists_newest_first_with_filters_and_cursor(
    client: httpx.AsyncClient, root: dict[str, Any], admin: Any, alice: Any
) -> None:
    """The audit log is newest first, filters by type and actor, and pages by cursor without gaps.
    """
    tokens = await login(client)
    await client.post(f"{P}/auth/login", json={"email": "alice@example.com",
                                               "password": "Wrong-password-1"})
    await client.post(f"{P}/auth/logout",
                      headers={**bearer(tokens), "X-Request-ID": "req-logout-1"})
    everything = await audit(client, root, limit=200)
    assert all(set(e) == AUDIT_KEYS for e in everything)
    ids = [int(e["id"]) for e in everything]
    assert ids == sorted(ids, reverse=True)
    assert [e["at"] for e in everything] == sorted((e["at"] for e in everything), reverse=True)
    assert everything[0]["type"] == "logout"
    assert (everything[0]["user_id"], everything[0]["request_id"], everything[0]["ip"]) == (
        alice.id, "req-logout-1", "127.0.0.1")

    logins = await audit(client, root, type="login.success")
    assert [e["user_id"] for e in logins] == [alice.id, admin.id]
    failure = await audit(client, root, type="login.failure")
    assert [(e["user_id"], e["data"].get("target_user_id")) for e in failure] == [(None, alice.id)]
    assert {e["type"] for e in await audit(client, root, user_id=alice.id)} == {
        "login.success", "logout"}

    paged: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        r = await client.get(f"{P}/admin/audit", params=params, headers=bearer(root))
        paged += [e["id"] for e in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert paged == [e["id"] for e in everything]
    r = await client.get(f"{P}/admin/audit", params={"limit": 201}, headers=bearer(root))
    assert code_of(r) == (422, "validation_failed")


@pytest.mark.asyncio
async def test_audit_never_holds_secrets(client: httpx.AsyncClient, root: dict[str, Any],
                                         alice: Any) -> None:
    """Passwords, refresh tokens and access tokens never appear in audit data."""
    tokens = await login(client)
    await client.post(f"{P}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    await client.post(f"{P}/users/profile/password", headers=bearer(tokens), json={
        "current_password": PASSWORD, "new_password": "a-brand-new-passphrase-42"})
    text = str(await audit(client, root, limit=200))
    for secret in (PASSWORD, "a-brand-new-passphrase-42", tokens["refresh_token"].split(".")[1],
                   tokens["access_token"]):
        assert secret not in text
