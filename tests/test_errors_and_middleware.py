"""RFC 9457 problem details, request ids, body limits and headers (API.md §1-2)."""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from gatehouse import errors
from gatehouse.api.problem import problem_response
from tests.conftest import PASSWORD, asgi_client, bearer, login

PROBLEM = "application/problem+json"
EXPECTED_STATUS = {
    "token_missing": 401, "token_expired": 401, "token_invalid": 401, "session_revoked": 401,
    "invalid_credentials": 401, "refresh_invalid": 401, "refresh_expired": 401,
    "refresh_reused": 401, "api_key_invalid": 401, "signature_invalid": 401,
    "mfa_required": 401, "mfa_invalid": 401, "mfa_expired": 401, "forbidden": 403,
    "csrf_failed": 403, "account_disabled": 403, "email_unverified": 403, "link_invalid": 400,
    "not_found": 404, "method_not_allowed": 405,
    "conflict": 409, "payload_too_large": 413, "headers_too_large": 431, "bad_request": 400,
    "unsupported_media_type": 415,
    "validation_failed": 422, "rate_limited": 429, "login_throttled": 429, "internal_error": 500,
    "service_unavailable": 503,
}


def all_error_classes() -> list[type[errors.GatehouseError]]:
    return [c for _, c in inspect.getmembers(errors, inspect.isclass)
            if issubclass(c, errors.GatehouseError)]


def instance(cls: type[errors.GatehouseError]) -> errors.GatehouseError:
    if issubclass(cls, errors.TooManyRequests | errors.ServiceUnavailable):
        return cls(7)  # type: ignore[call-arg]
    if issubclass(cls, errors.WeakPassword):
        return cls("Password is too short.")
    if cls.__init__ is not errors.GatehouseError.__init__ and "detail" not in inspect.signature(
            cls.__init__).parameters:
        return cls("value-1")  # an error that carries a value for the caller (mfa_required's token)
    return cls()


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_every_error_class_renders_as_problem_json(cls: type[errors.GatehouseError]) -> None:
    """Each domain error becomes problem+json with type /errors/<code>, its status and the request id."""
    err = instance(cls)
    response = problem_response(err, "req-1")
    body = json.loads(bytes(response.body))
    assert response.headers["content-type"] == PROBLEM
    assert body["type"] == f"/errors/{err.code}"
    assert (body["status"], response.status_code) == (EXPECTED_STATUS[err.code],) * 2
    assert body["code"] == err.code and body["request_id"] == "req-1"
    assert body["title"] and body["detail"]
    if body["status"] in (429, 503):
        assert body["retry_after"] == 7 and response.headers["retry-after"] == "7"
    if body["status"] == 422:
        assert body["errors"] and all({"loc", "msg"} <= set(e) for e in body["errors"])


def test_every_contract_code_has_an_error_class() -> None:
    """The error tree covers every code of API.md §2."""
    assert {c.code for c in all_error_classes()} >= set(EXPECTED_STATUS)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("given", "echoed"),
    [("abc-123_X.y", True), ("a" * 64, True), ("a" * 65, False), ("bad id!", False), ("", False)],
)
async def test_request_id_is_echoed_only_when_well_formed(
    client: httpx.AsyncClient, given: str, echoed: bool
) -> None:
    """X-Request-ID echoes a 1-64 char [A-Za-z0-9._-] value, and is replaced by a fresh id otherwise."""
    r = await client.get("/healthz", headers={"X-Request-ID": given})
    rid = r.headers["x-request-id"]
    if echoed:
        assert rid == given
    else:
        assert rid != given and 1 <= len(rid) <= 64


@pytest.mark.asyncio
async def test_error_body_carries_the_same_request_id_as_the_header(client: httpx.AsyncClient) -> None:
    """The request id in an error body is the one in the response header."""
    r = await client.get("/api/v1/users/profile", headers={"X-Request-ID": "trace-42"})
    assert r.json()["request_id"] == r.headers["x-request-id"] == "trace-42"


@pytest.mark.asyncio
async def test_security_headers_on_every_response(client: httpx.AsyncClient) -> None:
    """nosniff, no-referrer and DENY are on success and error answers; /api answers are no-store."""
    for path in ("/healthz", "/api/v1/users/profile", "/nope"):
        r = await client.get(path)
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-frame-options"] == "DENY"
    r = await client.post("/api/v1/auth/login", json={"email": "a@b.co", "password": "x"})
    assert r.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in r.headers


