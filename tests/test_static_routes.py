"""Static paths are looked up in a table before the route scan, with the scan's answers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gatehouse.api import static_routes


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"route": "param", "item_id": item_id}

    @app.get("/items/special")  # shadowed: the scan answers with the route above
    async def special() -> dict[str, str]:
        return {"route": "special"}

    @app.post("/things")
    async def things() -> dict[str, str]:
        return {"route": "things"}

    static_routes.install(app)
    return app


async def _call(app: Any, method: str, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, path)


@pytest.mark.asyncio
async def test_an_earlier_route_that_matches_keeps_the_request() -> None:
    app = _app()
    r = await _call(app, "GET", "/items/special")
    assert r.json() == {"route": "param", "item_id": "special"}
    assert ("GET", "/items/special") not in app.router.middleware_stack.table
    assert ("POST", "/things") in app.router.middleware_stack.table


@pytest.mark.asyncio
async def test_wrong_method_and_unknown_path_answer_as_without_the_table() -> None:
    app = _app()
    assert (await _call(app, "POST", "/things")).json() == {"route": "things"}
    r = await _call(app, "GET", "/things")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert (await _call(app, "GET", "/nothing")).status_code == 404


@pytest.mark.asyncio
async def test_a_route_added_after_install_is_served() -> None:
    app = _app()

    @app.get("/later")
    async def later() -> dict[str, str]:
        return {"route": "later"}

    assert (await _call(app, "GET", "/later")).json() == {"route": "later"}
    assert ("GET", "/later") in app.router.middleware_stack.table


def test_the_gatehouse_hot_paths_are_in_the_table(app: Any) -> None:
    table = app.router.middleware_stack.table
    for path in ("/api/v1/users/profile", "/api/v1/auth/validate", "/healthz"):
        assert ("GET", path) in table
    assert ("POST", "/api/v1/auth/refresh") in table
