"""GATEHOUSE_REDIS_PREFIX (API.md §6): deployments sharing one Redis keep apart (issue 12)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from redis.asyncio import Redis

from gatehouse.settings import SettingsError, load_settings
from tests.conftest import BASE_ENV, REDIS_URL, asgi_client, bearer, create_user, login, run_cli


@pytest.fixture
def backend() -> str:
    """A shared Redis is a multi-instance deployment: PostgreSQL."""
    return "postgresql"


async def _keys(redis: Redis, pattern: str = "*") -> set[str]:
    return {k async for k in redis.scan_iter(match=pattern, count=500)}


@pytest.mark.asyncio
async def test_two_prefixes_on_one_redis_keep_throttles_limits_and_keys_apart(
    make_app: Any,
) -> None:
    """Two deployments on one Redis with different prefixes: a login throttle and a rate limit
    hit through one do not hold on the other, and every key each writes starts with its prefix."""
    run = uuid.uuid4().hex[:8]
    a_prefix, b_prefix = f"a{run}:", f"b{run}:"
    env = {"REDIS_URL": REDIS_URL, "GATEHOUSE_LOGIN_IP_CEILING": 2,
           "GATEHOUSE_AUTH_RATE_LIMIT": "5/minute"}
    app_a = make_app(GATEHOUSE_REDIS_PREFIX=a_prefix, **env)
    app_b = make_app(GATEHOUSE_REDIS_PREFIX=b_prefix, **env)
    await create_user(app_a.state.ctx)
    redis = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        before = await _keys(redis)
        async with asgi_client(app_a) as a, asgi_client(app_b) as b:
            wrong = {"email": "alice@example.com", "password": "wrong-password-123"}
            assert [(await a.post("/api/v1/auth/login", json=wrong)).status_code
                    for _ in range(4)] == [401, 401, 401, 429]
            # B's throttle (the IP is over its ceiling on A) and its login bucket (5/minute,
            # 4 spent on A) know nothing of A's.
            tokens = await login(b)
            assert (await b.post("/api/v1/auth/login", json=wrong)).status_code == 401
            assert (await login(b))["access_token"]
            assert (await a.post("/api/v1/auth/login", json=wrong)).status_code == 429
            # A revocation (logout) and a token check write and read under B's prefix only.
            assert (await b.post("/api/v1/auth/logout", headers=bearer(tokens))).status_code == 204
        written = await _keys(redis) - before
        assert any(k.startswith(f"{a_prefix}LIMITS:") for k in written)
        assert any(k.startswith(f"{b_prefix}rev:") for k in written)
        assert any(k.startswith(f"{a_prefix}li:") for k in written)
        assert written and all(k.startswith((a_prefix, b_prefix)) for k in written), sorted(written)
    finally:
        for prefix in (a_prefix, b_prefix):
            keys = await _keys(redis, f"{prefix}*")
            if keys:
                await redis.delete(*keys)
        await redis.aclose()


@pytest.mark.asyncio
async def test_cache_clear_deletes_only_its_own_prefix(database_url: str) -> None:
    """`gatehouse cache clear` with GATEHOUSE_REDIS_PREFIX deletes the counters under that
    prefix and leaves the same counters of another deployment's prefix in place."""
    run = uuid.uuid4().hex[:8]
    mine, theirs = f"mine{run}:", f"theirs{run}:"
    redis = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        for prefix in (mine, theirs):
            await redis.set(f"{prefix}lf:e:203.0.113.7", "3")
            await redis.set(f"{prefix}LIMITS:LIMITER/login/203.0.113.7/4/1/minute", "4")
        result = run_cli("cache", "clear", env={
            "DATABASE_URL": database_url, "REDIS_URL": REDIS_URL, "GATEHOUSE_REDIS_PREFIX": mine})
        assert result.returncode == 0, result.stderr
        assert "2 key(s) deleted" in result.stdout
        assert await _keys(redis, f"{mine}*") == set()
        assert await _keys(redis, f"{theirs}*") == {
            f"{theirs}lf:e:203.0.113.7", f"{theirs}LIMITS:LIMITER/login/203.0.113.7/4/1/minute"}
    finally:
        for prefix in (mine, theirs):
            keys = await _keys(redis, f"{prefix}*")
            if keys:
                await redis.delete(*keys)
        await redis.aclose()


def test_a_prefix_with_glob_characters_is_refused_in_one_line() -> None:
    """A prefix SCAN MATCH would read as a pattern (`gh*` would match every deployment's keys)
    is refused at start-up with one line naming the variable, so `cache clear` never reaches
    past the deployment's own keys."""
    with pytest.raises(SettingsError) as refused:
        load_settings(**BASE_ENV, REDIS_URL=REDIS_URL, GATEHOUSE_REDIS_PREFIX="gh*")
    assert len(refused.value.lines) == 1
    assert refused.value.lines[0].startswith("GATEHOUSE_REDIS_PREFIX: ")
