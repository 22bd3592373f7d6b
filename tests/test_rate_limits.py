"""Per-client-IP rate limits (API.md §4) with the `limits` library, in process and on Redis."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import httpx
import pytest
import pytest_asyncio
from redis import Redis

from tests._abuse_helpers import metric, metrics_text
from tests.conftest import PASSWORD, REDIS_URL, asgi_client, bearer, create_user, login

METRICS_TOKEN = "metrics-scraper-token-0123456789abcdef"
RATE_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")
PROFILE = "/api/v1/users/profile"
CREDENTIALS = {"email": "alice@example.com", "password": PASSWORD}


def _limits(r: httpx.Response) -> tuple[int, int, int]:
    limit, remaining, reset = (int(r.headers[h]) for h in RATE_HEADERS)
    return limit, remaining, reset


def _assert_rate_limited(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    body = r.json()
    assert (body["code"], body["type"]) == ("rate_limited", "/errors/rate_limited")
    assert r.headers["content-type"] == "application/problem+json"
    assert isinstance(body["retry_after"], int)
    assert 1 <= body["retry_after"] <= 60
    assert r.headers["retry-after"] == str(body["retry_after"])
    _, remaining, reset = _limits(r)
    assert remaining == 0
    assert reset == body["retry_after"]


@pytest.mark.asyncio
async def test_rate_limit_headers_on_every_answer_of_a_limited_route(make_app: Any) -> None:
    """2xx and 401 answers of an API route carry RateLimit-Limit/Remaining/Reset counting down."""
    app = make_app(GATEHOUSE_RATE_LIMIT="5/minute")
    await create_user(app.state.ctx)
    async with asgi_client(app) as client:
        tokens = await login(client)
        ok = await client.get(PROFILE, headers=bearer(tokens))
        denied = await client.get(PROFILE)
    assert ok.status_code == 200
    limit, remaining, reset = _limits(ok)
    assert (limit, remaining) == (5, 4)  # the login did not count against GATEHOUSE_RATE_LIMIT
    assert 1 <= reset <= 60
    assert denied.status_code == 401
    assert _limits(denied)[:2] == (5, 3)


@pytest.mark.asyncio
async def test_malformed_oversized_and_wrong_type_requests_count_and_carry_the_headers(
    make_app: Any,
) -> None:
    """Login answers that fail before the handler (422 bad JSON, 413, 415, unknown route) still
    count against the bucket and carry RateLimit-*, so junk cannot be sent for free.
    """
    app = make_app(GATEHOUSE_AUTH_RATE_LIMIT="4/minute")
    async with asgi_client(app) as client:
        login_url = "/api/v1/auth/login"
        answers = [
            await client.post(login_url, content=b"{not json",
                              headers={"Content-Type": "application/json"}),
            await client.post(login_url, content=b"x" * 70_000,
                              headers={"Content-Type": "application/json"}),
            await client.post(login_url, content=b"email=a", headers={"Content-Type": "text/plain"}),
            await client.post(login_url, json=CREDENTIALS),
            await client.post(login_url, json=CREDENTIALS),
        ]
        unknown = await client.get("/api/v1/no-such-route")
    assert [r.status_code for r in answers] == [422, 413, 415, 401, 429]
    assert [_limits(r)[1] for r in answers] == [3, 2, 1, 0, 0]
    _assert_rate_limited(answers[-1])
    assert unknown.status_code == 404 and _limits(unknown)[0] == 600  # the general API bucket


@pytest.mark.asyncio
async def test_requests_over_the_limit_get_429_with_retry_after(make_app: Any) -> None:
    """The request after the limit is 429 rate_limited with equal Retry-After header and retry_after
    field."""
    app = make_app(GATEHOUSE_RATE_LIMIT="3/minute")
    await create_user(app.state.ctx)
    async with asgi_client(app) as client:
        tokens = await login(client)
        answers = [await client.get(PROFILE, headers=bearer(tokens)) for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert [_limits(r)[1] for r in answers[:3]] == [2, 1, 0]
    _assert_rate_limited(answers[3])


@pytest.mark.asyncio
async def test_login_refresh_and_register_have_their_own_buckets(make_app: Any) -> None:
    """Each of login, refresh and register has its own GATEHOUSE_AUTH_RATE_LIMIT bucket, apart from
    the API bucket."""
    app = make_app(
        GATEHOUSE_AUTH_RATE_LIMIT="2/minute",
        GATEHOUSE_RATE_LIMIT="50/minute",
        GATEHOUSE_SIGNUP="open",
    )
    await create_user(app.state.ctx)
    async with asgi_client(app) as client:
        logins = [await client.post("/api/v1/auth/login", json=CREDENTIALS) for _ in range(3)]
        assert [r.status_code for r in logins] == [200, 200, 429]
        assert _limits(logins[0])[:2] == (2, 1)
        _assert_rate_limited(logins[2])
        refresh_token = logins[1].json()["refresh_token"]
        refreshes = []
        for _ in range(3):
            r = await client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})
            refreshes.append(r)
            if r.status_code == 200:
                refresh_token = r.json()["refresh_token"]
        assert [r.status_code for r in refreshes] == [200, 200, 429]
        registers = [
            await client.post(
                "/api/v1/auth/register",
                json={
                    "email": f"new{i}@example.com",
                    "password": f"another-long-passphrase-{i}x",
                    "name": "N",
                },
            )
            for i in range(3)
        ]
        assert [r.status_code for r in registers] == [201, 201, 429]
        profile = await client.get(PROFILE, headers=bearer(logins[0].json()))
    assert profile.status_code == 200
    assert _limits(profile)[:2] == (
        50,
        49,
    )  # nine auth requests, none counted against the API bucket


@pytest.mark.asyncio
async def test_exhausted_api_bucket_does_not_block_login(make_app: Any) -> None:
    """Running out of GATEHOUSE_RATE_LIMIT leaves login, which has its own bucket, working."""
    app = make_app(GATEHOUSE_RATE_LIMIT="2/minute")
    await create_user(app.state.ctx)
    async with asgi_client(app) as client:
        for _ in range(2):
            assert (await client.get(PROFILE)).status_code == 401
        _assert_rate_limited(await client.get(PROFILE))
        assert (await client.post("/api/v1/auth/login", json=CREDENTIALS)).status_code == 200


@pytest.mark.asyncio
async def test_each_client_ip_has_its_own_bucket(make_app: Any) -> None:
    """One IP running out of requests does not affect another IP."""
    app = make_app(GATEHOUSE_RATE_LIMIT="2/minute")
    async with (
        asgi_client(app, client_ip="10.0.0.1") as first,
        asgi_client(app, client_ip="10.0.0.2") as second,
    ):
        for _ in range(2):
            await first.get(PROFILE)
        _assert_rate_limited(await first.get(PROFILE))
        r = await second.get(PROFILE)
        assert r.status_code == 401
        assert _limits(r)[1] == 1


@pytest.mark.asyncio
async def test_ipv6_clients_share_a_bucket_per_64_prefix(make_app: Any) -> None:
    """Addresses of one IPv6 /64 (one subscriber) share a bucket, so rotating through it buys
    nothing; another /64 has its own, and an IPv4-mapped address counts as the IPv4 one."""
    app = make_app(GATEHOUSE_RATE_LIMIT="2/minute")
    async with (
        asgi_client(app, client_ip="2001:db8:1:2::1") as first,
        asgi_client(app, client_ip="2001:db8:1:2:ffff:ffff:ffff:fffe") as same_64,
        asgi_client(app, client_ip="2001:db8:1:3::1") as next_64,
        asgi_client(app, client_ip="10.0.0.1") as ipv4,
        asgi_client(app, client_ip="::ffff:10.0.0.1") as mapped,
    ):
        assert (await first.get(PROFILE)).status_code == 401
        assert (await same_64.get(PROFILE)).status_code == 401
        _assert_rate_limited(await first.get(PROFILE))
        _assert_rate_limited(await same_64.get(PROFILE))
        r = await next_64.get(PROFILE)
        assert (r.status_code, _limits(r)[1]) == (401, 1)
        assert (await ipv4.get(PROFILE)).status_code == 401
        assert (await mapped.get(PROFILE)).status_code == 401
        _assert_rate_limited(await mapped.get(PROFILE))


@pytest.mark.asyncio
async def test_ipv6_login_bucket_counts_per_64_and_logs_keep_the_full_address(
    make_app: Any,
) -> None:
    """The login bucket (GATEHOUSE_AUTH_RATE_LIMIT) counts an IPv6 /64 as one client too, while
    the session records the client's full address."""
    app = make_app(GATEHOUSE_AUTH_RATE_LIMIT="2/minute")
    await create_user(app.state.ctx)
    peers = [f"2001:db8:5:6::{i}" for i in range(1, 4)]
    clients = [asgi_client(app, client_ip=peer) for peer in peers]
    try:
        answers = [await c.post("/api/v1/auth/login", json=CREDENTIALS) for c in clients]
        assert [r.status_code for r in answers] == [200, 200, 429]
        _assert_rate_limited(answers[2])
        mine = bearer(answers[1].json())
        sessions = await clients[0].get("/api/v1/auth/sessions", headers=mine)
    finally:
        for c in clients:
            await c.aclose()
    assert sorted(s["ip"] for s in sessions.json()["items"]) == peers[:2]


