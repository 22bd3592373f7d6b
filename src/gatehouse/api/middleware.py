"""One pure-ASGI middleware for what every request needs (API.md §1 and §7).

Request id, client IP (trusted proxies only), the size of the header section
(431 before any header is parsed), per-IP rate limits, body limits (including
chunked bodies) and media type, security and cache headers,
deprecation headers for unversioned `/api/...` routes, the access-log line,
HTTP metrics, and the last resort for unexpected exceptions (500, or 503 when
the database is down). Answers this middleware makes itself (429, 413, 415,
431, 500, 503) pass through the CORS policy too, so a browser app can read them.
One middleware rather than several `BaseHTTPMiddleware`s keeps the per-request
overhead to a few microseconds.
"""

from __future__ import annotations

import functools
import json
import os
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote_plus

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gatehouse import errors
from gatehouse.api.client_ip import ClientIP, rate_key
from gatehouse.api.problem import problem_response, unexpected_response
from gatehouse.ops.logging import access_line
from gatehouse.ops.metrics import Metrics
from gatehouse.ops.ratelimit import RateLimits, bucket_for

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_PARAMETER_NAME = re.compile(r"^[a-z_]{1,32}$")
_BODY_METHODS = {b"POST", b"PUT", b"PATCH", b"DELETE"}
# RFC 9745: the date the unversioned routes were deprecated (v1 launch), as an SF date.
_DEPRECATION = b"@1795651200"
# What may stay as sent in the successor URI of a Link header: RFC 3986 path characters
# and existing escapes. Everything else (CR, LF, `<`, `>`, spaces, non-ASCII) is %-encoded.
_URI_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


class _BodyTooLarge(Exception):
    pass


