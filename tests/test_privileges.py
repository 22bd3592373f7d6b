"""No one grants more than they hold (API.md §4, 2026-12-02): written as the escalations an
operator, a support user or an API key could make before, each refused with nothing changed; the
last enabled admin; API keys capped by their creator's current permissions; and the audit of key
actions.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
import pytest_asyncio

from gatehouse.audit.service import CLI
from gatehouse.auth.rbac import ALL_PERMISSIONS
from gatehouse.context import Context
from tests.conftest import PASSWORD, bearer, create_user, login, run_cli

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)

P = "/api/v1"
EVERY_SCOPE = sorted(ALL_PERMISSIONS)


def code_of(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, (r.json().get("code", "") if r.status_code >= 400 else "")


async def user_as_admin_sees(client: httpx.AsyncClient, root: dict[str, Any], user_id: str
                             ) -> dict[str, Any]:
    r = await client.get(f"{P}/admin/users/{user_id}", headers=bearer(root))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def audit_types(client: httpx.AsyncClient, root: dict[str, Any]) -> list[str]:
    r = await client.get(f"{P}/admin/audit", params={"limit": 200}, headers=bearer(root))
    assert r.status_code == 200, r.text
    return [e["type"] for e in r.json()["items"]]


async def new_key(client: httpx.AsyncClient, headers: dict[str, str], scopes: list[str]) -> str:
    r = await client.post(f"{P}/admin/api-keys", headers=headers,
                          json={"name": "integration", "scopes": scopes})
    assert r.status_code == 201, r.text
    key: str = r.json()["key"]
    return key


async def until(predicate: Any, seconds: float = 1.5) -> None:
    """Polls an async predicate until true (the contract allows about a second)."""
    deadline = time.monotonic() + seconds
    while not await predicate():
        assert time.monotonic() < deadline, "not effective within the allowed time"
        await asyncio.sleep(0.05)


@pytest_asyncio.fixture
async def root(client: httpx.AsyncClient, admin: Any) -> dict[str, Any]:
    return await login(client, "root@example.com")


@pytest_asyncio.fixture
async def operator(ctx: Context) -> Any:
    return await create_user(ctx, "op@example.com", ["operator"], name="Op")


@pytest_asyncio.fixture
async def op(client: httpx.AsyncClient, operator: Any) -> dict[str, Any]:
    return await login(client, "op@example.com")


# -- operators and support ------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("roles", [["admin"], ["operator", "admin"]])
async def test_operator_cannot_make_itself_admin(
    client: httpx.AsyncClient, root: dict[str, Any], operator: Any, op: dict[str, Any],
    roles: list[str],
) -> None:
    """An operator PATCHing its own roles to include admin gets 403 forbidden; its roles and token
    are unchanged and nothing is audited."""
    r = await client.patch(f"{P}/admin/users/{operator.id}", headers=bearer(op),
                           json={"roles": roles, "name": "Escalated"})
    assert code_of(r) == (403, "forbidden")
    seen = await user_as_admin_sees(client, root, operator.id)
    assert (seen["roles"], seen["name"]) == (["operator"], "Op")
    assert (await client.get(f"{P}/auth/validate", headers=bearer(op))).status_code == 200
    assert "user.role_changed" not in await audit_types(client, root)


@pytest.mark.asyncio
async def test_operator_cannot_create_an_admin(
    client: httpx.AsyncClient, root: dict[str, Any], op: dict[str, Any]
) -> None:
    """POST /admin/users with roles admin by an operator is 403 forbidden and no account exists."""
    r = await client.post(f"{P}/admin/users", headers=bearer(op), json={
        "email": "mallory@example.com", "name": "M", "password": PASSWORD, "roles": ["admin"]})
    assert code_of(r) == (403, "forbidden")
    r = await client.get(f"{P}/admin/users", params={"q": "mallory"}, headers=bearer(root))
    assert r.json()["items"] == []
    r = await client.post(f"{P}/auth/login",
                          json={"email": "mallory@example.com", "password": PASSWORD})
    assert code_of(r) == (401, "invalid_credentials")


@pytest.mark.asyncio
@pytest.mark.parametrize(("method", "suffix", "body"), [
    ("PATCH", "", {"disabled": True}),
    ("PATCH", "", {"roles": ["user"]}),
    ("PATCH", "", {"name": "Pwned"}),
    ("DELETE", "", None),
    ("POST", "/unlock", None),
    ("POST", "/revoke-sessions", None),
])
async def test_operator_cannot_touch_an_admin(
    client: httpx.AsyncClient, root: dict[str, Any], admin: Any, op: dict[str, Any],
    method: str, suffix: str, body: dict[str, Any] | None,
) -> None:
    """An operator disabling, demoting, renaming, deleting, unlocking or revoking the sessions of
    an admin gets 403 forbidden: the admin is unchanged, keeps its session and still logs in."""
    before = await audit_types(client, root)
    r = await client.request(method, f"{P}/admin/users/{admin.id}{suffix}", headers=bearer(op),
                             json=body)
    assert code_of(r) == (403, "forbidden")
    seen = await user_as_admin_sees(client, root, admin.id)
    assert (seen["roles"], seen["disabled"], seen["name"]) == (["admin"], False, "Root")
    assert (await client.get(f"{P}/auth/validate", headers=bearer(root))).status_code == 200
    await login(client, "root@example.com")
    assert [t for t in await audit_types(client, root) if t != "login.success"] == [
        t for t in before if t != "login.success"]


@pytest.mark.asyncio
async def test_operator_still_manages_users_it_holds_all_permissions_of(
    client: httpx.AsyncClient, ctx: Context, alice: Any, op: dict[str, Any]
) -> None:
    """The rule does not over-reach: an operator creates an operator, promotes a user to support,
    and disables and deletes another operator."""
    r = await client.post(f"{P}/admin/users", headers=bearer(op), json={
        "email": "op2@example.com", "name": "Op2", "password": PASSWORD, "roles": ["operator"]})
    assert r.status_code == 201, r.text
    other_id = r.json()["id"]
    r = await client.patch(f"{P}/admin/users/{alice.id}", headers=bearer(op),
                           json={"roles": ["support", "user"]})
    assert (r.status_code, r.json()["roles"]) == (200, ["support", "user"])
    r = await client.patch(f"{P}/admin/users/{other_id}", headers=bearer(op),
                           json={"disabled": True})
    assert (r.status_code, r.json()["disabled"]) == (200, True)
    r = await client.delete(f"{P}/admin/users/{other_id}", headers=bearer(op))
    assert r.status_code == 204


@pytest.mark.asyncio
async def test_support_cannot_write_at_all(
    client: httpx.AsyncClient, ctx: Context, root: dict[str, Any], alice: Any
) -> None:
    """A support user gets 403 forbidden on every write, its own roles included, and nothing
    changes."""
    sup = await create_user(ctx, "sup@example.com", ["support"], name="Sup")
    tokens = await login(client, "sup@example.com")
    before = await audit_types(client, root)
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", "/admin/users",
         {"email": "x@example.com", "name": "X", "password": PASSWORD, "roles": ["user"]}),
        ("PATCH", f"/admin/users/{sup.id}", {"roles": ["admin"]}),
        ("PATCH", f"/admin/users/{alice.id}", {"name": "x"}),
        ("DELETE", f"/admin/users/{alice.id}", None),
        ("POST", f"/admin/users/{alice.id}/unlock", None),
        ("POST", f"/admin/users/{alice.id}/revoke-sessions", None),
        ("POST", "/admin/api-keys", {"name": "k", "scopes": []}),
    ]
    for method, path, body in calls:
        r = await client.request(method, f"{P}{path}", headers=bearer(tokens), json=body)
        assert code_of(r) == (403, "forbidden"), (method, path)
    assert (await user_as_admin_sees(client, root, sup.id))["roles"] == ["support"]
    assert (await user_as_admin_sees(client, root, alice.id))["name"] == "Alice"
    assert await audit_types(client, root) == before


# -- API keys -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_users_write_key_cannot_make_or_touch_admins(
    client: httpx.AsyncClient, root: dict[str, Any], admin: Any, alice: Any
) -> None:
    """A key with users:write (and users:read) cannot create an admin, promote anyone to admin or
    disable an admin (403 forbidden, nothing changed), but still manages plain users."""
    key = {"X-API-Key": await new_key(client, bearer(root), ["users:read", "users:write"])}
    r = await client.post(f"{P}/admin/users", headers=key, json={
        "email": "mallory@example.com", "name": "M", "password": PASSWORD, "roles": ["admin"]})
    assert code_of(r) == (403, "forbidden")
    r = await client.patch(f"{P}/admin/users/{alice.id}", headers=key, json={"roles": ["admin"]})
    assert code_of(r) == (403, "forbidden")
    r = await client.patch(f"{P}/admin/users/{admin.id}", headers=key, json={"disabled": True})
    assert code_of(r) == (403, "forbidden")
    assert (await user_as_admin_sees(client, root, alice.id))["roles"] == ["user"]
    assert (await user_as_admin_sees(client, root, admin.id))["disabled"] is False
    r = await client.patch(f"{P}/admin/users/{alice.id}", headers=key, json={"name": "Alice K."})
    assert (r.status_code, r.json()["name"]) == (200, "Alice K.")


@pytest.mark.asyncio
async def test_a_key_of_a_creator_demoted_to_operator_cannot_make_admins(
    client: httpx.AsyncClient, ctx: Context, root: dict[str, Any], alice: Any
) -> None:
    """An all-scopes key made by an admin who is now an operator acts as an operator: it cannot
    make admins or manage keys, and still does what operators may."""
    creator = await create_user(ctx, "creator@example.com", ["admin"], name="Creator")
    key = {"Authorization": "Bearer " + await new_key(
        client, bearer(await login(client, "creator@example.com")), EVERY_SCOPE)}
    r = await client.patch(f"{P}/admin/users/{creator.id}", headers=bearer(root),
                           json={"roles": ["operator"]})
    assert r.status_code == 200

    async def demoted() -> bool:
        r = await client.patch(f"{P}/admin/users/{alice.id}", headers=key,
                               json={"roles": ["admin"]})
        return code_of(r) == (403, "forbidden")

    await until(demoted)
    r = await client.patch(f"{P}/admin/users/{creator.id}", headers=key, json={"roles": ["admin"]})
    assert code_of(r) == (403, "forbidden")
    assert code_of(await client.get(f"{P}/admin/api-keys", headers=key)) == (403, "forbidden")
    assert (await user_as_admin_sees(client, root, creator.id))["roles"] == ["operator"]
    r = await client.patch(f"{P}/admin/users/{alice.id}", headers=key, json={"roles": ["support"]})
    assert r.status_code == 200


@pytest.mark.asyncio
async def test_a_key_cannot_be_created_with_scopes_beyond_its_creator(
    client: httpx.AsyncClient, ctx: Context, root: dict[str, Any]
) -> None:
    """A key may create keys only within what it and its creator hold now: beyond is 403 forbidden;
    and a key-made key acts for the same user, so it dies with that user's account."""
    creator = await create_user(ctx, "creator@example.com", ["admin"], name="Creator")
    manager = {"X-API-Key": await new_key(
        client, bearer(await login(client, "creator@example.com")),
        ["api_keys:manage", "users:read"])}
    r = await client.post(f"{P}/admin/api-keys", headers=manager,
                          json={"name": "x", "scopes": ["users:write"]})
    assert code_of(r) == (403, "forbidden")
    child = {"X-API-Key": await new_key(client, manager, ["users:read"])}
    assert (await client.get(f"{P}/admin/users", headers=child)).status_code == 200
    r = await client.patch(f"{P}/admin/users/{creator.id}", headers=bearer(root),
                           json={"disabled": True})
    assert r.status_code == 200
    for key in (manager, child):
        assert code_of(await client.get(f"{P}/admin/users", headers=key)) == (
            401, "api_key_invalid")