@pytest.mark.asyncio
async def test_spoofed_forwarded_for_is_ignored_by_default(make_app: Any) -> None:
    """Without GATEHOUSE_TRUSTED_PROXIES a client cannot escape its bucket with X-Forwarded-For."""
    app = make_app(GATEHOUSE_RATE_LIMIT="2/minute")
    async with asgi_client(app, client_ip="127.0.0.1") as client:
        answers = [
            await client.get(PROFILE, headers={"X-Forwarded-For": f"198.51.100.{i}"})
            for i in range(3)
        ]
    assert [r.status_code for r in answers] == [401, 401, 429]


@pytest.mark.asyncio
async def test_forwarded_for_is_honoured_only_from_trusted_proxies(make_app: Any) -> None:
    """X-Forwarded-For picks the bucket only when the socket peer is a trusted proxy."""
    app = make_app(GATEHOUSE_RATE_LIMIT="2/minute", GATEHOUSE_TRUSTED_PROXIES="10.9.0.0/16")
    async with (
        asgi_client(app, client_ip="10.9.0.5") as proxy,
        asgi_client(app, client_ip="192.0.2.50") as outsider,
    ):
        for _ in range(2):
            await proxy.get(PROFILE, headers={"X-Forwarded-For": "203.0.113.7"})
        _assert_rate_limited(await proxy.get(PROFILE, headers={"X-Forwarded-For": "203.0.113.7"}))
        # Another client behind the same proxy has its own bucket.
        assert (
            await proxy.get(PROFILE, headers={"X-Forwarded-For": "203.0.113.8"})
        ).status_code == 401
        # An untrusted peer's X-Forwarded-For is ignored: all its requests share its own bucket.
        spoofed = [
            await outsider.get(PROFILE, headers={"X-Forwarded-For": f"203.0.113.{100 + i}"})
            for i in range(3)
        ]
        assert [r.status_code for r in spoofed] == [401, 401, 429]