@pytest.mark.asyncio
async def test_https_public_url_adds_hsts(make_app: Any) -> None:
    """With an https PUBLIC_API_URL every answer carries Strict-Transport-Security."""
    async with asgi_client(make_app(PUBLIC_API_URL="https://auth.example.com")) as c:
        assert "max-age=" in (await c.get("/healthz")).headers["strict-transport-security"]


@pytest.mark.asyncio
async def test_body_over_64_kib_is_413(client: httpx.AsyncClient) -> None:
    """A declared body over 64 KiB is refused with 413 payload_too_large before it is read."""
    big = json.dumps({"email": "a@b.co", "password": "x" * 70_000})
    r = await client.post("/api/v1/auth/login", content=big,
                          headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["code"]) == (413, "payload_too_large")
    assert r.headers["content-type"] == PROBLEM


@pytest.mark.asyncio
async def test_chunked_body_over_64_kib_is_413(client: httpx.AsyncClient) -> None:
    """A chunked body (no Content-Length) is counted as it arrives and refused past 64 KiB."""
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"email": "a@b.co", "password": "'
        for _ in range(20):
            yield b"x" * 4096
        yield b'"}'

    r = await client.post("/api/v1/auth/login", content=chunks(),
                          headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["code"]) == (413, "payload_too_large")


