"""Web Push endpoints: VAPID key, subscriptions with https + public-address rules (API.md §4)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from gatehouse.notify.vapid import generate_vapid_pair
from gatehouse.store.db.models import PushSubscription
from tests.conftest import asgi_client, bearer, login

SUB = {"endpoint": "https://push.example.net/send/abc", "keys": {"p256dh": "BPk-x_1", "auth": "aXV0aA"}}


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
])
async def test_subscription_endpoint_must_be_public_https(
    client: httpx.AsyncClient, alice: Any, endpoint: str
) -> None:
    """Endpoints that are not https or that reach private/loopback addresses are refused with 422."""
    tokens = await login(client)
    r = await client.post("/api/v1/push/subscriptions", headers=bearer(tokens),
                          json={**SUB, "endpoint": endpoint})
    assert (r.status_code, r.json()["code"]) == (422, "validation_failed")


@pytest.mark.asyncio
async def test_subscribe_and_unsubscribe_with_private_endpoints_allowed_for_tests(
    make_app: Any, alice: Any
) -> None:
    """With GATEHOUSE_PUSH_ALLOW_PRIVATE=1 a loopback endpoint is stored once, then deleted; deleting again is still 204."""
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
