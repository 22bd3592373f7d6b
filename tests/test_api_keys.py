"""API keys (API.md §4): creation, storage, scopes, expiry, revocation, transports and HMAC
signatures."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select, update

from gatehouse.auth.apikeys import sign
from gatehouse.context import Context
from gatehouse.store.db.models import ApiKey
from tests._abuse_helpers import create_api_key
from tests.conftest import bearer, login

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)

USERS = "/api/v1/admin/users"


@pytest_asyncio.fixture
async def root(client: httpx.AsyncClient, admin: Any) -> dict[str, str]:
    """Bearer headers of an admin user."""
    return bearer(await login(client, "root@example.com"))


def _key(value: str, transport: str = "bearer") -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"} if transport == "bearer" else {"X-API-Key": value}


def _signed(
    secret: str,
    method: str,
    target: str,
    body: bytes = b"",
    *,
    at: int | None = None,
    key: str,
) -> dict[str, str]:
    stamp = int(time.time()) if at is None else at
    return {**_key(key), "X-Signature": sign(secret, stamp, method, target, body)}


async def _listing(client: httpx.AsyncClient, root: dict[str, str]) -> httpx.Response:
    r = await client.get("/api/v1/admin/api-keys", headers=root)
    assert r.status_code == 200, r.text
    return r


# -- creation and storage ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_key_is_shown_once_and_listings_show_only_its_prefix(
    client: httpx.AsyncClient, root: dict[str, str]
) -> None:
    """Creation answers the gh_ key once (no-store); listings show the prefix and never the key or a
    secret."""
    r = await client.post(
        "/api/v1/admin/api-keys", json={"name": "ci", "scopes": ["users:read"]}, headers=root
    )
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    created = r.json()
    assert set(created) >= {
        "id",
        "name",
        "prefix",
        "scopes",
        "created_at",
        "expires_at",
        "require_signature",
        "key",
        "signing_secret",
    }
    assert created["key"].startswith("gh_")
    assert created["key"].startswith(created["prefix"]) and created["prefix"] != created["key"]
    assert (created["signing_secret"], created["require_signature"]) == (None, False)
    signed = await create_api_key(client, root, ["users:read"], require_signature=True)
    listing = await _listing(client, root)
    items = {item["id"]: item for item in listing.json()["items"]}
    assert items[created["id"]]["prefix"] == created["prefix"]
    assert all("key" not in item and "signing_secret" not in item for item in items.values())
    for secret in (created["key"], signed["key"], signed["signing_secret"]):
        assert secret not in listing.text


@pytest.mark.asyncio
async def test_database_row_holds_no_plaintext_key_or_signing_secret(
    client: httpx.AsyncClient, ctx: Context, root: dict[str, str]
) -> None:
    """At rest the key is only a hash and the signing secret only ciphertext."""
    created = await create_api_key(client, root, ["users:read"], require_signature=True)
    # gh_<12-character id>_<43-character secret>; the secret may itself contain "_".
    secret_part = created["key"].split("_", 2)[2]
    assert len(secret_part) == 43
    async with ctx.db() as db:
        row = (await db.scalars(select(ApiKey).where(ApiKey.id == created["id"]))).one()
    stored = " ".join(str(getattr(row, column.key)) for column in ApiKey.__table__.columns)
    for plaintext in (
        created["key"],
        secret_part,
        created["signing_secret"],
        created["signing_secret"].removeprefix("ghs_"),
    ):
        assert plaintext not in stored
    assert row.prefix == created["prefix"]


@pytest.mark.asyncio
async def test_unknown_scope_and_past_expiry_are_refused_at_creation(
    client: httpx.AsyncClient, root: dict[str, str]
) -> None:
    """Scopes must be permissions and expires_at must lie in the future (422 otherwise)."""
    r = await client.post(
        "/api/v1/admin/api-keys", json={"name": "x", "scopes": ["root:everything"]}, headers=root
    )
    assert (r.status_code, r.json()["code"]) == (422, "validation_failed")
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    r = await client.post(
        "/api/v1/admin/api-keys",
        json={"name": "x", "scopes": ["users:read"], "expires_at": past},
        headers=root,
    )
    assert (r.status_code, r.json()["code"]) == (422, "validation_failed")


@pytest.mark.asyncio
async def test_managing_keys_needs_api_keys_manage(client: httpx.AsyncClient, ctx: Context) -> None:
    """An operator (all but api_keys:manage) can neither list nor create keys."""
    from tests.conftest import create_user

    await create_user(ctx, "op@example.com", ["operator"], name="Op")
    op = bearer(await login(client, "op@example.com"))
    assert (await client.get("/api/v1/admin/api-keys", headers=op)).status_code == 403
    r = await client.post("/api/v1/admin/api-keys", json={"name": "x", "scopes": []}, headers=op)
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")


@pytest.mark.asyncio
async def test_a_key_cannot_mint_a_key_with_more_power_than_itself(
    client: httpx.AsyncClient, root: dict[str, str]
) -> None:
    """A key holding api_keys:manage may create keys only within its own scopes (403 forbidden
    beyond them)."""
    manager = await create_api_key(client, root, ["api_keys:manage", "users:read"])
    r = await client.post(
        "/api/v1/admin/api-keys",
        json={"name": "x", "scopes": ["users:write"]},
        headers=_key(manager["key"]),
    )
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    r = await client.post(
        "/api/v1/admin/api-keys",
        json={"name": "y", "scopes": ["users:read"]},
        headers=_key(manager["key"]),
    )
    assert r.status_code == 201, r.text


# -- use -----------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", ["bearer", "x-api-key"])
async def test_key_works_as_bearer_and_as_x_api_key_within_its_scopes(
    client: httpx.AsyncClient, root: dict[str, str], transport: str
) -> None:
    """A users:read key reads users through either header, and is 403 forbidden for what its scopes
    lack."""
    created = await create_api_key(client, root, ["users:read"])
    headers = _key(created["key"], transport)
    r = await client.get(USERS, headers=headers)
    assert r.status_code == 200, r.text
    assert "root@example.com" in {u["email"] for u in r.json()["items"]}
    r = await client.post(
        USERS, json={"email": "x@example.com", "password": "a-long-passphrase-9"}, headers=headers
    )
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    r = await client.get("/api/v1/admin/audit", headers=headers)
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/users/profile"),
        ("GET", "/api/v1/auth/validate"),
        ("GET", "/api/v1/auth/sessions"),
        ("POST", "/api/v1/auth/logout"),
        ("POST", "/api/v1/auth/logout-all"),
    ],
)
async def test_key_on_a_user_session_route_is_forbidden(
    client: httpx.AsyncClient, root: dict[str, str], method: str, path: str
) -> None:
    """Routes about the caller's own session need a user token: an API key gets 403 forbidden, not
    401."""
    created = await create_api_key(client, root, sorted({"users:read", "users:write", "ops:read"}))
    r = await client.request(method, path, headers=_key(created["key"]))
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")


@pytest.mark.asyncio
@pytest.mark.parametrize("value", ["gh_nosuchkey000_" + "A" * 43, "gh_short", "not-a-key", ""])
async def test_unknown_or_malformed_key_is_api_key_invalid(
    client: httpx.AsyncClient, root: dict[str, str], value: str
) -> None:
    """An X-API-Key that is unknown or malformed is 401 api_key_invalid."""
    r = await client.get(USERS, headers={"X-API-Key": value})
    assert (r.status_code, r.json()["code"]) == (401, "api_key_invalid")


@pytest.mark.asyncio
async def test_key_with_a_wrong_secret_behind_a_real_prefix_is_refused(
    client: httpx.AsyncClient, root: dict[str, str]
) -> None:
    """Knowing a key's listed prefix is not enough: a forged secret part is 401 api_key_invalid."""
    created = await create_api_key(client, root, ["users:read"])
    forged = created["prefix"] + "_" + "B" * 43
    r = await client.get(USERS, headers=_key(forged))
    assert (r.status_code, r.json()["code"]) == (401, "api_key_invalid")


