"""Web Push endpoints: VAPID key, subscriptions with https + public-address rules (API.md §4)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from gatehouse.notify.vapid import generate_vapid_pair
from gatehouse.store.db.models import PushSubscription
from tests.conftest import asgi_client, bearer, create_user, login

SUB = {"endpoint": "https://push.example.net/send/abc",
       "keys": {"p256dh": "BPk-x_1", "auth": "aXV0aA"}}


@pytest.mark.asyncio
async def test_vapid_key_is_404_until_configured(client: httpx.AsyncClient, make_app: Any) -> None:
    """Without VAPID keys the public-key route answers 404; with them it returns the public key."""
    r = await client.get("/api/v1/push/vapid-public-key")
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    public, private = generate_vapid_pair()
    async with asgi_client(make_app(VAPID_PUBLIC_KEY=public, VAPID_PRIVATE_KEY=private,
                                    VAPID_SUBJECT="mailto:ops@example.com")) as c:
        assert (await c.get("/api/v1/push/vapid-public-key")).json() == {"public_key": public}


@pytest.mark.asyncio
@pytest.mark.parametrize("endpoint", [
    "http://push.example.net/send/abc",   # not https
    "https://127.0.0.1/send",             # loopback
    "https://10.1.2.3/send",              # private range
    "https://[::1]/send",                 # IPv6 loopback
    "https://localhost/send",             # resolves to loopback
    "not a url at all",
    "https://[::ffff:10.0.0.1]/send",     # IPv4-mapped private
    "https://[::ffff:127.0.0.1]/send",    # IPv4-mapped loopback
    "https://[::10.0.0.1]/send",          # IPv4-compatible private
    "https://[::ffff:0:a00:1]/send",      # IPv4-translated (SIIT) private
    "https://[64:ff9b::a00:1]/send",      # NAT64 well-known prefix, 10.0.0.1 behind it
    "https://[64:ff9b::7f00:1]/send",     # NAT64 to 127.0.0.1
    "https://[64:ff9b::a9fe:a9fe]/send",  # NAT64 to 169.254.169.254 (cloud metadata)
    "https://[64:ff9b:1::808:808]/send",  # NAT64 local-use prefix (RFC 8215)
    "https://[2002:a00:1::1]/send",       # 6to4 of 10.0.0.1
    "https://[2002:c0a8:101::1]/send",    # 6to4 of 192.168.1.1
    # Teredo
    "https://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/send",
    "https://[fe80::1]/send",             # link-local
    "https://100.64.0.1/send",            # carrier-grade NAT
    "https://[::1/send",                  # unparseable host
])
async def test_subscription_endpoint_must_be_public_https(
    client: httpx.AsyncClient, alice: Any, endpoint: str
) -> None:
    """Endpoints that are not https or that reach private/loopback addresses are refused with
    422."""
    tokens = await login(client)
    r = await client.post("/api/v1/push/subscriptions", headers=bearer(tokens),
                          json={**SUB, "endpoint": endpoint})
    assert (r.status_code, r.json()["code"]) == (422, "validation_failed")


@pytest.mark.asyncio
async def test_subscribe_and_unsubscribe_with_private_endpoints_allowed_for_tests(
    make_app: Any, alice: Any
) -> None:
    """With GATEHOUSE_PUSH_ALLOW_PRIVATE=1 a loopback endpoint is stored once, then deleted;
    deleting again is still 204."""
    app = make_app(GATEHOUSE_PUSH_ALLOW_PRIVATE="1")
    sub = {**SUB, "endpoint": "http://127.0.0.1:9/push"}
    async with asgi_client(app) as c:
        tokens = await login(c)
        for _ in range(2):  # re-subscribing the same browser does not duplicate it
            r = await c.post("/api/v1/push/subscriptions", headers=bearer(tokens), json=sub)
            assert r.status_code == 201
        async with app.state.ctx.db() as db:
            assert await db.scalar(select(func.count()).select_from(PushSubscription)) == 1
        gone = await c.request("DELETE", "/api/v1/push/subscriptions", headers=bearer(tokens),
                               json={"endpoint": sub["endpoint"]})
        again = await c.request("DELETE", "/api/v1/push/subscriptions", headers=bearer(tokens),
                                json={"endpoint": sub["endpoint"]})
        async with app.state.ctx.db() as db:
            assert await db.scalar(select(func.count()).select_from(PushSubscription)) == 0
    assert (gone.status_code, again.status_code) == (204, 204)


@pytest.mark.asyncio
async def test_subscribing_needs_a_user_session(client: httpx.AsyncClient) -> None:
    """Anonymous subscription attempts answer 401 token_missing."""
    r = await client.post("/api/v1/push/subscriptions", json=SUB)
    assert (r.status_code, r.json()["code"]) == (401, "token_missing")


@pytest.mark.asyncio
@pytest.mark.parametrize("endpoint", [
    "https://[64:ff9b::808:808]/send",    # NAT64 to 8.8.8.8: an IPv6-only network's way out
    "https://[2002:808:808::1]/send",     # 6to4 of 8.8.8.8
    "https://[2606:4700::1111]/send",
    "https://8.8.8.8/send",
])
async def test_public_endpoints_behind_translators_are_accepted(
    client: httpx.AsyncClient, alice: Any, endpoint: str
) -> None:
    """Translated and tunnelled forms of public IPv4 addresses, and plain public ones, are fine."""
    tokens = await login(client)
    r = await client.post("/api/v1/push/subscriptions", headers=bearer(tokens),
                          json={**SUB, "endpoint": endpoint})
    assert r.status_code == 201, r.text


@pytest.mark.asyncio
async def test_another_user_cannot_take_over_a_registered_endpoint(make_app: Any) -> None:
    """POSTing an endpoint registered to another user answers 409 conflict and leaves it with its
    owner, keys unchanged; the intruder's DELETE of it changes nothing either."""
    app = make_app(GATEHOUSE_PUSH_ALLOW_PRIVATE="1")
    await create_user(app.state.ctx)
    await create_user(app.state.ctx, "mallory@example.com", name="Mallory")
    sub = {**SUB, "endpoint": "http://127.0.0.1:9/push/victim"}
    stolen = {**sub, "keys": {"p256dh": "BMallory", "auth": "bWFsbG9yeQ"}}
    async with asgi_client(app) as c:
        alice = bearer(await login(c))
        mallory = bearer(await login(c, "mallory@example.com"))
        first = await c.post("/api/v1/push/subscriptions", headers=alice, json=sub)
        assert first.status_code == 201
        r = await c.post("/api/v1/push/subscriptions", headers=mallory, json=stolen)
        assert (r.status_code, r.json()["code"]) == (409, "conflict")
        assert r.headers["content-type"] == "application/problem+json"
        gone = await c.request("DELETE", "/api/v1/push/subscriptions", headers=mallory,
                               json={"endpoint": sub["endpoint"]})
        assert gone.status_code == 204
        async with app.state.ctx.db() as db:
            rows = (await db.scalars(select(PushSubscription))).all()
        owner = (await c.get("/api/v1/users/profile", headers=alice)).json()["id"]
        # The owner re-subscribing the same browser still works (new keys are taken).
        renewed = {**sub, "keys": {"p256dh": "BNewKey", "auth": "bmV3"}}
        again = await c.post("/api/v1/push/subscriptions", headers=alice, json=renewed)
        assert again.status_code == 201
        async with app.state.ctx.db() as db:
            after = (await db.scalars(select(PushSubscription))).one()
    assert [(row.user_id, row.p256dh, row.auth) for row in rows] == [(owner, "BPk-x_1", "aXV0aA")]
    assert (after.user_id, after.p256dh) == (owner, "BNewKey")
