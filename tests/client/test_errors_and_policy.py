"""Problem details become typed errors; the retry schedule obeys its policy."""

from __future__ import annotations

import json
import pickle
from typing import TYPE_CHECKING

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatehouse.client import (
    ApiError,
    Forbidden,
    InvalidCredentials,
    NotAuthenticated,
    RateLimited,
    RetryPolicy,
    ServiceUnavailable,
    SessionExpired,
)
from gatehouse.client._problem import error_from_response, parse_retry_after
from gatehouse.client._retry import RetrySchedule

if TYPE_CHECKING:
    from conftest import FakeClock

# Every status and code of API.md §2 and the exception it must become.
CONTRACT = [
    (401, "token_missing", NotAuthenticated),
    (401, "token_expired", NotAuthenticated),
    (401, "token_invalid", NotAuthenticated),
    (401, "session_revoked", SessionExpired),
    (401, "invalid_credentials", InvalidCredentials),
    (401, "refresh_invalid", SessionExpired),
    (401, "refresh_expired", SessionExpired),
    (401, "refresh_reused", SessionExpired),
    (401, "api_key_invalid", NotAuthenticated),
    (401, "signature_invalid", NotAuthenticated),
    (403, "forbidden", Forbidden),
    (403, "csrf_failed", Forbidden),
    (403, "account_disabled", Forbidden),
    (404, "not_found", ApiError),
    (409, "conflict", ApiError),
    (422, "validation_failed", ApiError),
    (429, "rate_limited", RateLimited),
    (429, "login_throttled", RateLimited),
    (500, "internal_error", ApiError),
    (503, "service_unavailable", ServiceUnavailable),
]


def problem_response(status: int, code: str, **extra: object) -> httpx.Response:
    body = {"type": f"/errors/{code}", "status": status, "code": code, "detail": "d"}
    body.update(extra)
    return httpx.Response(
        status,
        headers={"content-type": "application/problem+json", "x-request-id": "hdr-id"},
        content=json.dumps(body).encode(),
    )


@pytest.mark.parametrize(("status", "code", "expected"), CONTRACT)
def test_each_contract_code_maps_to_its_exception(
    status: int, code: str, expected: type[ApiError]
) -> None:
    """Every API.md error code becomes exactly the documented exception class, with its fields."""
    error = error_from_response(problem_response(status, code, request_id="body-id"))
    assert (type(error), error.status, error.code, error.detail, error.request_id) == (
        expected,
        status,
        code,
        "d",
        "body-id",
    )


def test_only_session_over_codes_are_session_expired() -> None:
    """SessionExpired is raised for exactly refresh_invalid/expired/reused and session_revoked."""
    ending = {code for _, code, cls in CONTRACT if cls is SessionExpired}
    assert ending == {"refresh_invalid", "refresh_expired", "refresh_reused", "session_revoked"}


def test_non_json_error_body_still_gives_a_typed_error() -> None:
    """A proxy's HTML 502 becomes ServiceUnavailable, code http_502, with the header request id."""
    response = httpx.Response(502, headers={"x-request-id": "abc"}, content=b"<html>bad</html>")
    error = error_from_response(response)
    assert (type(error), error.code, error.detail, error.request_id) == (
        ServiceUnavailable,
        "http_502",
        "Bad Gateway",
        "abc",
    )


def test_retry_after_from_header_or_body() -> None:
    """retry_after comes from the Retry-After header, else from the body's retry_after."""
    with_header = problem_response(429, "rate_limited")
    with_header.headers["retry-after"] = "7"
    assert error_from_response(with_header).retry_after == 7.0
    assert error_from_response(problem_response(503, "x", retry_after=3)).retry_after == 3.0


def test_retry_after_http_date_and_garbage(clock: FakeClock) -> None:
    """An HTTP-date Retry-After is converted to seconds; junk is ignored."""
    future = httpx.Headers({"d": "Wed, 21 Oct 2065 07:28:00 GMT"})["d"]
    assert parse_retry_after(future) is not None and parse_retry_after(future) > 0  # type: ignore[operator]
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert (parse_retry_after("soon"), parse_retry_after(None)) == (None, None)


def test_errors_print_and_pickle_with_their_fields() -> None:
    """str() shows status, code and request id; errors survive pickling across processes."""
    error = RateLimited(
        "slow down", status=429, code="rate_limited", request_id="r1", retry_after=2
    )
    assert str(error) == "429 rate_limited: slow down (request_id=r1)"
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301  # our own bytes
    assert (type(copy), copy.status, copy.code, copy.detail, copy.request_id, copy.retry_after) == (
        RateLimited,
        429,
        "rate_limited",
        "slow down",
        "r1",
        2,
    )


def test_exception_tree() -> None:
    """Every SDK error is an ApiError; SessionExpired is a NotAuthenticated."""
    assert issubclass(SessionExpired, NotAuthenticated)
    for cls in (Forbidden, InvalidCredentials, RateLimited, ServiceUnavailable, SessionExpired):
        assert issubclass(cls, ApiError)
    assert not issubclass(InvalidCredentials, SessionExpired)


@given(
    backoff=st.floats(min_value=0.0, max_value=10.0),
    max_backoff=st.floats(min_value=0.0, max_value=60.0),
    retry_number=st.integers(min_value=1, max_value=60),
)
def test_backoff_is_jittered_within_half_to_full_ceiling(
    backoff: float, max_backoff: float, retry_number: int
) -> None:
    """The n-th wait lies in [ceiling/2, ceiling] with ceiling = min(max, backoff * 2**(n-1))."""
    policy = RetryPolicy(backoff=backoff, max_backoff=max_backoff)
    ceiling = min(max_backoff, backoff * 2 ** (retry_number - 1))
    assert ceiling / 2 <= policy.backoff_delay(retry_number) <= ceiling


def test_schedule_stops_at_max_attempts(clock: FakeClock) -> None:
    """A schedule allows max_attempts - 1 retries and then says stop."""
    schedule = RetrySchedule(RetryPolicy(max_attempts=3, budget=1e9), idempotent=True)
    response = httpx.Response(503)
    delays = [schedule.after_response(response) for _ in range(4)]
    assert [d is not None for d in delays] == [True, True, False, False]


def test_schedule_never_retries_success_or_client_errors(clock: FakeClock) -> None:
    """2xx, 4xx other than 429, and 500 are never retried."""
    schedule = RetrySchedule(RetryPolicy(), idempotent=True)
    for status in (200, 400, 401, 403, 404, 409, 422, 500):
        assert schedule.after_response(httpx.Response(status)) is None


def test_policy_rejects_nonsense() -> None:
    """A policy with zero attempts or negative times is refused."""
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(budget=-1)