@pytest.mark.asyncio
async def test_last_used_at_is_recorded(client: httpx.AsyncClient, root: dict[str, str]) -> None:
    """A key starts with last_used_at null and shows the time of its use afterwards."""
    created = await create_api_key(client, root, ["users:read"])
    listed = {i["id"]: i for i in (await _listing(client, root)).json()["items"]}
    assert listed[created["id"]]["last_used_at"] is None
    assert (await client.get(USERS, headers=_key(created["key"]))).status_code == 200
    listed = {i["id"]: i for i in (await _listing(client, root)).json()["items"]}
    used = datetime.strptime(listed[created["id"]]["last_used_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert abs(used.replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(seconds=10)


@pytest.mark.asyncio
async def test_expired_key_is_refused(
    client: httpx.AsyncClient, ctx: Context, root: dict[str, str]
) -> None:
    """A key works until its expires_at and is 401 api_key_invalid after it."""
    soon = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    created = await create_api_key(client, root, ["users:read"], expires_at=soon.isoformat())
    assert created["expires_at"] == soon.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (await client.get(USERS, headers=_key(created["key"]))).status_code == 200
    async with ctx.db.begin() as db:
        await db.execute(
            update(ApiKey)
            .where(ApiKey.id == created["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    r = await client.get(USERS, headers=_key(created["key"]))
    assert (r.status_code, r.json()["code"]) == (401, "api_key_invalid")


@pytest.mark.asyncio
async def test_revoked_key_stops_working_at_once_and_is_audited(
    client: httpx.AsyncClient, root: dict[str, str]
) -> None:
    """DELETE revokes a key (401 afterwards, gone from listings, 404 on a second DELETE); audit data
    holds no secret."""
    created = await create_api_key(client, root, ["users:read"])
    assert (await client.get(USERS, headers=_key(created["key"]))).status_code == 200
    assert (
        await client.delete(f"/api/v1/admin/api-keys/{created['id']}", headers=root)
    ).status_code == 204
    r = await client.get(USERS, headers=_key(created["key"]))
    assert (r.status_code, r.json()["code"]) == (401, "api_key_invalid")
    assert created["id"] not in {i["id"] for i in (await _listing(client, root)).json()["items"]}
    r = await client.delete(f"/api/v1/admin/api-keys/{created['id']}", headers=root)
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    audit = await client.get("/api/v1/admin/audit", headers=root)
    events = [e for e in audit.json()["items"] if e["type"].startswith("api_key.")]
    assert [e["type"] for e in events] == ["api_key.revoked", "api_key.created"]
    assert created["key"] not in audit.text


@pytest.mark.asyncio
async def test_verifying_a_key_costs_no_password_hash(
    client: httpx.AsyncClient, ctx: Context, root: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """API-key requests, valid or not, never call the password hasher."""
    created = await create_api_key(client, root, ["users:read"])
    calls: list[str] = []
    original = ctx.hasher.verify_sync

    def counting(*args: Any) -> Any:
        calls.append("verify")
        return original(*args)

    monkeypatch.setattr(ctx.hasher, "verify_sync", counting)
    for _ in range(5):
        assert (await client.get(USERS, headers=_key(created["key"]))).status_code == 200
        assert (
            await client.get(USERS, headers=_key(created["prefix"] + "_" + "C" * 43))
        ).status_code == 401
    assert calls == []


@pytest.mark.asyncio
async def test_metrics_accept_a_key_with_ops_read_only(
    client: httpx.AsyncClient, root: dict[str, str]
) -> None:
    """/metrics answers Prometheus text to an ops:read key and 403 to a key without it."""
    ops = await create_api_key(client, root, ["ops:read"])
    r = await client.get("/metrics", headers=_key(ops["key"]))
    assert r.status_code == 200
    assert "gatehouse_http_requests_total" in r.text
    other = await create_api_key(client, root, ["users:read"])
    r = await client.get("/metrics", headers={"X-API-Key": other["key"]})
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")


# -- signatures ----------------------------------------------------------------------------


@pytest_asyncio.fixture
async def signer(client: httpx.AsyncClient, root: dict[str, str]) -> dict[str, Any]:
    created = await create_api_key(
        client, root, ["users:read", "users:write", "ops:read"], require_signature=True
    )
    assert created["signing_secret"].startswith("ghs_")
    return created


@pytest.mark.asyncio
async def test_signing_key_without_signature_is_refused(
    client: httpx.AsyncClient, signer: dict[str, Any]
) -> None:
    """A require_signature key without X-Signature, or with a malformed one, is 401
    signature_invalid."""
    for extra in ({}, {"X-Signature": "garbage"}, {"X-Signature": f"t={int(time.time())},v1=abc"}):
        r = await client.get(USERS, headers={**_key(signer["key"]), **extra})
        assert (r.status_code, r.json()["code"]) == (401, "signature_invalid")


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", ["bearer", "x-api-key"])
async def test_valid_signature_is_accepted(
    client: httpx.AsyncClient, signer: dict[str, Any], transport: str
) -> None:
    """A request signed with sign() over t, method, target and empty-body hash is accepted."""
    headers = _signed(signer["signing_secret"], "GET", USERS, key=signer["key"])
    headers = {**_key(signer["key"], transport), "X-Signature": headers["X-Signature"]}
    r = await client.get(USERS, headers=headers)
    assert r.status_code == 200, r.text


@pytest.mark.asyncio
async def test_signature_from_another_secret_is_refused(
    client: httpx.AsyncClient, signer: dict[str, Any]
) -> None:
    """An HMAC made with the wrong secret is 401 signature_invalid."""
    headers = _signed("ghs_" + "x" * 43, "GET", USERS, key=signer["key"])
    r = await client.get(USERS, headers=headers)
    assert (r.status_code, r.json()["code"]) == (401, "signature_invalid")


@pytest.mark.asyncio
@pytest.mark.parametrize(("offset", "status"), [(-301, 401), (301, 401), (-290, 200), (290, 200)])
async def test_signature_timestamp_must_be_within_300_seconds(
    client: httpx.AsyncClient, signer: dict[str, Any], offset: int, status: int
) -> None:
    """Signatures more than 300 s in the past or future are refused; within the skew they pass."""
    at = int(time.time()) + offset
    r = await client.get(
        USERS, headers=_signed(signer["signing_secret"], "GET", USERS, at=at, key=signer["key"])
    )
    assert r.status_code == status, r.text
    if status == 401:
        assert r.json()["code"] == "signature_invalid"


@pytest.mark.asyncio
async def test_replayed_signature_is_refused(
    client: httpx.AsyncClient, signer: dict[str, Any]
) -> None:
    """The same signed request sent twice is accepted once, then 401 signature_invalid."""
    headers = _signed(signer["signing_secret"], "GET", USERS, key=signer["key"])
    assert (await client.get(USERS, headers=headers)).status_code == 200
    r = await client.get(USERS, headers=headers)
    assert (r.status_code, r.json()["code"]) == (401, "signature_invalid")


@pytest.mark.asyncio
async def test_signature_covers_the_exact_target_with_its_query(
    client: httpx.AsyncClient, signer: dict[str, Any]
) -> None:
    """The signed target is the path plus '?query' only when there is one, exactly as sent."""
    secret, key = signer["signing_secret"], signer["key"]
    target = f"{USERS}?limit=5&q=root"
    assert (
        await client.get(target, headers=_signed(secret, "GET", target, key=key))
    ).status_code == 200
    r = await client.get(target, headers=_signed(secret, "GET", USERS, key=key))
    assert (r.status_code, r.json()["code"]) == (401, "signature_invalid")
    r = await client.get(USERS, headers=_signed(secret, "GET", USERS + "?", key=key))
    assert (r.status_code, r.json()["code"]) == (401, "signature_invalid")
    r = await client.get(
        f"{USERS}?limit=6", headers=_signed(secret, "GET", f"{USERS}?limit=5", key=key)
    )
    assert (r.status_code, r.json()["code"]) == (401, "signature_invalid")
    legacy = "/api/admin/users?limit=2"
    assert (
        await client.get(legacy, headers=_signed(secret, "GET", legacy, key=key))
    ).status_code == 200


@pytest.mark.asyncio
async def test_signature_covers_method_and_body_hash(
    client: httpx.AsyncClient, signer: dict[str, Any]
) -> None:
    """The body's SHA-256 and the method are signed: a different body or method is refused."""
    secret, key = signer["signing_secret"], signer["key"]
    body = json.dumps(
        {"email": "new@example.com", "password": "a-long-fresh-passphrase-7", "name": "New"}
    ).encode()
    tampered = body.replace(b"new@", b"evil@")
    json_type = {"Content-Type": "application/json"}
    r = await client.post(
        USERS,
        content=tampered,
        headers={**_signed(secret, "POST", USERS, body, key=key), **json_type},
    )
    assert (r.status_code, r.json()["code"]) == (401, "signature_invalid")
    r = await client.post(
        USERS, content=body, headers={**_signed(secret, "PUT", USERS, body, key=key), **json_type}
    )
    assert (r.status_code, r.json()["code"]) == (401, "signature_invalid")
    r = await client.post(
        USERS, content=body, headers={**_signed(secret, "POST", USERS, body, key=key), **json_type}
    )
    assert r.status_code == 201, r.text
    assert r.json()["email"] == "new@example.com"


@pytest.mark.usefixtures("backend")  # the module runs per database; this check needs none
def test_sign_builds_the_documented_header() -> None:
    """sign() is HMAC-SHA256(secret, "<t>.<METHOD>.<target>.<sha256hex(body)>") in the t=,v1=
    format."""
    import hmac

    body = b'{"a":1}'
    message = f"1700000000.POST./api/v1/x?y=1.{hashlib.sha256(body).hexdigest()}"
    mac = hmac.new(b"ghs_secret", message.encode(), hashlib.sha256).hexdigest()
    assert sign("ghs_secret", 1700000000, "post", "/api/v1/x?y=1", body) == f"t=1700000000,v1={mac}"