@pytest.mark.asyncio
async def test_a_key_loses_a_permission_its_creator_lost(
    client: httpx.AsyncClient, ctx: Context, root: dict[str, Any]
) -> None:
    """A users:read + audit:read key whose admin creator becomes support keeps both; once the
    creator is a plain user, the key answers 403 forbidden within about a second."""
    creator = await create_user(ctx, "creator@example.com", ["admin"], name="Creator")
    key = {"X-API-Key": await new_key(client, bearer(await login(client, "creator@example.com")),
                                      ["users:read", "audit:read", "api_keys:manage"])}
    await client.patch(f"{P}/admin/users/{creator.id}", headers=bearer(root),
                       json={"roles": ["support"]})

    async def lost_manage() -> bool:
        return code_of(await client.get(f"{P}/admin/api-keys", headers=key)) == (403, "forbidden")

    await until(lost_manage)
    assert (await client.get(f"{P}/admin/users", headers=key)).status_code == 200
    assert (await client.get(f"{P}/admin/audit", headers=key)).status_code == 200
    await client.patch(f"{P}/admin/users/{creator.id}", headers=bearer(root),
                       json={"roles": ["user"]})

    async def lost_read() -> bool:
        return code_of(await client.get(f"{P}/admin/users", headers=key)) == (403, "forbidden")

    await until(lost_read)


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["disabled", "deleted"])
async def test_a_disabled_or_deleted_creators_key_is_api_key_invalid(
    client: httpx.AsyncClient, ctx: Context, root: dict[str, Any], how: str
) -> None:
    """Once its creator is disabled or deleted, a key answers 401 api_key_invalid."""
    creator = await create_user(ctx, "creator@example.com", ["admin"], name="Creator")
    key = {"X-API-Key": await new_key(client, bearer(await login(client, "creator@example.com")),
                                      ["users:read"])}
    assert (await client.get(f"{P}/admin/users", headers=key)).status_code == 200
    if how == "disabled":
        r = await client.patch(f"{P}/admin/users/{creator.id}", headers=bearer(root),
                               json={"disabled": True})
    else:
        r = await client.delete(f"{P}/admin/users/{creator.id}", headers=bearer(root))
    assert r.status_code in (200, 204)

    async def refused() -> bool:
        r = await client.get(f"{P}/admin/users", headers=key)
        return code_of(r) == (401, "api_key_invalid")

    await until(refused)


