"""Pre-built dependency paths (api/lean_routes.py): which routes get one, and that their
answers are the ones FastAPI's own handler gives, success and every kind of refusal."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from gatehouse.api import lean_routes
from tests._abuse_helpers import create_api_key
from tests.conftest import PASSWORD, asgi_client, bearer, create_user, login

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def _planned(app: Any) -> set[tuple[str, str]]:
    return {(method, route.path) for route in app.router.routes if type(route) is APIRoute
            and lean_routes.plan_for(route) is not None for method in route.methods}


@pytest.mark.asyncio
async def test_routes_with_only_request_inputs_are_planned(make_app: Any) -> None:
    planned = _planned(make_app())
    for hot in (("GET", "/api/v1/users/profile"), ("GET", "/api/v1/auth/validate"),
                ("POST", "/api/v1/auth/logout"), ("GET", "/api/users/profile"),
                ("POST", "/api/v1/auth/login"), ("POST", "/api/v1/auth/refresh"),
                ("PATCH", "/api/v1/users/profile"), ("POST", "/api/auth/login")):
        assert hot in planned
    # A query or a path parameter: FastAPI's handler validates them.
    for kept in (("GET", "/api/v1/admin/users"), ("GET", "/api/v1/auth/sessions"),
                 ("DELETE", "/api/v1/auth/sessions/{session_id}")):
        assert kept not in planned


@pytest.mark.asyncio
async def test_opentelemetry_configured_keeps_fastapis_handler_everywhere(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gatehouse-test")
    app = make_app()
    handlers = {route.app for route in app.router.routes if type(route) is APIRoute}
    assert all(getattr(h, "__module__", "") == "fastapi.routing" for h in handlers)


def _comparable(r: httpx.Response) -> tuple[int, Any, dict[str, str]]:
    body: Any = r.json() if r.content else None
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in ("request_id", "instance")}
    volatile = ("x-request-id", "date", "ratelimit-remaining", "ratelimit-reset")  # per app
    headers = {k: v for k, v in r.headers.items() if k not in volatile}
    return r.status_code, body, headers


@pytest.mark.asyncio
async def test_planned_routes_answer_as_fastapis_handler_does(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    lean = make_app()
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gatehouse-test")  # the same app, FastAPI's handlers
    plain = make_app()
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    await create_user(lean.state.ctx)
    root = await create_user(lean.state.ctx, "root@example.com", ["admin"], name="Root")
    assert root is not None
    async with asgi_client(lean) as a, asgi_client(plain) as b:
        tokens = await login(a)
        admin = bearer(await login(a, "root@example.com"))
        key = await create_api_key(a, admin, ["users:read"])
        await b.get("/readyz")
        cases: list[tuple[str, str, dict[str, str]]] = [
            ("GET", "/api/v1/users/profile", bearer(tokens)),
            ("GET", "/api/users/profile", bearer(tokens)),  # the deprecated alias
            ("GET", "/api/v1/auth/validate", bearer(tokens)),
            ("GET", "/api/v1/users/profile", {}),
            ("GET", "/api/v1/users/profile", {"Authorization": "Bearer not-a-token"}),
            ("GET", "/api/v1/users/profile", {"Authorization": "Basic abc"}),
            ("GET", "/api/v1/users/profile", {"Authorization": f"Bearer {key['key']}"}),
            ("GET", "/api/v1/auth/validate", {"Cookie": "gh_refresh=x"}),
            ("POST", "/api/v1/auth/logout", {"Cookie": f"gh_access={tokens['access_token']}"}),
        ]
        for method, path, headers in cases:
            answers = [await c.request(method, path, headers=headers) for c in (a, b)]
            assert _comparable(answers[0]) == _comparable(answers[1]), (method, path)
            assert answers[0].status_code != 500
        # JSON bodies: the plain case through the plan, every other case FastAPI's own.
        json_type = {"Content-Type": "application/json"}
        wrong = b'{"email": "alice@example.com", "password": "wrong-password-1"}'
        bodies: list[tuple[str, str, dict[str, str], bytes | None]] = [
            ("POST", "/api/v1/auth/login", {}, None),
            ("POST", "/api/v1/auth/login", {}, wrong),  # no content type
            ("POST", "/api/v1/auth/login", json_type, b""),
            ("POST", "/api/v1/auth/login", json_type, b"{bad"),
            ("POST", "/api/v1/auth/login", json_type, b"\xff\xfe"),
            ("POST", "/api/v1/auth/login", json_type, b"[]"),
            ("POST", "/api/v1/auth/login", json_type, b'{"email": "alice@example.com"}'),
            ("POST", "/api/v1/auth/login", json_type,
             b'{"email": "alice@example.com", "password": "x" , "extra": 1}'),
            ("POST", "/api/v1/auth/login", json_type,
             b'{"email": "not-an-email", "password": "wrong-password-1"}'),
            ("POST", "/api/v1/auth/login", json_type, wrong),
            ("POST", "/api/v1/auth/login", {"Content-Type": "application/json; charset=utf-8"},
             wrong),
            ("POST", "/api/v1/auth/login", {"Content-Type": "text/plain"}, wrong),
            ("POST", "/api/v1/auth/login", {"Content-Type": "application/merge-patch+json"},
             wrong),
            ("POST", "/api/v1/auth/refresh", json_type, b"null"),
            ("POST", "/api/v1/auth/refresh", json_type, b"{}"),
            ("POST", "/api/v1/auth/refresh", json_type, b'{"refresh_token": "nope"}'),
            ("POST", "/api/v1/auth/refresh", {"Cookie": "gh_refresh=x.y"}, None),
            # No token: the dependency refuses before the body is looked at.
            ("PATCH", "/api/v1/users/profile", json_type, b'{"name": 5}'),
            ("PATCH", "/api/v1/users/profile", {**json_type, **bearer(tokens)}, b'{"name": 5}'),
            ("PATCH", "/api/v1/users/profile", {**json_type, **bearer(tokens)},
             b'{"name": "Alice B"}'),
        ]
        for method, path, headers, content in bodies:
            answers = [await c.request(method, path, headers=headers, content=content)
                       for c in (a, b)]
            assert _comparable(answers[0]) == _comparable(answers[1]), (method, path, content)
            assert answers[0].status_code != 500, (path, content)
        # Successes: new tokens each time, so the same status, keys and cookie names.
        shapes = []
        for c in (a, b):
            issued = await login(c)
            by_body = await c.post("/api/v1/auth/refresh",
                                   json={"refresh_token": issued["refresh_token"]})
            cookie_login = await c.post(
                "/api/v1/auth/login", headers={"X-Auth-Mode": "cookie",
                                               "Origin": "http://127.0.0.1:8000"},
                json={"email": "alice@example.com", "password": PASSWORD})
            shapes.append([(r.status_code, sorted(r.json()),
                            sorted(k.split("=")[0] for k in r.headers.get_list("set-cookie")))
                           for r in (by_body, cookie_login)])
        assert shapes[0] == shapes[1]
        assert shapes[0][0][0] == shapes[0][1][0] == 200
        # A logout through each: same answer, and the token is refused afterwards by both.
        for c in (a, b):
            session = bearer(await login(c))
            assert (await c.post("/api/v1/auth/logout", headers=session)).status_code == 204
            refused = await c.get("/api/v1/users/profile", headers=session)
            assert (refused.status_code, refused.json()["code"]) == (401, "session_revoked")