@pytest.mark.asyncio
async def test_non_json_body_is_415(client: httpx.AsyncClient) -> None:
    """A form or text body on a JSON route answers 415 unsupported_media_type."""
    r = await client.post("/api/v1/auth/login", content=b"email=a&password=b",
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert (r.status_code, r.json()["code"]) == (415, "unsupported_media_type")


@pytest.mark.asyncio
@pytest.mark.parametrize("payload", [b"{not json", b'{"email": "a@b.co"', b"[1,2", b'"\xff\xfe"'])
async def test_malformed_json_is_422(client: httpx.AsyncClient, payload: bytes) -> None:
    """Malformed JSON answers 422 validation_failed with a non-empty errors list, never 500."""
    r = await client.post("/api/v1/auth/login", content=payload,
                          headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["code"]) == (422, "validation_failed")
    assert r.json()["errors"]


@pytest.mark.asyncio
async def test_unknown_field_is_422_and_submitted_values_are_not_echoed(client: httpx.AsyncClient) -> None:
    """Unknown fields are refused, and no submitted value (like a password) appears in the answer."""
    secret = "hunter2-super-secret-value"
    r = await client.post("/api/v1/auth/login",
                          json={"email": "a@b.co", "password": secret, "admin": secret})
    assert (r.status_code, r.json()["code"]) == (422, "validation_failed")
    assert {"loc": ["body", "admin"], "msg": "Unknown field."} in r.json()["errors"]
    assert secret not in r.text
    r = await client.post("/api/v1/auth/login", json={"email": 12345678, "password": [secret]})
    assert r.status_code == 422 and secret not in r.text and "12345678" not in r.text


@pytest.mark.asyncio
async def test_nul_characters_are_refused_with_422_on_every_database(
    client: httpx.AsyncClient, alice: Any
) -> None:
    """A U+0000 anywhere in a request body is 422 validation_failed, never a database 500
    (PostgreSQL text cannot store it; schemathesis found this on DELETE /push/subscriptions).
    """
    tokens = await login(client)
    answers = [
        await client.post("/api/v1/auth/login", json={"email": "alice@example.com\x00",
                                                      "password": PASSWORD}),
        await client.patch("/api/v1/users/profile", headers=bearer(tokens), json={"name": "A\x00"}),
        await client.request("DELETE", "/api/v1/push/subscriptions", headers=bearer(tokens),
                             json={"endpoint": "https://push.example/\x00"}),
    ]
    for r in answers:
        assert (r.status_code, r.json()["code"]) == (422, "validation_failed"), r.text
    profile = await client.get("/api/v1/users/profile", headers=bearer(tokens))
    assert profile.json()["name"] == "Alice"


@pytest.mark.asyncio
async def test_unknown_route_and_wrong_method_are_problem_json(client: httpx.AsyncClient) -> None:
    """404 and 405 from routing are problem+json with not_found and method_not_allowed."""
    r = await client.get("/api/v1/does-not-exist")
    assert (r.status_code, r.json()["code"], r.headers["content-type"]) == (404, "not_found", PROBLEM)
    r = await client.get("/api/v1/auth/login")
    assert (r.status_code, r.json()["code"], r.headers["content-type"]) == (
        405, "method_not_allowed", PROBLEM)


@pytest.mark.asyncio
async def test_unhandled_exception_is_500_without_details(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug answers 500 internal_error with no exception text, and the log line has the request id."""
    async def boom() -> None:
        raise RuntimeError("SELECT password_hash FROM users -- secret detail")

    app.add_api_route("/boom", boom)
    from gatehouse.ops.logging import configure_logging

    configure_logging()
    async with asgi_client(app) as c:
        r = await c.get("/boom", headers={"X-Request-ID": "bug-1"})
    assert (r.status_code, r.json()["code"], r.json()["request_id"]) == (500, "internal_error", "bug-1")
    assert "secret detail" not in r.text and "RuntimeError" not in r.text
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    failure = [e for e in logged if e["event"] == "unhandled_exception"]
    assert failure and failure[0]["request_id"] == "bug-1"
    assert "secret detail" not in json.dumps(logged)


@pytest.mark.asyncio
async def test_database_down_answers_503_with_retry_after(make_app: Any, tmp_path: Any) -> None:
    """When the database cannot be reached, requests that need it answer 503 with Retry-After, not 500."""
    app = make_app(DATABASE_URL=f"sqlite:///{tmp_path}/missing-dir/sub/gatehouse.db")
    async with asgi_client(app) as c:
        r = await c.post("/api/v1/auth/login", json={"email": "a@b.co", "password": "whatever-pass"})
    assert (r.status_code, r.json()["code"]) == (503, "service_unavailable")
    assert int(r.headers["retry-after"]) == r.json()["retry_after"] > 0


@pytest.mark.asyncio
async def test_postgresql_down_answers_503(make_app: Any) -> None:
    """A PostgreSQL server that refuses connections makes requests answer 503 service_unavailable."""
    app = make_app(DATABASE_URL="postgresql://postgres@127.0.0.1:1/nowhere")
    async with asgi_client(app) as c:
        r = await c.post("/api/v1/auth/login", json={"email": "a@b.co", "password": "whatever-pass"})
        ready = await c.get("/readyz")
    assert (r.status_code, r.json()["code"]) == (503, "service_unavailable")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"]["ok"] is False


@pytest.mark.asyncio
async def test_readyz_reports_pending_migrations(make_app: Any, tmp_path: Any) -> None:
    """An unmigrated database makes /readyz answer 503 with the migrations check failing."""
    app = make_app(DATABASE_URL=f"sqlite:///{tmp_path}/empty.db")
    async with asgi_client(app) as c:
        r = await c.get("/readyz")
    body = r.json()
    assert r.status_code == 503 and body["status"] == "fail"
    assert body["checks"]["database"]["ok"] is True and body["checks"]["migrations"]["ok"] is False


@pytest.mark.asyncio
async def test_readyz_and_healthz_when_ready(client: httpx.AsyncClient) -> None:
    """A migrated database and a working cache make /readyz answer 200 with every check ok."""
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.status_code == 200
    assert {k: v["ok"] for k, v in r.json()["checks"].items()} == {
        "database": True, "migrations": True, "cache": True}


@pytest.mark.asyncio
async def test_cors_allows_listed_origins_with_credentials_only(make_app: Any) -> None:
    """A listed origin gets its exact origin and credentials allowed; others get no CORS headers."""
    app = make_app(CORS_ORIGINS="https://app.example.com")
    async with asgi_client(app) as c:
        pre = {"Access-Control-Request-Method": "POST"}
        ok = await c.options("/api/v1/auth/login", headers={"Origin": "https://app.example.com", **pre})
        bad = await c.options("/api/v1/auth/login", headers={"Origin": "https://evil.example", **pre})
    assert ok.headers["access-control-allow-origin"] == "https://app.example.com"
    assert ok.headers["access-control-allow-credentials"] == "true"
    assert "access-control-allow-origin" not in bad.headers


@pytest.mark.asyncio
async def test_answers_made_before_the_app_carry_cors_headers(make_app: Any) -> None:
    """413, 415, 429 and 503 reach a listed browser origin with CORS headers, so the app can read
    `retry_after`; a foreign origin still gets none.
    """
    listed = {"Origin": "https://app.example.com", "Content-Type": "application/json"}
    app = make_app(CORS_ORIGINS="https://app.example.com", GATEHOUSE_AUTH_RATE_LIMIT="3/minute")
    async with asgi_client(app) as c:
        url = "/api/v1/auth/login"
        too_big = await c.post(url, content=b"x" * 70_000, headers=listed)
        wrong_type = await c.post(url, content=b"a", headers={**listed, "Content-Type": "text/plain"})
        foreign = await c.post(url, content=b"x" * 70_000,
                               headers={**listed, "Origin": "https://evil.example"})
        limited = await c.post(url, json={}, headers=listed)
    down = make_app(CORS_ORIGINS="https://app.example.com", REDIS_URL="redis://127.0.0.1:1/0",
                    GATEHOUSE_CACHE_FALLBACK="deny")  # login fails closed while Redis is down
    async with asgi_client(down) as c:
        unavailable = await c.post("/api/v1/auth/login", json={}, headers=listed)
    answers = [too_big, wrong_type, limited, unavailable]
    assert [r.status_code for r in answers] == [413, 415, 429, 503]
    for r in answers:
        assert r.headers["access-control-allow-origin"] == "https://app.example.com"
        assert r.headers["access-control-allow-credentials"] == "true"
        assert "retry-after" in r.headers["access-control-expose-headers"].lower()
    assert foreign.status_code == 413 and "access-control-allow-origin" not in foreign.headers


@pytest.mark.asyncio
async def test_metrics_needs_ops_read_or_the_metrics_token(
    make_app: Any, admin: Any, alice: Any
) -> None:
    """/metrics answers 401 without credentials, 403 to a plain user, 200 to an admin or the scrape token."""
    app = make_app(GATEHOUSE_METRICS_TOKEN="scrape-token-0123456789")
    async with asgi_client(app) as c:
        assert (await c.get("/metrics")).status_code == 401
        user = await login(c)
        assert (await c.get("/metrics", headers=bearer(user))).status_code == 403
        root = await login(c, "root@example.com")
        assert (await c.get("/metrics", headers=bearer(root))).status_code == 200
        r = await c.get("/metrics", headers={"Authorization": "Bearer scrape-token-0123456789"})
    assert r.status_code == 200
    for series in ("gatehouse_http_requests_total", "gatehouse_http_request_duration_seconds",
                   "gatehouse_auth_logins_total", "gatehouse_auth_refresh_total",
                   "gatehouse_auth_refresh_duration_seconds", "gatehouse_sessions_revoked_total",
                   "gatehouse_rate_limited_total"):
        assert f"# TYPE {series.removesuffix('_total')}" in r.text
    assert 'route="/api/v1/users/profile"' in r.text or 'route="/api/v1/auth/login"' in r.text


@pytest.mark.asyncio
async def test_metrics_label_routes_by_template_not_raw_path(client: httpx.AsyncClient, admin: Any) -> None:
    """Requests to /admin/users/<id> are counted under the route template, never the raw id."""
    root = await login(client, "root@example.com")
    await client.get("/api/v1/admin/users/0000-not-a-user", headers=bearer(root))
    text = (await client.get("/metrics", headers=bearer(root))).text
    assert 'route="/api/v1/admin/users/{user_id}"' in text
    assert "0000-not-a-user" not in text


@pytest.mark.asyncio
async def test_access_log_line_has_the_contract_fields_and_no_credentials(
    app: Any, alice: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """One JSON line per request with ts, level, event, route, status, code, request_id, user_id, ip; no tokens."""
    from gatehouse.ops.logging import configure_logging

    configure_logging()
    async with asgi_client(app) as c:
        tokens = await login(c)
        await c.get("/api/v1/users/profile", headers={**bearer(tokens), "X-Request-ID": "log-1"})
        await c.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    requests = [x for x in lines if x["event"] == "request"]
    profile = next(x for x in requests if x["request_id"] == "log-1")
    assert {"ts", "level", "event", "method", "route", "path", "status", "code", "duration_ms",
            "request_id", "user_id", "ip"} <= set(profile)
    assert (profile["route"], profile["status"], profile["user_id"], profile["ip"]) == (
        "/api/v1/users/profile", 200, alice.id, "127.0.0.1")
    # RFC 3339 UTC with milliseconds, and the time of the request (to within a few seconds).
    stamp = datetime.strptime(profile["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 5 and len(profile["ts"]) == 24
    dump = json.dumps(lines)
    for secret in (tokens["access_token"], tokens["refresh_token"], "correct-horse"):
        assert secret not in dump


@pytest.mark.asyncio
async def test_cache_down_keeps_validating_tokens(make_app: Any, alice: Any) -> None:
    """With REDIS_URL pointing at a dead Redis, authenticated requests keep working from
    signatures and the database (GATEHOUSE_CACHE_FALLBACK, DESIGN.md "Failure rules"), not 503."""
    app = make_app(REDIS_URL="redis://127.0.0.1:1/0")
    async with asgi_client(app) as c:
        token, _ = app.state.ctx.tokens.issue(user_id=alice.id, session_id="s-1", roles=["user"])
        r = await c.get("/api/v1/auth/validate", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert b"gatehouse_cache_fallback_active 1.0" in app.state.ctx.metrics.render()
