"""What the console's Operations page reads: recent client errors, /metrics by cookie session."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests._abuse_helpers import browser, cookie_login
from tests.conftest import asgi_client, bearer, create_user, login

pytestmark = [pytest.mark.asyncio,
              pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)]


@pytest.fixture
def ops_app(make_app: Callable[..., Any]) -> Any:
    return make_app(GATEHOUSE_CLIENT_ERRORS_RATE_LIMIT="1000/minute")


async def test_recent_client_errors_are_listed_newest_first_without_query(ops_app: Any) -> None:
    """An ops:read caller sees the reports newest first, page URLs without query or fragment."""
    await create_user(ops_app.state.ctx, "ops@example.com", ["operator"])
    async with asgi_client(ops_app) as client:
        for n in range(3):
            r = await client.post("/api/v1/client-errors", json={
                "message": f"boom {n}", "url": f"http://127.0.0.1:8000/console/account?token=s{n}#token=t",
                "request_id": f"req-{n}"})
            assert r.status_code == 202
        tokens = await login(client, "ops@example.com")
        r = await client.get("/api/v1/ops/client-errors", headers=bearer(tokens))
    assert r.status_code == 200
    items = r.json()["items"]
    assert [i["message"] for i in items] == ["boom 2", "boom 1", "boom 0"]
    assert items[0]["url"] == "http://127.0.0.1:8000/console/account"
    assert items[0]["request_id"] == "req-2"
    assert items[0]["at"].endswith("Z")
    assert r.json()["next_cursor"] is None


async def test_only_the_last_fifty_reports_are_kept(ops_app: Any) -> None:
    """The buffer holds the 50 newest reports; older ones fall off."""
    await create_user(ops_app.state.ctx, "root@example.com", ["admin"])
    async with asgi_client(ops_app) as client:
        for n in range(55):
            await client.post("/api/v1/client-errors", json={"message": f"e{n}"})
        tokens = await login(client, "root@example.com")
        r = await client.get("/api/v1/ops/client-errors", headers=bearer(tokens))
        items = r.json()["items"]
    assert len(items) == 50
    assert items[0]["message"] == "e54"
    assert items[-1]["message"] == "e5"


async def test_client_errors_need_ops_read(ops_app: Any) -> None:
    """A plain user gets 403 forbidden and an anonymous caller 401, never the reports."""
    await create_user(ops_app.state.ctx)
    async with asgi_client(ops_app) as client:
        await client.post("/api/v1/client-errors", json={"message": "private detail"})
        anonymous = await client.get("/api/v1/ops/client-errors")
        tokens = await login(client)
        user = await client.get("/api/v1/ops/client-errors", headers=bearer(tokens))
    assert anonymous.status_code == 401
    assert user.status_code == 403
    assert user.json()["code"] == "forbidden"
    assert "private detail" not in anonymous.text + user.text


async def test_metrics_accept_a_cookie_session_with_ops_read(ops_app: Any) -> None:
    """The console's cookie session reads /metrics with ops:read; without it, 403."""
    await create_user(ops_app.state.ctx, "ops@example.com", ["operator"])
    await create_user(ops_app.state.ctx, "alice@example.com", ["user"])
    async with asgi_client(ops_app) as client:
        ops_cookies = await cookie_login(client, "ops@example.com")
        client.cookies.clear()
        user_cookies = await cookie_login(client, "alice@example.com")
        client.cookies.clear()
        ok = await client.get("/metrics", headers=browser(ops_cookies))
        refused = await client.get("/metrics", headers=browser(user_cookies))
    assert ok.status_code == 200
    assert "gatehouse_http_requests_total" in ok.text
    assert refused.status_code == 403
