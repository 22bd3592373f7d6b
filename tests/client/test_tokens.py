"""Token expiry comes from the local clock and expires_in, never from the server's clock."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatehouse.client import Client, FileTokenStore, MemoryTokenStore, TokenSet
from gatehouse.client._tokens import expiry_margin, refresh_margin

if TYPE_CHECKING:
    from conftest import FakeClock, FakeGatehouse

BASE = "http://gatehouse.test"


def tokens(expires_in: float = 900.0, obtained_at: float | None = None) -> TokenSet:
    return TokenSet(
        access_token="at",
        refresh_token="rt",
        expires_in=expires_in,
        obtained_at=obtained_at if obtained_at is not None else 0.0,
        session_id="s1",
    )


@pytest.mark.parametrize("jwt_clock_offset", [-86400.0, 86400.0])
def test_server_clock_skew_does_not_cause_refreshes(
    make_fake: type[FakeGatehouse], jwt_clock_offset: float
) -> None:
    """Tokens whose JWT iat/exp are a day off are used for their expires_in, without refreshing."""
    fake = make_fake(jwt_clock_offset=jwt_clock_offset)
    with Client(BASE, transport=fake.transport) as client:
        client.login(fake.email, fake.password)
        for _ in range(10):
            client.profile()
    assert (fake.stats["refresh_calls"], fake.stats["profile"]) == (0, 10)


def test_client_wall_clock_skew_with_a_file_store(
    fake: FakeGatehouse, clock: FakeClock, tmp_path: object
) -> None:
    """A client clock a day ahead of the server writes and reads the file consistently."""
    clock.wall_offset += 86400
    path = tmp_path / "tokens.json"  # type: ignore[operator]
    with Client(BASE, token_store=FileTokenStore(path), transport=fake.transport) as client:
        client.login(fake.email, fake.password)
    for _ in range(5):
        with Client(BASE, token_store=FileTokenStore(path), transport=fake.transport) as client:
            client.profile()
    assert fake.stats["refresh_calls"] == 0


def test_wall_clock_set_back_does_not_make_stored_tokens_younger(clock: FakeClock) -> None:
    """A token read from a store never counts as younger than when it was obtained."""
    stored = tokens(obtained_at=clock.wall() + 3600)  # "obtained in the future"
    assert stored.remaining() == pytest.approx(900.0)
    clock.advance(880)
    assert stored.refresh_due()


def test_tokens_obtained_here_use_the_monotonic_clock(clock: FakeClock) -> None:
    """Tokens this process obtained age by the monotonic clock even if the wall clock jumps."""
    pair = {"access_token": "at", "refresh_token": "rt", "expires_in": 900}
    fresh = TokenSet.from_token_pair(pair, sent_wall=clock.wall(), sent_mono=clock.monotonic())
    clock.wall_offset -= 7200  # NTP steps the wall clock two hours back
    clock.advance(100)
    assert fresh.remaining() == pytest.approx(800.0)


def test_two_second_tokens_get_a_margin_that_allows_one_refresh_per_life() -> None:
    """With ACCESS_TOKEN_TTL=2 the refresh margin is 0.4 s and the expiry margin 0.1 s."""
    assert (refresh_margin(2.0), expiry_margin(2.0)) == pytest.approx((0.4, 0.1))
    assert (refresh_margin(900.0), expiry_margin(900.0)) == (30.0, 1.0)


@given(lifetime=st.floats(min_value=0.01, max_value=1e7))
def test_margins_are_ordered_and_inside_the_lifetime(lifetime: float) -> None:
    """For any lifetime: 0 < expiry margin < refresh margin < lifetime."""
    assert 0 < expiry_margin(lifetime) < refresh_margin(lifetime) < lifetime


def test_refresh_due_and_expired_follow_the_margins(clock: FakeClock) -> None:
    """A 900 s token is fresh until 870 s, due for refresh after, and unusable after 899 s."""
    t = TokenSet.from_token_pair(
        {"access_token": "a", "refresh_token": "r", "expires_in": 900},
        sent_wall=clock.wall(),
        sent_mono=clock.monotonic(),
    )
    states = []
    for age in (869.0, 871.0, 899.5):
        now = clock.monotonic() + age
        states.append((t.refresh_due(now), t.expired(now)))
    assert states == [(False, False), (True, False), (True, True)]


def test_repr_hides_token_values() -> None:
    """repr() of a token set never shows the access or refresh token."""
    text = repr(
        TokenSet(access_token="SECRET-A", refresh_token="SECRET-R", expires_in=9, obtained_at=1)
    )
    assert "SECRET" not in text and "expires_in=9" in text


def test_dict_round_trip_and_validation() -> None:
    """to_dict/from_dict round-trip; malformed data raises ValueError."""
    original = TokenSet(
        access_token="a",
        refresh_token="r",
        expires_in=60,
        obtained_at=123.5,
        refresh_expires_in=3600,
        session_id="s",
        user={"email": "ada@example.com"},
    )
    assert TokenSet.from_dict(original.to_dict()) == original
    for broken in (
        {},
        {**original.to_dict(), "expires_in": "60"},
        {**original.to_dict(), "obtained_at": None},
    ):
        with pytest.raises(ValueError):
            TokenSet.from_dict(broken)
    with pytest.raises(ValueError):
        TokenSet(access_token="a", refresh_token="r", expires_in=0, obtained_at=0)


def test_memory_store_keeps_password_out_of_tokens(fake: FakeGatehouse) -> None:
    """Only tokens and the user are stored after login; the password never is."""
    store = MemoryTokenStore()
    with Client(BASE, token_store=store, transport=fake.transport) as client:
        client.login(fake.email, fake.password)
    saved = store.load()
    assert saved is not None and fake.password not in str(saved.to_dict())
