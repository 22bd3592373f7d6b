"""Sync Client: login, refresh on 401, and what does and does not end a session."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest

from gatehouse.client import (
    Client,
    Forbidden,
    InvalidCredentials,
    MemoryTokenStore,
    NotAuthenticated,
    RetryPolicy,
    ServiceUnavailable,
    SessionExpired,
    TransportError,
)

if TYPE_CHECKING:
    from conftest import FakeClock, FakeGatehouse

BASE = "http://gatehouse.test"

# Faults that outlast every retry of the default policy.
ATTEMPTS = RetryPolicy().max_attempts


def make_client(fake: FakeGatehouse, store: MemoryTokenStore | None = None) -> Client:
    return Client(BASE, token_store=store or MemoryTokenStore(), transport=fake.transport)


def test_login_stores_tokens_and_profile_sends_bearer(fake: FakeGatehouse) -> None:
    """Login stores the session and later requests carry its access token."""
    store = MemoryTokenStore()
    with make_client(fake, store) as client:
        user = client.login(fake.email, fake.password)
        profile = client.profile()
    tokens = store.load()
    assert tokens is not None
    assert (user["email"], profile["email"]) == (fake.email, fake.email)
    assert fake.auth_headers == [f"Bearer {tokens.access_token}"]
    assert tokens.session_id is not None and tokens.session_id.startswith("s")


def test_login_reuses_a_session_already_in_the_store(fake: FakeGatehouse) -> None:
    """A client whose store already holds tokens uses them without logging in again."""
    store = MemoryTokenStore()
    with make_client(fake, store) as first:
        first.login(fake.email, fake.password)
    with make_client(fake, store) as second:
        user = second.login(fake.email.upper(), fake.password)
        second.profile()
    assert (fake.stats["login"], user["email"]) == (1, fake.email)


def test_login_with_force_or_another_email_logs_in_again(fake: FakeGatehouse) -> None:
    """login(force=True) or a different email makes a new login instead of reusing the store."""
    store = MemoryTokenStore()
    with make_client(fake, store) as client:
        client.login(fake.email, fake.password)
        client.login(fake.email, fake.password, force=True)
        with pytest.raises(InvalidCredentials):
            client.login("bob@example.com", "whatever")
    assert fake.stats["login"] == 3


def test_wrong_password_raises_invalid_credentials_not_session_expired(
    fake: FakeGatehouse,
) -> None:
    """A failed login is InvalidCredentials with the server's code and request id."""
    with make_client(fake) as client, pytest.raises(InvalidCredentials) as caught:
        client.login(fake.email, "wrong")
    error = caught.value
    assert not isinstance(error, SessionExpired)
    assert (error.status, error.code) == (401, "invalid_credentials")
    assert error.request_id is not None and error.request_id.startswith("req-")
    assert error.detail == "fake invalid_credentials"


def test_request_without_login_raises_not_authenticated(fake: FakeGatehouse) -> None:
    """Calling a protected route before logging in raises NotAuthenticated (token_missing)."""
    with make_client(fake) as client, pytest.raises(NotAuthenticated) as caught:
        client.profile()
    assert (caught.value.code, type(caught.value)) == ("token_missing", NotAuthenticated)


def test_token_expired_401_refreshes_once_and_retries_once(fake: FakeGatehouse) -> None:
    """401 token_expired on a fresh-looking token triggers one refresh and one retry."""
    store = MemoryTokenStore()
    with make_client(fake, store) as client:
        client.login(fake.email, fake.password)
        before = store.load()
        fake.reject_all_access_tokens()
        assert client.profile()["email"] == fake.email
    after = store.load()
    assert before is not None and after is not None
    assert (fake.stats["refresh_calls"], fake.stats["answered_401"]) == (1, 1)
    assert after.refresh_token != before.refresh_token
    assert fake.auth_headers[-1] == f"Bearer {after.access_token}"


def test_token_invalid_401_also_refreshes_and_retries(fake: FakeGatehouse) -> None:
    """401 token_invalid is treated like token_expired: refresh, then retry once."""
    store = MemoryTokenStore()
    with make_client(fake, store) as client:
        client.login(fake.email, fake.password)
        fake.access.clear()  # the server no longer knows the token: token_invalid
        assert client.profile()["email"] == fake.email
    assert fake.stats["refresh_calls"] == 1


def test_rejected_again_after_refresh_raises_without_ending_session(fake: FakeGatehouse) -> None:
    """A token refused even after refresh raises NotAuthenticated but keeps the session."""
    store = MemoryTokenStore()
    with make_client(fake, store) as client:
        client.login(fake.email, fake.password)
        fake.reject_every_access_token = True
        with pytest.raises(NotAuthenticated) as caught:
            client.profile()
    assert type(caught.value) is NotAuthenticated
    assert caught.value.code == "token_expired"
    assert (fake.stats["refresh_calls"], fake.stats["answered_401"]) == (1, 2)
    assert store.load() is not None


def test_forbidden_raises_and_keeps_the_session(fake: FakeGatehouse) -> None:
    """403 raises Forbidden and neither clears the store nor refreshes."""
    store = MemoryTokenStore()
    with make_client(fake, store) as client:
        client.login(fake.email, fake.password)
        with pytest.raises(Forbidden) as caught:
            client.get("/api/v1/admin/users")
        assert client.profile()["email"] == fake.email
    assert (caught.value.status, caught.value.code) == (403, "forbidden")
    assert store.load() is not None
    assert fake.stats["refresh_calls"] == 0