@pytest.mark.asyncio
async def test_client_cannot_escape_its_bucket_by_prepending_forwarded_for_hops(
    make_app: Any,
) -> None:
    """Behind a trusted proxy the client is the nearest untrusted hop, so forged left-most hops
    change nothing."""
    app = make_app(GATEHOUSE_RATE_LIMIT="2/minute", GATEHOUSE_TRUSTED_PROXIES="10.9.0.5")
    async with asgi_client(app, client_ip="10.9.0.5") as proxy:
        answers = [
            await proxy.get(PROFILE, headers={"X-Forwarded-For": f"1.1.1.{i}, 203.0.113.7"})
            for i in range(3)
        ]
        # Two header lines (the client's forged one, then the proxy's) count as one list.
        split = await proxy.get(
            PROFILE, headers=[("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-For", "203.0.113.7")]
        )
    assert [r.status_code for r in answers] == [401, 401, 429]
    assert split.status_code == 429


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded", "expected"),
    [
        ("", "127.0.0.1", ["203.0.113.9"], "127.0.0.1"),
        ("10.9.0.5", "192.0.2.1", ["203.0.113.9"], "192.0.2.1"),
        ("10.9.0.5", "10.9.0.5", ["1.1.1.1, 203.0.113.9"], "203.0.113.9"),
        ("10.9.0.0/16", "10.9.0.5", ["1.2.3.4", "203.0.113.9", "10.9.0.6"], "203.0.113.9"),
        ("10.9.0.0/16", "::ffff:10.9.0.5", ["203.0.113.9"], "203.0.113.9"),
        ("10.9.0.5", "10.9.0.5", ["2001:DB8:0:0::1"], "2001:db8::1"),
        ("10.9.0.5", "10.9.0.5", ["not-an-ip"], "10.9.0.5"),
    ],
)
async def test_client_ip_that_sessions_record_follows_trusted_proxy_rules(
    make_app: Any, trusted: str, peer: str, forwarded: list[str], expected: str
) -> None:
    """The client IP (the one sessions, audit and buckets use) is the nearest untrusted X-Forwarded-
    For hop only behind trusted proxies."""
    app = make_app(GATEHOUSE_TRUSTED_PROXIES=trusted)
    await create_user(app.state.ctx)
    async with asgi_client(app, client_ip=peer) as client:
        r = await client.post(
            "/api/v1/auth/login",
            json=CREDENTIALS,
            headers=[("X-Forwarded-For", hop) for hop in forwarded],
        )
        assert r.status_code == 200, r.text
        sessions = await client.get("/api/v1/auth/sessions", headers=bearer(r.json()))
    assert [s["ip"] for s in sessions.json()["items"]] == [expected]


