"""Client, AsyncClient and GatehouseAuth retry the refresh call like any idempotent call.

A refresh is idempotent on the server within the grace window (API.md §3), so
connection errors, lost answers, 502/503/504 and 429 are retried with backoff
and ``Retry-After`` inside the policy's total time cap; only the answers that
end a session (``refresh_*``, ``session_revoked``) are final at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from gatehouse.client import (
    AsyncClient,
    Client,
    GatehouseAuth,
    MemoryTokenStore,
    RetryPolicy,
    ServiceUnavailable,
    SessionExpired,
    TransportError,
)

if TYPE_CHECKING:
    from conftest import FakeClock, FakeGatehouse, Fault

BASE = "http://gatehouse.test"
PROFILE = "/api/v1/users/profile"
#: Calls the profile route through one of the SDK's entry points and returns its JSON.
Call = Callable[[], dict[str, Any]]


def via_client(fake: FakeGatehouse, store: MemoryTokenStore, policy: RetryPolicy) -> Call:
    def call() -> dict[str, Any]:
        with Client(BASE, token_store=store, transport=fake.transport, retry=policy) as gh:
            return gh.profile()

    return call


def via_async_client(fake: FakeGatehouse, store: MemoryTokenStore, policy: RetryPolicy) -> Call:
    async def main() -> dict[str, Any]:
        async with AsyncClient(
            BASE, token_store=store, transport=fake.async_transport, retry=policy
        ) as gh:
            return await gh.profile()

    return lambda: asyncio.run(main())


def via_auth(fake: FakeGatehouse, store: MemoryTokenStore, policy: RetryPolicy) -> Call:
    auth = GatehouseAuth(BASE, store, retry=policy, transport=fake.transport)

    def call() -> dict[str, Any]:
        with httpx.Client(transport=fake.transport, auth=auth) as http:
            body: dict[str, Any] = http.get(BASE + PROFILE).raise_for_status().json()
            return body

    return call


def via_async_auth(fake: FakeGatehouse, store: MemoryTokenStore, policy: RetryPolicy) -> Call:
    auth = GatehouseAuth(BASE, store, retry=policy, transport=fake.async_transport)

    async def main() -> dict[str, Any]:
        async with httpx.AsyncClient(transport=fake.async_transport, auth=auth) as http:
            body: dict[str, Any] = (await http.get(BASE + PROFILE)).raise_for_status().json()
            return body

    return lambda: asyncio.run(main())


DRIVERS = {
    "Client": via_client,
    "AsyncClient": via_async_client,
    "GatehouseAuth": via_auth,
    "GatehouseAuth-async": via_async_auth,
}


@pytest.fixture(params=list(DRIVERS))
def driver(request: pytest.FixtureRequest) -> Callable[..., Call]:
    """Each SDK entry point in turn."""
    return DRIVERS[request.param]


def logged_in(fake: FakeGatehouse) -> MemoryTokenStore:
    store = MemoryTokenStore()
    with Client(BASE, token_store=store, transport=fake.transport) as gh:
        gh.login(fake.email, fake.password)
    return store


TRANSIENT: dict[str, Fault] = {
    "connect-error": httpx.ConnectError("connection refused"),
    "connect-timeout": httpx.ConnectTimeout("timed out"),
    "read-error": httpx.ReadError("connection reset"),
    "read-timeout": httpx.ReadTimeout("timed out"),
    "server-disconnected": httpx.RemoteProtocolError("server disconnected"),
    "502": (502, "bad_gateway"),
    "503": (503, "service_unavailable"),
    "504": (504, "gateway_timeout"),
    "429-retry-after": (429, "rate_limited", 1),
}


@pytest.mark.parametrize("fault", list(TRANSIENT))
def test_expired_token_refresh_is_retried_after_a_transient_failure(
    fake: FakeGatehouse, clock: FakeClock, expire: Any, driver: Callable[..., Call], fault: str
) -> None:
    """A refresh failing twice transiently (network, 429, 502-504) is retried and succeeds."""
    store = logged_in(fake)
    expire(store)
    before = store.load()
    assert before is not None
    fake.fail("/auth/refresh", TRANSIENT[fault], TRANSIENT[fault])
    assert driver(fake, store, RetryPolicy())()["email"] == fake.email
    after = store.load()
    assert after is not None and after.refresh_token != before.refresh_token
    assert len(clock.sleeps) == 2
    assert fake.stats["rotations"] == 1


def test_refresh_waits_for_retry_after_of_a_503(
    fake: FakeGatehouse, clock: FakeClock, expire: Any, driver: Callable[..., Call]
) -> None:
    """A refresh answered 503 with Retry-After is retried no sooner than asked, then succeeds."""
    store = logged_in(fake)
    expire(store)
    fake.fail("/auth/refresh", (503, "service_unavailable", 3))
    assert driver(fake, store, RetryPolicy())()["email"] == fake.email
    assert len(clock.sleeps) == 1 and 3.0 <= clock.sleeps[0] <= 3.5
    assert (fake.stats["fault_503"], fake.stats["rotations"]) == (1, 1)


def test_early_refresh_whose_attempt_outlives_the_token_is_retried(
    fake: FakeGatehouse, clock: FakeClock, driver: Callable[..., Call]
) -> None:
    """An early refresh that fails after the token expired meanwhile is retried, not raised.

    This is the CPU-load failure of the real-server restart test: the refresh
    starts with a still-valid token, the connection is refused slowly, and by
    then the token is no longer usable, so a single attempt left nothing to use.
    """
    store = logged_in(fake)
    old = store.load()
    assert old is not None
    clock.advance(900 - 20)  # inside the 30 s refresh margin, still valid

    def slow_refusal() -> Fault:
        clock.advance(25)  # the attempt takes long enough for the token to expire
        return httpx.ConnectError("connection refused")

    fake.fail("/auth/refresh", slow_refusal)
    assert driver(fake, store, RetryPolicy())()["email"] == fake.email
    assert (fake.stats["transport_faults"], fake.stats["rotations"]) == (1, 1)
    assert len(clock.sleeps) == 1
    new = store.load()
    assert new is not None and new.refresh_token != old.refresh_token
    assert fake.auth_headers == [f"Bearer {new.access_token}"]


def test_early_refresh_failure_keeps_the_working_token_without_waiting(
    fake: FakeGatehouse, clock: FakeClock, driver: Callable[..., Call]
) -> None:
    """An early refresh failing while the token still works is not retried: the request goes on."""
    store = logged_in(fake)
    old = store.load()
    assert old is not None
    clock.advance(900 - 20)
    fake.fail("/auth/refresh", httpx.ConnectError("connection refused"))
    assert driver(fake, store, RetryPolicy())()["email"] == fake.email
    assert (clock.sleeps, store.load()) == ([], old)
    assert fake.auth_headers[-1] == f"Bearer {old.access_token}"


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (httpx.ConnectError("connection refused"), TransportError),
        ((503, "service_unavailable", 1), ServiceUnavailable),
    ],
    ids=["connect-error", "503"],
)
def test_refresh_gives_up_at_the_time_cap_and_keeps_the_session(
    fake: FakeGatehouse,
    clock: FakeClock,
    expire: Any,
    driver: Callable[..., Call],
    fault: Fault,
    error: type[Exception],
) -> None:
    """A refresh failing past the time cap raises a typed error; the stored session stays."""
    store = logged_in(fake)
    expire(store)
    before = store.load()
    policy = RetryPolicy(max_attempts=1000, backoff=1.0, max_backoff=4.0, budget=20.0)
    fake.fail("/auth/refresh", *[fault] * 1000)
    started = clock.monotonic()
    with pytest.raises(error) as caught:
        driver(fake, store, policy)()
    assert clock.monotonic() - started <= policy.budget
    assert 5 <= len(clock.sleeps) < 20  # it kept trying until the cap, not up to max_attempts
    assert not isinstance(caught.value, SessionExpired)
    assert store.load() == before  # nothing was cleared: a later call can still refresh
    fake.faults.clear()
    assert driver(fake, store, policy)()["email"] == fake.email
    assert fake.stats["rotations"] == 1


@pytest.mark.parametrize(
    "code", ["refresh_invalid", "refresh_expired", "refresh_reused", "session_revoked"]
)
def test_session_ending_refresh_answer_is_final_at_once(
    fake: FakeGatehouse, clock: FakeClock, expire: Any, driver: Callable[..., Call], code: str
) -> None:
    """A refresh answered refresh_* or session_revoked is final: SessionExpired, store cleared."""
    store = logged_in(fake)
    expire(store)
    fake.fail("/auth/refresh", (401, code), (503, "service_unavailable"))
    with pytest.raises(SessionExpired) as caught:
        driver(fake, store, RetryPolicy())()
    assert (caught.value.status, caught.value.code) == (401, code)
    assert (store.load(), clock.sleeps, fake.stats["refresh_calls"]) == (None, [], 1)