@pytest.mark.asyncio
async def test_a_key_with_no_recorded_creator_acts_with_its_own_scopes(
    client: httpx.AsyncClient, ctx: Context, alice: Any
) -> None:
    """A key with no creator (made by the server side, or by a key before creators were recorded)
    keeps its own scopes, still capped by them, and its audit rows have user_id null."""
    created = await ctx.api_keys.create(name="legacy", scopes=["users:read", "users:write"],
                                        expires_at=None, require_signature=False, actor=CLI)
    key = {"X-API-Key": created["key"]}
    assert (await client.get(f"{P}/admin/users", headers=key)).status_code == 200
    r = await client.patch(f"{P}/admin/users/{alice.id}", headers=key, json={"roles": ["admin"]})
    assert code_of(r) == (403, "forbidden")
    r = await client.patch(f"{P}/admin/users/{alice.id}", headers=key, json={"name": "A."})
    assert r.status_code == 200
    await create_user(ctx, "root@example.com", ["admin"], name="Root")
    r = await client.get(f"{P}/admin/audit", params={"type": "user.updated"},
                         headers=bearer(await login(client, "root@example.com")))
    (event,) = r.json()["items"]
    assert (event["user_id"], event["data"]["api_key_id"]) == (None, created["id"])


@pytest.mark.asyncio
async def test_audit_of_a_key_action_names_the_key_and_its_creator(
    client: httpx.AsyncClient, root: dict[str, Any], admin: Any, alice: Any
) -> None:
    """What a key does is audited with user_id = the key's creator and data.api_key_id = the key,
    for user changes and for the keys it makes alike."""
    r = await client.post(f"{P}/admin/api-keys", headers=bearer(root),
                          json={"name": "bot", "scopes": EVERY_SCOPE})
    key_id, key = r.json()["id"], {"X-API-Key": r.json()["key"]}
    r = await client.patch(f"{P}/admin/users/{alice.id}", headers=key, json={"disabled": True})
    assert r.status_code == 200
    r = await client.post(f"{P}/admin/api-keys", headers=key, json={"name": "b", "scopes": []})
    child_id = r.json()["id"]
    r = await client.get(f"{P}/admin/audit", params={"user_id": admin.id}, headers=bearer(root))
    by_type: dict[str, dict[str, Any]] = {}
    for event in r.json()["items"]:  # newest first: keep the newest of each type
        by_type.setdefault(event["type"], event)
    disabled = by_type["user.disabled"]
    assert (disabled["user_id"], disabled["data"]["api_key_id"],
            disabled["data"]["target_user_id"]) == (admin.id, key_id, alice.id)
    made = by_type["api_key.created"]  # the newest: made by the key
    assert (made["user_id"], made["data"]["api_key_id"], made["data"]["target_api_key_id"]) == (
        admin.id, key_id, child_id)
    r = await client.get(f"{P}/admin/audit", params={"type": "api_key.created"},
                         headers=bearer(root))
    by_token = r.json()["items"][-1]  # the oldest: made with the admin's own token
    assert by_token["data"]["target_api_key_id"] == key_id
    assert "api_key_id" not in by_token["data"]