def _json_media(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class GatehouseMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        client_ip: ClientIP,
        max_body: int,
        hsts: bool,
        max_headers: int = 16_384,
        retry_after: int,
        rate_limits: RateLimits | None = None,
        cors: CORSMiddleware | None = None,
        user_of: Callable[[dict[str, Any]], str | None] = lambda state: state.get("user_id"),
    ) -> None:
        self.app = app
        self.rate_limits = rate_limits if rate_limits is not None and rate_limits.enabled else None
        self.cors = cors
        self.metrics = metrics
        self.client_ip = client_ip
        self.max_body = max_body
        self.max_headers = max_headers
        self.hsts = hsts
        self.retry_after = retry_after
        self._static = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
        ]
        if hsts:
            self._static.append((b"strict-transport-security", b"max-age=63072000; includeSubDomains"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # Counted before anything reads a header: cookie and header parsers downstream only
        # ever see a bounded section (CVE-2024-7592 made a 20 KB Cookie cost 0.7 s).
        size = 0
        forwarded: list[bytes] = []
        for name, value in scope["headers"]:  # one pass: the size, and X-Forwarded-For lines
            size += len(name) + len(value)
            if name.lower() == b"x-forwarded-for":
                forwarded.append(value)
        oversized = size > self.max_headers
        headers = dict(scope["headers"])  # last value wins; fine for the headers read here
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else os.urandom(16).hex()  # no UUID object
        peer = scope["client"][0] if scope.get("client") else "unknown"
        # Several X-Forwarded-For lines form one list, in order (RFC 9110 §5.3).
        xff = b",".join(forwarded)
        ip = self.client_ip(peer, xff.decode("latin-1") if xff else None)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["client_ip"] = ip
        state["rate_key"] = rate_key(ip)  # what every per-IP limit counts (IPv6: the /64)
        method: str = scope["method"]
        if method == "HEAD":
            # HEAD is GET without the body (RFC 9110 §9.3.2) on every GET route, so monitors can
            # probe with it. The app routes a copy as GET; the server keeps its own scope, and
            # with it the knowledge that this answer has no body.
            scope = {**scope, "method": "GET"}
        path: str = scope["path"]
        is_api = path.startswith("/api/")
        legacy = is_api and not path.startswith("/api/v1/") and path != "/api/v1"
        status_holder = [0]
        extra = self._response_headers(request_id, is_api, legacy, scope)

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                message["headers"] = [*message.get("headers", []), *extra, *state.get("extra_headers", ())]
            elif message["type"] == "http.response.body":
                if status_holder[0] >= 400 and "error_code" not in state:
                    state["error_code"] = _code_of(message.get("body", b""))
                if method == "HEAD" and message.get("body"):
                    message = {**message, "body": b""}
            await send(message)

        own_send: Send = send_wrapped  # for answers made here rather than by the app
        if self.cors is not None and b"origin" in headers:
            own_send = functools.partial(self.cors.send, send=send_wrapped,
                                         request_headers=Headers(scope=scope))
        bucket = bucket_for(scope["method"], path) if self.rate_limits is not None else None
        try:
            if oversized:
                await self._send_problem(errors.HeadersTooLarge(), request_id, own_send)
                return
            if bucket is not None:
                assert self.rate_limits is not None
                await self.rate_limits.hit(bucket, state["rate_key"], state)  # 429, or 503
            early = self._precheck(scope, headers)
            if early is not None:
                await self._send_problem(early, request_id, own_send)
            else:
                await self.app(scope, self._limited(receive, headers, state), send_wrapped)
        except errors.GatehouseError as error:
            if status_holder[0] == 0:
                await self._send_problem(error, request_id, own_send)
        except _BodyTooLarge:
            if status_holder[0] == 0:
                await self._send_problem(errors.PayloadTooLarge(), request_id, own_send)
        except Exception as exc:  # the last resort: never let a bug become a dropped connection
            if status_holder[0] == 0:
                response = unexpected_response(exc, request_id, self.retry_after)
                await response(scope, receive, own_send)
        finally:
            self._record(scope, method, state, status_holder[0] or 500, started, request_id, ip)

    def _response_headers(
        self, request_id: str, is_api: bool, legacy: bool, scope: Scope
    ) -> list[tuple[bytes, bytes]]:
        extra = [(b"x-request-id", request_id.encode()), *self._static]
        if is_api or scope["path"].startswith("/metrics"):
            extra.append((b"cache-control", b"no-store"))
        if legacy:
            extra.append((b"deprecation", _DEPRECATION))
            extra.append((b"link", b"<" + _successor(scope) + b'>; rel="successor-version"'))
        return extra

    def _precheck(self, scope: Scope, headers: dict[bytes, bytes]) -> errors.GatehouseError | None:
        query = scope.get("query_string", b"")
        if query and scope["path"].startswith("/api/"):
            repeated = _repeated_parameter(query)
            if repeated is not None:
                # No API parameter is a list: `?limit=1&limit=500` must not be read as either.
                return errors.ValidationFailed(
                    "A query parameter is given more than once.",
                    [{"loc": ["query", repeated], "msg": "Given more than once."}])
        if scope["method"].encode() not in _BODY_METHODS:
            return None
        length = headers.get(b"content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                return errors.ValidationFailed("Content-Length is not a number.")
            if size > self.max_body:
                return errors.PayloadTooLarge()
            if size == 0:
                return None
        elif b"chunked" not in headers.get(b"transfer-encoding", b"").lower():
            return None
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        if scope["path"].startswith("/api/") and not _json_media(content_type):
            return errors.UnsupportedMediaType()
        return None

    def _limited(self, receive: Receive, headers: dict[bytes, bytes], state: dict[str, Any]) -> Receive:
        if b"content-length" in headers and int(headers[b"content-length"]) <= self.max_body:
            return receive
        seen = 0
        limit = self.max_body

        async def receive_limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # The framework may wrap this error while parsing; the flag keeps it a 413.
                    state["body_too_large"] = True
                    raise _BodyTooLarge()
            return message

        return receive_limited

    async def _send_problem(self, error: errors.GatehouseError, request_id: str, send: Send) -> None:
        response = problem_response(error, request_id)
        await response({"type": "http"}, _no_receive, send)

    def _record(
        self, scope: Scope, method: str, state: dict[str, Any], status: int, started: float,
        request_id: str, ip: str,
    ) -> None:
        path: str = scope["path"]
        elapsed = time.perf_counter() - started
        route = _route_template(scope, path)
        self.metrics.observe_request(method, route, status, elapsed)
        access_line({
            "method": method,
            "route": route,
            "path": path,
            "status": status,
            "code": state.get("error_code"),
            "duration_ms": round(elapsed * 1000, 2),
            "request_id": request_id,
            "user_id": state.get("user_id"),
            "ip": ip,
        })


def _repeated_parameter(query: bytes) -> str | None:
    seen: set[str] = set()
    for pair in query.split(b"&"):
        if not pair:
            continue
        name = unquote_plus(pair.split(b"=", 1)[0].decode("latin-1"))
        if name in seen:
            # The name is echoed only when it looks like one of ours (never arbitrary input).
            return name if _PARAMETER_NAME.match(name) else "?"
        seen.add(name)
    return None


def _successor(scope: Scope) -> bytes:
    """`/api/v1/...` for an unversioned `/api/...` request, from the path as sent.

    Built from the raw path, never the decoded one: `/api/%0d%0a` decoded is a CR LF that
    would split the header (the server then drops the connection), and `/api/%E2%82%AC`
    decoded is not Latin-1. Some servers (httpx's ASGI transport) keep the query on raw_path.
    """
    raw = (scope.get("raw_path") or b"").split(b"?", 1)[0]
    if raw.startswith(b"/api/"):
        return quote(b"/api/v1/" + raw[len(b"/api/"):], safe=_URI_PATH_SAFE).encode("ascii")
    # No raw path, or one spelled differently (`/%61pi/...`): encode the decoded path.
    rest = scope["path"][len("/api/"):].encode("utf-8", "surrogateescape")
    return quote(b"/api/v1/" + rest, safe=_URI_PATH_SAFE.replace("%", "")).encode("ascii")


def _route_template(scope: Scope, path: str) -> str:
    """The matched route's template with its mount prefix (never the raw path: ids stay out)."""
    template = getattr(scope.get("route"), "path", None)
    if not template:
        return "unmatched"
    if template.startswith("/api/") or not path.startswith("/api/"):
        return str(template)
    # Some FastAPI versions keep included routes unprefixed; add the prefix the request used.
    prefix = "/api/v1" if path.startswith("/api/v1/") else "/api"
    return prefix + str(template)


def _code_of(body: bytes) -> str | None:
    try:
        code = json.loads(body).get("code")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, str) else None


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
