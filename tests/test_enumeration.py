"""Failed logins do not reveal whether an email has an account (API.md §2 invalid_credentials,
§4)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import httpx
import pytest

from tests.conftest import asgi_client, create_user

ATTEMPTS = 30


async def _timed_failure(client: httpx.AsyncClient, email: str) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    r = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": "wrong-password-123"}
    )
    return time.perf_counter() - started, r


@pytest.mark.asyncio
async def test_login_timing_does_not_reveal_unknown_email(make_app: Any) -> None:
    """With production argon2 costs, failed logins for a real and an unknown email take the same
    median time and answer alike."""
    app = make_app(
        GATEHOUSE_ARGON2_MEMORY_KIB="19456",
        GATEHOUSE_ARGON2_TIME_COST="2",
        LOGIN_MAX_FAILURES="1000",
        GATEHOUSE_RATE_LIMITS="off",
    )
    await create_user(app.state.ctx)
    timings: dict[str, list[float]] = {"alice@example.com": [], "nobody@example.com": []}
    answers: dict[str, set[tuple[Any, ...]]] = {email: set() for email in timings}
    async with asgi_client(app) as client:
        for email in timings:  # warm up both paths (hash pool threads, query caches)
            await _timed_failure(client, email)
        for i in range(ATTEMPTS):
            # Interleaved, alternating which goes first, so drift hits both alike.
            order = list(timings) if i % 2 == 0 else list(reversed(timings))
            for email in order:
                elapsed, r = await _timed_failure(client, email)
                timings[email].append(elapsed)
                body = r.json()
                answers[email].add(
                    (r.status_code, body["code"], body["detail"], tuple(sorted(body)))
                )
    real, unknown = (statistics.median(timings[e]) for e in timings)
    assert abs(real - unknown) / max(real, unknown) < 0.20, (real, unknown)
    assert answers["alice@example.com"] == answers["nobody@example.com"]
    assert len(answers["alice@example.com"]) == 1
    assert next(iter(answers["alice@example.com"]))[:2] == (401, "invalid_credentials")