# -- the last admin --------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(("method", "body"), [
    ("PATCH", {"roles": ["operator"]}),
    ("PATCH", {"roles": []}),
    ("PATCH", {"disabled": True}),
    ("DELETE", None),
])
async def test_the_last_admin_cannot_demote_disable_or_delete_itself(
    client: httpx.AsyncClient, root: dict[str, Any], admin: Any, method: str,
    body: dict[str, Any] | None,
) -> None:
    """The only enabled admin demoting, disabling or deleting itself gets 409 conflict and stays an
    enabled admin with a working session."""
    r = await client.request(method, f"{P}/admin/users/{admin.id}", headers=bearer(root), json=body)
    assert code_of(r) == (409, "conflict")
    seen = await user_as_admin_sees(client, root, admin.id)
    assert (seen["roles"], seen["disabled"]) == (["admin"], False)
    await login(client, "root@example.com")


@pytest.mark.asyncio
async def test_with_two_admins_one_may_demote_the_other_then_is_the_last(
    client: httpx.AsyncClient, ctx: Context, root: dict[str, Any], admin: Any
) -> None:
    """With two enabled admins one demotes the other; a disabled admin does not count, so the one
    left then cannot demote itself (409)."""
    second = await create_user(ctx, "second@example.com", ["admin"], name="Second")
    r = await client.patch(f"{P}/admin/users/{second.id}", headers=bearer(root),
                           json={"roles": ["operator"]})
    assert (r.status_code, r.json()["roles"]) == (200, ["operator"])
    r = await client.patch(f"{P}/admin/users/{second.id}", headers=bearer(root),
                           json={"roles": ["admin"], "disabled": True})
    assert (r.status_code, r.json()["roles"], r.json()["disabled"]) == (200, ["admin"], True)
    r = await client.patch(f"{P}/admin/users/{admin.id}", headers=bearer(root),
                           json={"roles": ["user"]})
    assert code_of(r) == (409, "conflict")
    r = await client.delete(f"{P}/admin/users/{second.id}", headers=bearer(root))
    assert r.status_code == 204  # deleting a disabled admin leaves the enabled one


