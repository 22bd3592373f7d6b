"""Optional Sentry (API.md §6 SENTRY_DSN, SENTRY_ENVIRONMENT), redacted like the logs.

A real HTTP server on a free loopback port plays Sentry (DSN `http://public@127.0.0.1:PORT/1`)
and records every envelope the SDK sends.
"""

from __future__ import annotations

import gzip
import itertools
import json
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from gatehouse.ops import sentry
from tests.conftest import PASSWORD, asgi_client, create_user, login


class FakeSentry:
    """Accepts envelopes on /api/1/envelope/ and keeps their events and raw text."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                elif encoding == "br":
                    import brotli  # type: ignore[import-not-found]

                    body = brotli.decompress(body)
                text = body.decode("utf-8", "replace")
                fake.raw.append(text)
                items = []
                for line in text.splitlines():
                    try:
                        items.append(json.loads(line))
                    except ValueError:
                        continue
                for header, payload in itertools.pairwise(items):
                    if isinstance(header, dict) and header.get("type") == "event":
                        fake.events.append(payload)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.dsn = f"http://public@127.0.0.1:{self.server.server_address[1]}/1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, seconds: float = 10.0) -> list[dict[str, Any]]:
        sentry.flush()
        deadline = time.monotonic() + seconds
        while len(self.events) < count:
            assert time.monotonic() < deadline, f"{len(self.events)} event(s) arrived"
            time.sleep(0.05)
        return self.events

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_sentry() -> Iterator[FakeSentry]:
    server = FakeSentry()
    yield server
    sentry.shutdown()
    server.close()


def tags_of(event: dict[str, Any]) -> dict[str, str]:
    tags = event.get("tags") or {}
    return dict(tags) if isinstance(tags, dict) else {k: v for k, v in tags}


@pytest.mark.asyncio
async def test_an_unhandled_error_arrives_with_request_id_and_no_credentials(
    make_app: Any, fake_sentry: FakeSentry
) -> None:
    """A route that raises reaches Sentry with the environment and the request id, without
    the Authorization header, cookie values or the query string."""
    app = make_app(SENTRY_DSN=fake_sentry.dsn, SENTRY_ENVIRONMENT="staging")

    @app.get("/api/v1/test-only-boom")
    async def boom() -> None:
        raise RuntimeError("kaboom")

    await create_user(app.state.ctx)
    async with asgi_client(app) as client:
        tokens = await login(client)
        r = await client.get(
            "/api/v1/test-only-boom", params={"token": "query-secret-123"},
            headers={"Authorization": f"Bearer {tokens['access_token']}",
                     "Cookie": f"gh_refresh={tokens['refresh_token']}; other=cookie-secret-9",
                     "X-API-Key": "gh_key_secret_abc", "X-Request-ID": "req-sentry-test-1"})
    assert r.status_code == 500
    assert r.json()["request_id"] == "req-sentry-test-1"
    [event] = fake_sentry.wait_for(1)
    assert event["environment"] == "staging"
    assert tags_of(event)["request_id"] == "req-sentry-test-1"
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    raw = "\n".join(fake_sentry.raw)
    for secret in (tokens["access_token"], tokens["refresh_token"], "cookie-secret-9",
                   "gh_key_secret_abc", "query-secret-123", PASSWORD):
        assert secret not in raw


@pytest.mark.asyncio
async def test_a_browser_error_report_is_forwarded_as_a_message(
    make_app: Any, fake_sentry: FakeSentry
) -> None:
    """POST /client-errors reaches Sentry as a message tagged `browser`, page query cut off."""
    app = make_app(SENTRY_DSN=fake_sentry.dsn)
    async with asgi_client(app) as client:
        r = await client.post("/api/v1/client-errors", json={
            "message": "TypeError: x is undefined",
            "url": "https://app.example.com/console/reset-password?token=reset-secret-77#frag",
            "stack": "at f (https://app.example.com/x.js?sig=stack-secret-5:1:2)",
            "request_id": "browser-req-1",
        })
    assert r.status_code == 202
    [event] = fake_sentry.wait_for(1)
    text = event.get("message") or (event.get("logentry") or {}).get("message")
    assert "TypeError: x is undefined" in text
    tags = tags_of(event)
    assert tags["source"] == "browser" and tags["reported_request_id"] == "browser-req-1"
    assert event["contexts"]["client_error"]["url"] == "https://app.example.com/console/reset-password"
    raw = "\n".join(fake_sentry.raw)
    assert "reset-secret-77" not in raw and "stack-secret-5" not in raw


def test_before_send_redacts_headers_cookies_query_and_secret_fields() -> None:
    """The redaction applies to whatever the SDK collected, as the logs' does."""
    event = {"request": {
        "url": "https://h/api/v1/x?token=abc", "query_string": "token=abc",
        "headers": {"Authorization": "Bearer t", "X-Signature": "s", "X-CSRF-Token": "c",
                    "Cookie": "a=b", "X-API-Key": "k", "Accept": "json"},
        "cookies": {"gh_refresh": "r"},
        "data": {"password": "p", "refresh_token": "r", "client_secret": "s", "code": "123456",
                 "email": "a@example.com"},
    }}
    out = sentry.before_send(event, {})["request"]
    assert out["url"] == "https://h/api/v1/x" and out["query_string"] == "[redacted]"
    assert {k: v for k, v in out["headers"].items() if v != "[redacted]"} == {"Accept": "json"}
    assert out["cookies"] == "[redacted]"
    assert out["data"] == {"password": "[redacted]", "refresh_token": "[redacted]",
                           "client_secret": "[redacted]", "code": "[redacted]",
                           "email": "a@example.com"}