@pytest.mark.asyncio
async def test_rate_limits_off_disables_limits_but_not_login_throttling(make_app: Any) -> None:
    """GATEHOUSE_RATE_LIMITS=off removes 429 rate_limited and the headers, while login throttling
    still answers."""
    app = make_app(
        GATEHOUSE_RATE_LIMITS="off",
        GATEHOUSE_RATE_LIMIT="1/minute",
        GATEHOUSE_AUTH_RATE_LIMIT="1/minute",
        LOGIN_MAX_FAILURES="2",
    )
    await create_user(app.state.ctx)
    async with asgi_client(app) as client:
        tokens = await login(client)
        answers = [await client.get(PROFILE, headers=bearer(tokens)) for _ in range(5)]
        answers += [await client.post("/api/v1/auth/login", json=CREDENTIALS) for _ in range(3)]
        assert {r.status_code for r in answers} == {200}
        assert all("ratelimit-limit" not in r.headers for r in answers)
        wrong = {"email": "alice@example.com", "password": "wrong password!"}
        codes = [
            (await client.post("/api/v1/auth/login", json=wrong)).status_code for _ in range(3)
        ]
    assert codes == [401, 401, 429]


@pytest.mark.asyncio
async def test_client_errors_endpoint_has_its_own_limit(make_app: Any) -> None:
    """POST /client-errors is limited by GATEHOUSE_CLIENT_ERRORS_RATE_LIMIT apart from the API
    bucket."""
    app = make_app(GATEHOUSE_CLIENT_ERRORS_RATE_LIMIT="2/minute", GATEHOUSE_RATE_LIMIT="10/minute")
    async with asgi_client(app) as client:
        answers = [
            await client.post("/api/v1/client-errors", json={"message": f"boom {i}"})
            for i in range(3)
        ]
        api = await client.get(PROFILE)
    assert [r.status_code for r in answers] == [202, 202, 429]
    assert _limits(answers[0])[:2] == (2, 1)
    _assert_rate_limited(answers[2])
    assert _limits(api)[:2] == (10, 9)


@pytest.mark.asyncio
async def test_default_client_errors_limit_stops_a_flood(make_app: Any) -> None:
    """With default settings, a flood of client error reports from one IP is cut off with 429."""
    app = make_app()
    async with asgi_client(app) as client:
        statuses = [
            (await client.post("/api/v1/client-errors", json={"message": "x"})).status_code
            for _ in range(61)
        ]
    assert statuses[0] == 202
    assert statuses[-1] == 429


@pytest.mark.asyncio
async def test_rate_limited_metric_counts_refusals_per_scope(make_app: Any) -> None:
    """gatehouse_rate_limited_total{scope} goes up by one per 429, labelled with the bucket that
    refused."""
    app = make_app(
        GATEHOUSE_RATE_LIMIT="1/minute",
        GATEHOUSE_AUTH_RATE_LIMIT="1/minute",
        GATEHOUSE_METRICS_TOKEN=METRICS_TOKEN,
    )
    await create_user(app.state.ctx)
    async with asgi_client(app) as client:
        before = await metrics_text(client, METRICS_TOKEN)
        for _ in range(3):
            await client.get(PROFILE)
        for _ in range(2):
            await client.post("/api/v1/auth/login", json=CREDENTIALS)
        after = await metrics_text(client, METRICS_TOKEN)
    name = "gatehouse_rate_limited_total"
    assert metric(before, name, scope="api") == 0
    assert metric(after, name, scope="api") == 2
    assert metric(after, name, scope="login") == 1
    assert metric(after, name, scope="refresh") == 0