@pytest.mark.asyncio
async def test_two_admins_demoting_each_other_at_once_leave_one_admin(
    client: httpx.AsyncClient, ctx: Context, root: dict[str, Any], admin: Any
) -> None:
    """Two admins demoting each other concurrently: one succeeds, the other gets 409, every time."""
    await user_as_admin_sees(client, root, admin.id)  # the app is up before the race starts
    for round_ in range(5):
        other = await create_user(ctx, f"other{round_}@example.com", ["admin"], name="Other")
        theirs = await login(client, f"other{round_}@example.com")
        mine, yours = await asyncio.gather(
            client.patch(f"{P}/admin/users/{other.id}", headers=bearer(root),
                         json={"roles": ["user"]}),
            client.patch(f"{P}/admin/users/{admin.id}", headers=bearer(theirs),
                         json={"roles": ["user"]}),
        )
        assert sorted([code_of(mine), code_of(yours)]) == [(200, ""), (409, "conflict")]
        if code_of(yours) == (200, ""):  # the other admin won: root is made admin again
            await ctx.accounts.set_roles(admin.id, ["admin"], CLI)
            root = await login(client, "root@example.com")
        await ctx.accounts.delete(other.id, CLI)


@pytest.mark.asyncio
async def test_the_cli_may_demote_and_disable_the_last_admin(
    database_url: str, ctx: Context, admin: Any
) -> None:
    """The CLI, a shell on the server, may do everything: it demotes and disables the only admin
    (and can always make one again)."""
    env = {"DATABASE_URL": database_url}
    result = run_cli("users", "set-role", "root@example.com", "user", env=env)
    assert result.returncode == 0, result.stderr
    result = run_cli("users", "disable", "root@example.com", env=env)
    assert result.returncode == 0, result.stderr
    seen = await ctx.accounts.get(admin.id)
    assert (seen.roles, seen.disabled) == (["user"], True)
    result = run_cli("users", "set-role", "root@example.com", "admin", env=env)
    assert result.returncode == 0, result.stderr
