"""Property-based API tests: each OpenAPI operation, fed generated input, stays within the schema.

One test per operation, each on a fresh app and admin session (a generated
logout must not starve the operations after it). The operation list is read
from the app at collection time; schemathesis then loads the schema from the
running app and generates cases with a fixed seed.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.types import Receive, Scope, Send

from gatehouse.app import create_app
from gatehouse.audit.service import Actor
from gatehouse.context import Context
from gatehouse.settings import load_settings
from tests.conftest import BASE_ENV, PASSWORD, create_user

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


def _operations() -> list[str]:
    """Labels ("GET /api/v1/...") of every documented operation, read from the app's schema."""
    settings = load_settings(**BASE_ENV, DATABASE_URL="sqlite:////nonexistent/unused.db")
    ctx = Context.build(settings)  # never connects: only the routes are read
    try:
        spec = create_app(settings, ctx).openapi()
    finally:
        ctx.hasher.close()
    return [
        f"{method.upper()} {path}"
        for path, item in spec["paths"].items()
        for method in item
        if method in HTTP_METHODS
    ]


class _WithoutLifespan:
    """The app minus its lifespan: the fixtures own the services, schemathesis only sends
    requests."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            # Refusing before reading a message is how an ASGI app says "no lifespan".
            raise RuntimeError("lifespan is managed by the test fixtures")
        await self.app(scope, receive, send)


@pytest_asyncio.fixture
async def admin_app(make_app: Any) -> tuple[Any, str]:
    """A fresh app (rate limits off, sign-up open) and an admin's access token on it."""
    app = make_app(GATEHOUSE_RATE_LIMITS="off", GATEHOUSE_SIGNUP="open")
    ctx: Context = app.state.ctx
    await create_user(ctx, "root@example.com", ["admin"], name="Root")
    await create_user(ctx)
    issued = await ctx.sessions.login("root@example.com", PASSWORD, Actor(ip="127.0.0.1"))
    # Requests run on schemathesis' own event loop: hand it an empty connection pool.
    await ctx.engine.dispose()
    return app, issued.access_token


@pytest.mark.parametrize("label", _operations())
def test_operation_answers_conform_to_the_openapi_schema(
    admin_app: tuple[Any, str], label: str
) -> None:
    """No generated request gets a 5xx, an undeclared status, a wrong content type or a body outside
    the schema."""
    app, token = admin_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", _WithoutLifespan(app))
    operation = schema.find_operation_by_label(label)
    assert operation is not None, label

    @given(case=operation.as_strategy())
    @settings(
        max_examples=25,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)

    check()
