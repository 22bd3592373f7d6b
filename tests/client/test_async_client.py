"""AsyncClient: the same guarantees as Client, awaited."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from gatehouse.client import (
    AsyncClient,
    FileTokenStore,
    Forbidden,
    InvalidCredentials,
    MemoryTokenStore,
    RateLimited,
    RetryPolicy,
    SessionExpired,
    TransportError,
)
from gatehouse.client._locks import state_for

if TYPE_CHECKING:
    from conftest import FakeClock, FakeGatehouse

BASE = "http://gatehouse.test"

# Faults that outlast every retry of the default policy.
ATTEMPTS = RetryPolicy().max_attempts


async def logged_in(fake: FakeGatehouse, store: MemoryTokenStore | None = None) -> AsyncClient:
    client = AsyncClient(
        BASE, token_store=store or MemoryTokenStore(), transport=fake.async_transport
    )
    await client.login(fake.email, fake.password)
    return client


@pytest.mark.asyncio
async def test_login_profile_and_store_reuse(fake: FakeGatehouse) -> None:
    """Async login stores the session; a second client on the store reuses it without login."""
    store = MemoryTokenStore()
    async with await logged_in(fake, store) as client:
        assert (await client.profile())["email"] == fake.email
    async with AsyncClient(BASE, token_store=store, transport=fake.async_transport) as again:
        await again.login(fake.email, fake.password)
        assert (await again.get("/api/v1/users/profile")).json()["email"] == fake.email
    assert fake.stats["login"] == 1


@pytest.mark.asyncio
async def test_wrong_password_raises_invalid_credentials(fake: FakeGatehouse) -> None:
    """An async failed login raises InvalidCredentials, not SessionExpired."""
    async with AsyncClient(BASE, transport=fake.async_transport) as client:
        with pytest.raises(InvalidCredentials) as caught:
            await client.login(fake.email, "nope")
    assert not isinstance(caught.value, SessionExpired)


@pytest.mark.asyncio
async def test_token_expired_401_refreshes_once_and_retries(fake: FakeGatehouse) -> None:
    """Async 401 token_expired leads to one refresh and one retry that succeeds."""
    async with await logged_in(fake) as client:
        fake.reject_all_access_tokens()
        assert (await client.profile())["email"] == fake.email
    assert (fake.stats["refresh_calls"], fake.stats["answered_401"]) == (1, 1)


@pytest.mark.asyncio
async def test_forbidden_keeps_the_session(fake: FakeGatehouse) -> None:
    """Async 403 raises Forbidden and keeps the stored session."""
    store = MemoryTokenStore()
    async with await logged_in(fake, store) as client:
        with pytest.raises(Forbidden):
            await client.get("/api/v1/admin/users")
    assert store.load() is not None


@pytest.mark.asyncio
async def test_503_retried_and_429_raises_rate_limited(
    fake: FakeGatehouse, clock: FakeClock
) -> None:
    """Async retries honour Retry-After and end in RateLimited carrying retry_after."""
    fake.fail("/users/profile", (503, "service_unavailable", 1))
    async with await logged_in(fake) as client:
        assert (await client.profile())["email"] == fake.email
        fake.fail("/users/profile", *[(429, "rate_limited", 2)] * ATTEMPTS)
        with pytest.raises(RateLimited) as caught:
            await client.profile()
    assert caught.value.retry_after == 2.0
    assert clock.sleeps[0] >= 1.0 and all(s >= 2.0 for s in clock.sleeps[1:])
    # One wait for the 503, then one before each repeated 429 until the budget ran out.
    assert len(clock.sleeps) == 1 + fake.stats["fault_429"] - 1 >= 4
    assert sum(clock.sleeps[1:]) <= RetryPolicy().budget


@pytest.mark.asyncio
async def test_refresh_reused_ends_the_session(fake: FakeGatehouse, expire: Any) -> None:
    """Async refresh answered refresh_reused raises SessionExpired and clears the store."""
    store = MemoryTokenStore()
    async with await logged_in(fake, store) as client:
        expire(store)
        fake.fail("/auth/refresh", (401, "refresh_reused"))
        with pytest.raises(SessionExpired) as caught:
            await client.profile()
    assert (caught.value.code, store.load()) == ("refresh_reused", None)


@pytest.mark.asyncio
async def test_transient_refresh_failure_keeps_using_valid_token(
    fake: FakeGatehouse, clock: FakeClock
) -> None:
    """An async early refresh that hits a network error still lets the request succeed."""
    store = MemoryTokenStore()
    async with await logged_in(fake, store) as client:
        clock.advance(900 - 10)
        fake.fail("/auth/refresh", httpx.ConnectError("refused"))
        assert (await client.profile())["email"] == fake.email
    assert (fake.stats["transport_faults"], fake.stats["rotations"]) == (1, 0)
    assert store.load() is not None


@pytest.mark.asyncio
async def test_logout_clears_store_even_when_server_unreachable(
    fake: FakeGatehouse, no_sleep: list[float]
) -> None:
    """Async logout clears the local session and raises the transport error afterwards."""
    store = MemoryTokenStore()
    async with await logged_in(fake, store) as client:
        fake.fail("/auth/logout", *[httpx.ConnectError("refused")] * ATTEMPTS)
        with pytest.raises(TransportError):
            await client.logout()
    assert store.load() is None


@pytest.mark.asyncio
async def test_cancelled_waiter_does_not_leak_the_locks(
    fake: FakeGatehouse, expire: Any, tmp_path: Any
) -> None:
    """A task cancelled while waiting for the file lock leaves every lock free afterwards."""
    store = FileTokenStore(tmp_path / "tokens.json")
    async with await logged_in(fake, store) as client:  # type: ignore[arg-type]
        expire(store)
        fake.refresh_delay = 0.2
        first = asyncio.create_task(client.profile())
        await asyncio.sleep(0.05)  # first now holds the locks, mid-refresh
        waiter = asyncio.create_task(client.profile())
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert (await first)["email"] == fake.email
        expire(store)
        fake.refresh_delay = 0.0
        assert (await asyncio.wait_for(client.profile(), 5))["email"] == fake.email
    assert not state_for(store).thread_lock.locked()
    assert fake.stats["refresh_calls"] == 2
