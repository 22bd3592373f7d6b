"""Sync Client: retries, backoff, Retry-After and the errors left after them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from gatehouse.client import (
    ApiError,
    Client,
    MemoryTokenStore,
    RateLimited,
    RetryPolicy,
    ServiceUnavailable,
    TransportError,
)

if TYPE_CHECKING:
    from conftest import FakeClock, FakeGatehouse, Fault

BASE = "http://gatehouse.test"


def logged_in(fake: FakeGatehouse, retry: RetryPolicy | None = None) -> Client:
    client = Client(BASE, token_store=MemoryTokenStore(), transport=fake.transport, retry=retry)
    client.login(fake.email, fake.password)
    return client


def test_503_with_retry_after_is_retried_then_succeeds(
    fake: FakeGatehouse, clock: FakeClock
) -> None:
    """A 503 with Retry-After is retried after at least that long, then the call succeeds."""
    fake.fail("/users/profile", (503, "service_unavailable", 2))
    with logged_in(fake) as client:
        assert client.profile()["email"] == fake.email
    assert len(clock.sleeps) == 1
    assert 2.0 <= clock.sleeps[0] <= 2.5
    assert fake.stats["profile"] == 1


def test_429_is_retried_then_raises_rate_limited_with_retry_after(
    fake: FakeGatehouse, clock: FakeClock
) -> None:
    """Persistent 429s are retried up to max_attempts, then raise RateLimited with retry_after."""
    fake.fail("/users/profile", *[(429, "rate_limited", 1)] * 4)
    policy = RetryPolicy(max_attempts=4)
    with logged_in(fake, policy) as client, pytest.raises(RateLimited) as caught:
        client.profile()
    error = caught.value
    assert (error.status, error.code, error.retry_after) == (429, "rate_limited", 1.0)
    assert error.request_id is not None
    assert fake.stats["fault_429"] == 4
    assert len(clock.sleeps) == 3 and all(s >= 1.0 for s in clock.sleeps)


def test_retry_after_beyond_the_budget_fails_at_once(fake: FakeGatehouse, clock: FakeClock) -> None:
    """A Retry-After longer than the remaining budget raises immediately instead of sleeping."""
    fake.fail("/users/profile", (429, "login_throttled", 900))
    with logged_in(fake) as client, pytest.raises(RateLimited) as caught:
        client.profile()
    assert (caught.value.retry_after, clock.sleeps) == (900.0, [])


def test_backoff_grows_exponentially_within_the_budget(
    fake: FakeGatehouse, clock: FakeClock
) -> None:
    """Waits double (with jitter) and stop when the next one would overrun the time budget."""
    # Ceilings 1, 2, 4 end by 7 s at most; the fourth (ceiling 8, at least 4)
    # would end past 7.4 s in every jitter draw, so exactly three waits happen.
    policy = RetryPolicy(max_attempts=10, backoff=1.0, max_backoff=100.0, budget=7.4)
    fake.fail("/users/profile", *[(502, "bad_gateway")] * 10)
    with logged_in(fake, policy) as client, pytest.raises(ServiceUnavailable):
        client.profile()
    ceilings = [1.0, 2.0, 4.0]
    assert len(clock.sleeps) == len(ceilings)
    for slept, ceiling in zip(clock.sleeps, ceilings, strict=True):
        assert ceiling / 2 <= slept <= ceiling
    assert sum(clock.sleeps) <= policy.budget


def test_post_is_not_retried_on_503(fake: FakeGatehouse, clock: FakeClock) -> None:
    """A non-idempotent POST answered 503 is not repeated: it may have had an effect."""
    fake.fail("/echo", (503, "service_unavailable", 1))
    with logged_in(fake) as client, pytest.raises(ServiceUnavailable) as caught:
        client.post("/api/v1/echo", json={})
    assert (caught.value.retry_after, clock.sleeps, fake.stats["fault_503"]) == (1.0, [], 1)


def test_post_marked_idempotent_is_retried(fake: FakeGatehouse, clock: FakeClock) -> None:
    """post(idempotent=True) opts a POST into status-code retries."""
    fake.fail("/echo", (503, "service_unavailable", 1))
    with logged_in(fake) as client:
        assert client.post("/api/v1/echo", json={}, idempotent=True).json() == {"method": "POST"}
    assert len(clock.sleeps) == 1


def test_post_is_retried_after_a_connect_error(fake: FakeGatehouse, clock: FakeClock) -> None:
    """A connect error means the POST never left, so even a POST is retried."""
    fake.fail("/echo", httpx.ConnectError("refused"))
    with logged_in(fake) as client:
        assert client.post("/api/v1/echo", json={}).json() == {"method": "POST"}
    assert fake.stats["echo_POST"] == 1


def test_post_is_not_retried_after_a_read_error(fake: FakeGatehouse, clock: FakeClock) -> None:
    """A POST whose answer was lost is not repeated (the server may have acted on it)."""
    fake.fail("/echo", httpx.ReadError("reset"))
    with logged_in(fake) as client, pytest.raises(TransportError):
        client.post("/api/v1/echo", json={})
    assert (fake.stats["echo_POST"], clock.sleeps) == (0, [])


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_idempotent_methods_retry_after_read_errors(
    fake: FakeGatehouse, clock: FakeClock, method: str
) -> None:
    """GET, PUT and DELETE are retried after a read error and then succeed."""
    fake.fail("/echo", httpx.ReadError("reset"))
    with logged_in(fake) as client:
        assert client.request(method, "/api/v1/echo").json() == {"method": method}
    assert len(clock.sleeps) == 1


def test_retries_can_be_turned_off(fake: FakeGatehouse, clock: FakeClock) -> None:
    """RetryPolicy(max_attempts=1) raises the first transient error without retrying."""
    fake.fail("/users/profile", (503, "service_unavailable", 1))
    with logged_in(fake, RetryPolicy(max_attempts=1)) as client, pytest.raises(ServiceUnavailable):
        client.profile()
    assert clock.sleeps == []


def test_500_is_an_api_error_that_keeps_the_session(fake: FakeGatehouse, clock: FakeClock) -> None:
    """A 500 is not retried, raises the root ApiError with its code, and keeps the session."""
    fake.fail("/users/profile", (500, "internal_error"))
    with logged_in(fake) as client:
        with pytest.raises(ApiError) as caught:
            client.profile()
        assert client.profile()["email"] == fake.email
    assert (type(caught.value), caught.value.status, caught.value.code) == (
        ApiError,
        500,
        "internal_error",
    )
    assert clock.sleeps == []


def test_default_policy_rides_out_a_20_second_outage(fake: FakeGatehouse, clock: FakeClock) -> None:
    """The default policy retries until its 30 s budget, not a count: 20 s down is ridden out."""
    with logged_in(fake) as client:
        back_at = clock.monotonic() + 20.0

        def refused_until_back() -> Fault | None:
            return httpx.ConnectError("refused") if clock.monotonic() < back_at else None

        fake.fail("/users/profile", *[refused_until_back] * 100)
        assert client.profile()["email"] == fake.email
    assert clock.monotonic() >= back_at
    assert sum(clock.sleeps) <= RetryPolicy().budget
