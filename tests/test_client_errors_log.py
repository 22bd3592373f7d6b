"""`POST /client-errors` (API.md §4, §9): what a reported page URL leaves in the server's log."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import asgi_client

SECRETS = ("s3cr3t-query-token", "fragment-access-token", "hunter2")


def _client_error_lines(out: str) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    return [line for line in lines if line.get("event") == "client_error"]


@pytest.mark.asyncio
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_reported_url_is_logged_without_query_fragment_or_credentials(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The client_error log line keeps scheme, host and path of the reported page, and none of
    the tokens its query, fragment or userinfo carried."""
    url = ("https://user:hunter2@app.example.com/reset?token=s3cr3t-query-token"
           "#access_token=fragment-access-token")
    async with asgi_client(app) as client:
        r = await client.post("/api/v1/client-errors", json={"message": "boom", "url": url})
        broken = await client.post("/api/v1/client-errors",
                                   json={"message": "boom", "url": "http://[::1?token=hunter2"})
    assert (r.status_code, broken.status_code) == (202, 202)
    out = capsys.readouterr().out
    assert [line["url"] for line in _client_error_lines(out)] == [
        "https://app.example.com/reset", None,
    ]
    assert [s for s in SECRETS if s in out] == []


@pytest.mark.asyncio
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_each_report_is_counted_in_the_client_errors_metric(app: Any, ctx: Any) -> None:
    """Every accepted report adds one to gatehouse_client_errors_total (API.md §7, §9)."""
    async with asgi_client(app) as client:
        for _ in range(3):
            r = await client.post("/api/v1/client-errors", json={"message": "boom"})
            assert r.status_code == 202
    rendered = ctx.metrics.render().decode()
    assert "gatehouse_client_errors_total 3.0" in rendered