@pytest.mark.parametrize("code", ["refresh_reused", "refresh_invalid", "refresh_expired"])
def test_session_ending_refresh_answer_clears_store(
    fake: FakeGatehouse, expire: Any, code: str
) -> None:
    """A refresh answered refresh_reused/invalid/expired ends the session and clears the store."""
    store = MemoryTokenStore()
    with make_client(fake, store) as client:
        client.login(fake.email, fake.password)
        expire(store)
        fake.fail("/auth/refresh", (401, code))
        with pytest.raises(SessionExpired) as caught:
            client.profile()
    assert (caught.value.status, caught.value.code) == (401, code)
    assert store.load() is None
    assert fake.stats["profile"] == 0


def test_real_reuse_after_grace_window_ends_session(fake: FakeGatehouse, expire: Any) -> None:
    """Presenting a rotated refresh token after the grace window ends the session everywhere."""
    store = MemoryTokenStore()
    with make_client(fake, store) as client:
        client.login(fake.email, fake.password)
        stale = store.load()
        assert stale is not None
        expire(store)
        client.profile()  # rotates the refresh token
        fake.grace = -1.0  # the grace window is over
        store.save(stale)  # e.g. a backup restored an old token file
        expire(store)
        with pytest.raises(SessionExpired) as caught:
            client.profile()
    assert caught.value.code == "refresh_reused"
    assert (store.load(), fake.stats["reuse_detected"]) == (None, 1)


def test_session_revoked_on_a_request_ends_session(fake: FakeGatehouse) -> None:
    """401 session_revoked on an API call raises SessionExpired, clears the store, no refresh."""
    store = MemoryTokenStore()
    with make_client(fake, store) as client:
        client.login(fake.email, fake.password)
        fake.revoke_all()
        with pytest.raises(SessionExpired) as caught:
            client.profile()
    assert caught.value.code == "session_revoked"
    assert (store.load(), fake.stats["refresh_calls"]) == (None, 0)


def test_network_failure_raises_transport_error_and_keeps_session(
    fake: FakeGatehouse, no_sleep: list[float]
) -> None:
    """Connection failures are retried, then raise TransportError; the session survives."""
    store = MemoryTokenStore()
    with make_client(fake, store) as client:
        client.login(fake.email, fake.password)
        fake.fail("/users/profile", *[httpx.ConnectError("refused")] * ATTEMPTS)
        with pytest.raises(TransportError) as caught:
            client.profile()
        assert client.profile()["email"] == fake.email
    assert (caught.value.status, caught.value.code, caught.value.request_id) == (
        None,
        "transport_error",
        None,
    )
    assert (len(no_sleep), fake.stats["transport_faults"]) == (ATTEMPTS - 1, ATTEMPTS)
    assert store.load() is not None


def test_transient_refresh_failure_keeps_using_valid_token(
    fake: FakeGatehouse, clock: FakeClock
) -> None:
    """An early refresh that fails transiently leaves the request working with the old token."""
    store = MemoryTokenStore()
    with make_client(fake, store) as client:
        client.login(fake.email, fake.password)
        old = store.load()
        assert old is not None
        clock.advance(900 - 20)  # inside the 30 s refresh margin, still valid
        fake.fail("/auth/refresh", (503, "service_unavailable", 7))
        assert client.profile()["email"] == fake.email
        assert fake.auth_headers[-1] == f"Bearer {old.access_token}"
        client.profile()  # cooling down: no second attempt yet
        calls_during_cooldown = fake.stats["refresh_calls"]
        clock.advance(7.5)
        client.profile()
    new = store.load()
    assert calls_during_cooldown == 1
    assert fake.stats["refresh_calls"] == 2
    assert new is not None and new.refresh_token != old.refresh_token
    assert clock.sleeps == []  # an early refresh never blocks the caller with retries


def test_transient_refresh_failure_with_expired_token_raises_and_keeps_session(
    fake: FakeGatehouse, expire: Any, no_sleep: list[float]
) -> None:
    """If the token is already expired and refresh keeps failing, raise it but keep the session."""
    store = MemoryTokenStore()
    with make_client(fake, store) as client:
        client.login(fake.email, fake.password)
        expire(store)
        fake.fail("/auth/refresh", *[(503, "service_unavailable")] * ATTEMPTS)
        with pytest.raises(ServiceUnavailable) as caught:
            client.profile()
        assert store.load() is not None
        assert client.profile()["email"] == fake.email  # the next try refreshes fine
    assert caught.value.code == "service_unavailable"
    assert fake.stats["refresh_calls"] == ATTEMPTS + 1  # every retry, then the good one
    assert len(no_sleep) == ATTEMPTS - 1


def test_refresh_is_retried_after_a_lost_response(
    fake: FakeGatehouse, expire: Any, no_sleep: list[float]
) -> None:
    """A refresh whose answer was lost is retried and the server's grace answer is accepted."""
    store = MemoryTokenStore()
    with make_client(fake, store) as client:
        client.login(fake.email, fake.password)
        expire(store)

        def lose_answer(request: httpx.Request) -> httpx.Response:
            fake.handle(request)  # the server rotated ...
            raise httpx.ReadError("connection reset")  # ... but the answer never arrived

        transport = client._http._transport
        assert isinstance(transport, httpx.MockTransport)
        original = transport.handler
        transport.handler = lambda r: (
            lose_answer(r) if fake.stats["refresh_calls"] == 0 else original(r)
        )
        assert client.profile()["email"] == fake.email
    assert (fake.stats["rotations"], fake.stats["grace_hits"]) == (1, 1)
    assert len(no_sleep) == 1
