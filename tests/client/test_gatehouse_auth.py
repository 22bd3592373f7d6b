"""GatehouseAuth with plain httpx clients, logout, and where tokens may be sent."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx
import pytest

from gatehouse.client import (
    Client,
    GatehouseAuth,
    MemoryTokenStore,
    RetryPolicy,
    ServiceUnavailable,
    SessionExpired,
    TransportError,
)

if TYPE_CHECKING:
    from conftest import FakeGatehouse

BASE = "http://gatehouse.test"

# Faults that outlast every retry of the default policy.
ATTEMPTS = RetryPolicy().max_attempts


def logged_in_store(fake: FakeGatehouse) -> MemoryTokenStore:
    store = MemoryTokenStore()
    with Client(BASE, token_store=store, transport=fake.transport) as client:
        client.login(fake.email, fake.password)
    return store


def test_plain_httpx_client_is_authenticated_and_refreshed(fake: FakeGatehouse) -> None:
    """GatehouseAuth on a plain httpx.Client sends the token and refreshes after a 401."""
    store = logged_in_store(fake)
    auth = GatehouseAuth(BASE, token_store=store, transport=fake.transport)
    with httpx.Client(base_url=BASE, auth=auth, transport=fake.transport) as http:
        assert http.get("/api/v1/users/profile").json()["email"] == fake.email
        fake.reject_all_access_tokens()
        assert http.get("/api/v1/users/profile").status_code == 200
    assert fake.stats["refresh_calls"] == 1


@pytest.mark.asyncio
async def test_plain_httpx_async_client_is_authenticated_and_refreshed(
    fake: FakeGatehouse,
) -> None:
    """GatehouseAuth on a plain httpx.AsyncClient sends the token and refreshes after a 401."""
    store = logged_in_store(fake)
    auth = GatehouseAuth(BASE, token_store=store, transport=fake.async_transport)
    async with httpx.AsyncClient(base_url=BASE, auth=auth, transport=fake.async_transport) as http:
        fake.reject_all_access_tokens()
        response = await http.get("/api/v1/users/profile")
    assert (response.status_code, fake.stats["refresh_calls"]) == (200, 1)


def test_plain_httpx_session_revoked_raises_session_expired(fake: FakeGatehouse) -> None:
    """With plain httpx, a revoked session raises SessionExpired from the auth flow."""
    store = logged_in_store(fake)
    fake.revoke_all()
    auth = GatehouseAuth(BASE, token_store=store, transport=fake.transport)
    with (
        httpx.Client(auth=auth, transport=fake.transport) as http,
        pytest.raises(SessionExpired),
    ):
        http.get(f"{BASE}/api/v1/users/profile")
    assert store.load() is None


def test_token_is_never_sent_to_another_origin(fake: FakeGatehouse) -> None:
    """The flow adds the bearer token only for the configured scheme, host and port."""
    store = logged_in_store(fake)
    auth = GatehouseAuth(BASE, token_store=store, transport=fake.transport)
    with httpx.Client(auth=auth, transport=fake.transport) as http:
        for url in (
            "http://evil.test/api/v1/users/profile",
            "https://gatehouse.test/api/v1/users/profile",
            "http://gatehouse.test:8080/api/v1/users/profile",
        ):
            http.get(url)
        http.get("http://gatehouse.test:80/api/v1/users/profile")
    tokens = store.load()
    assert tokens is not None
    assert fake.auth_headers == [None, None, None, f"Bearer {tokens.access_token}"]


def test_client_refuses_absolute_urls(fake: FakeGatehouse) -> None:
    """Client paths are relative to the one base URL; absolute URLs raise ValueError."""
    with Client(BASE, transport=fake.transport) as client:
        for url in ("http://evil.test/x", "//evil.test/x"):
            with pytest.raises(ValueError, match="relative"):
                client.get(url)


def test_base_url_with_a_path_prefix_is_kept() -> None:
    """A base URL with a path prefix keeps it: /api/v1/... is appended, not substituted."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"ok": True})

    with Client("http://host.test/gatehouse/", transport=httpx.MockTransport(handler)) as client:
        client.get("/api/v1/users/profile", params={"q": "x"})
    assert seen == ["http://host.test/gatehouse/api/v1/users/profile?q=x"]


def test_base_url_must_be_absolute_http() -> None:
    """A base URL without scheme or host is refused at construction."""
    with pytest.raises(ValueError, match="absolute"):
        Client("127.0.0.1:8000")


def test_logout_revokes_on_server_and_clears_store(fake: FakeGatehouse) -> None:
    """logout() calls the server and empties the store; a second logout is a no-op."""
    store = logged_in_store(fake)
    with Client(BASE, token_store=store, transport=fake.transport) as client:
        client.logout()
        client.logout()
    assert (store.load(), fake.stats["logout"]) == (None, 1)


def test_logout_of_a_revoked_session_is_quiet(fake: FakeGatehouse) -> None:
    """logout() of an already-revoked session clears the store without raising."""
    store = logged_in_store(fake)
    fake.revoke_all()
    with Client(BASE, token_store=store, transport=fake.transport) as client:
        client.logout()
    assert store.load() is None


def test_logout_clears_store_and_raises_when_server_fails(
    fake: FakeGatehouse, no_sleep: list[float]
) -> None:
    """A logout that cannot reach the server still forgets the session locally, then raises."""
    store = logged_in_store(fake)
    with Client(BASE, token_store=store, transport=fake.transport) as client:
        fake.fail("/auth/logout", *[httpx.ConnectError("refused")] * ATTEMPTS)
        with pytest.raises(TransportError):
            client.logout()
        assert store.load() is None
    store = logged_in_store(fake)
    with Client(BASE, token_store=store, transport=fake.transport) as client:
        fake.fail("/auth/logout", *[(503, "service_unavailable")] * ATTEMPTS)
        with pytest.raises(ServiceUnavailable):
            client.logout()
    assert store.load() is None


def test_auth_flow_survives_a_new_event_loop(live_server: tuple[str, FakeGatehouse]) -> None:
    """One GatehouseAuth refreshes correctly under two successive asyncio.run() loops."""
    url, fake = live_server
    store = MemoryTokenStore()
    with Client(url, token_store=store) as client:
        client.login(fake.email, fake.password)
    auth = GatehouseAuth(url, token_store=store)

    async def call() -> int:
        fake.reject_all_access_tokens()
        async with httpx.AsyncClient(auth=auth) as http:
            return (await http.get(f"{url}/api/v1/users/profile")).status_code

    assert [asyncio.run(call()), asyncio.run(call())] == [200, 200]
    assert fake.stats["refresh_calls"] == 2