# -- the shared Redis backend -------------------------------------------------------------


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test Redis database, flushed before and after (a real server; fails when absent)."""
    redis = Redis.from_url(REDIS_URL)
    try:
        redis.flushdb()
    except Exception as exc:
        redis.close()
        pytest.fail(
            f"Redis at {REDIS_URL} is not reachable ({type(exc).__name__}); "
            "start it or set GATEHOUSE_TEST_REDIS_URL"
        )
    yield REDIS_URL
    redis.flushdb()
    redis.close()


@pytest_asyncio.fixture
async def two_instances(make_app: Any, redis_url: str) -> AsyncIterator[tuple[Any, Any]]:
    env = {"REDIS_URL": redis_url, "GATEHOUSE_RATE_LIMIT": "3/minute"}
    yield make_app(**env), make_app(**env)


@pytest.mark.asyncio
async def test_redis_backend_shares_buckets_between_instances(
    two_instances: tuple[Any, Any],
) -> None:
    """On Redis, two app instances count one client's requests in one shared bucket."""
    first, second = two_instances
    async with (
        asgi_client(first, client_ip="10.7.0.1") as a,
        asgi_client(second, client_ip="10.7.0.1") as b,
        asgi_client(second, client_ip="10.7.0.2") as other,
    ):
        answers = [await a.get(PROFILE), await b.get(PROFILE), await a.get(PROFILE)]
        assert [_limits(r)[1] for r in answers] == [2, 1, 0]
        _assert_rate_limited(await b.get(PROFILE))
        assert (await other.get(PROFILE)).status_code == 401
    keys = Redis.from_url(REDIS_URL)
    try:
        stored = cast(list[bytes], keys.keys("gh:LIMITS*"))  # under GATEHOUSE_REDIS_PREFIX
        assert any(b"10.7.0.1" in key for key in stored)
    finally:
        keys.close()


@pytest.mark.asyncio
async def test_unreachable_redis_limits_per_process(make_app: Any) -> None:
    """When the rate limiter's Redis is down (GATEHOUSE_CACHE_FALLBACK=local), the limits are
    still enforced, counted in the process: never a 500, never an unlimited request."""
    app = make_app(REDIS_URL="redis://127.0.0.1:1/0", GATEHOUSE_RATE_LIMIT="2/minute")
    async with asgi_client(app) as client:
        answers = [await client.get(PROFILE) for _ in range(3)]
    assert [r.status_code for r in answers[:2]] == [401, 401]
    assert [_limits(r)[1] for r in answers[:2]] == [1, 0]
    _assert_rate_limited(answers[2])


@pytest.mark.asyncio
async def test_unreachable_redis_with_deny_answers_503_on_login(make_app: Any) -> None:
    """With GATEHOUSE_CACHE_FALLBACK=deny and Redis down, the login route answers 503
    service_unavailable with Retry-After, while other API routes keep answering."""
    app = make_app(REDIS_URL="redis://127.0.0.1:1/0", GATEHOUSE_RETRY_AFTER="7",
                   GATEHOUSE_CACHE_FALLBACK="deny")
    async with asgi_client(app) as client:
        r = await client.post("/api/v1/auth/login",
                              json={"email": "alice@example.com", "password": PASSWORD})
        other = await client.get(PROFILE)
    assert (r.status_code, r.json()["code"]) == (503, "service_unavailable")
    assert (r.headers["retry-after"], r.json()["retry_after"]) == ("7", 7)
    assert other.status_code == 401


@pytest.mark.asyncio
async def test_every_api_operation_is_rate_limited(make_app: Any) -> None:
    """Every documented /api/v1 operation answers with RateLimit-* headers, so no route escapes the
    limits."""
    app = make_app(GATEHOUSE_SIGNUP="open")
    operations = [
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        if path.startswith("/api/v1/")
        for method in item
    ]
    assert len(operations) > 20
    missing = []
    async with asgi_client(app) as client:
        for method, path in operations:
            url = re.sub(r"\{[^}]+\}", "00000000-0000-0000-0000-000000000000", path)
            body: dict[str, Any] | None = {} if method in ("POST", "PUT", "PATCH") else None
            r = await client.request(method, url, json=body)
            if "ratelimit-limit" not in r.headers:
                missing.append(f"{method} {path} -> {r.status_code}")
    assert missing == []
