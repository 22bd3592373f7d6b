"""uvicorn's httptools protocol, answering requests that never reach the app as problem+json.

Two answers are given here, before the app (and its middleware) sees a request:

- what the HTTP parser refuses (a raw non-ASCII byte in the path, a target too
  long for it, a malformed header): uvicorn itself answers a plain-text 400
  with none of the headers every response carries (API.md §1-2); here it is
  400 `bad_request` as problem+json;
- a header section past a hard ceiling (4 x GATEHOUSE_MAX_HEADER_BYTES, at
  least 64 KiB): httptools would buffer it whole (8 MB took 0.16 s and 8 MB
  of memory per connection) before the middleware's 431 could refuse it; here
  the connection gets 431 `headers_too_large` as soon as the bytes pass the
  ceiling. Below it, the middleware answers 431 itself (with CORS headers).

Both carry a fresh `X-Request-ID` (also in the log line), the security headers
and, under an https `PUBLIC_API_URL`, HSTS. `gatehouse serve` runs uvicorn with it.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import structlog
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from gatehouse import errors
from gatehouse.api.problem import problem_body, status_of
from gatehouse.api.responses import json_bytes

log = structlog.get_logger("gatehouse.access")

_SECURITY = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


def head_ceiling() -> int:
    """Bytes of request line and headers a connection may send before 431, unparsed."""
    try:
        limit = int(os.environ.get("GATEHOUSE_MAX_HEADER_BYTES", "16384"))
    except ValueError:
        limit = 16_384  # settings refuse such a value at start-up anyway
    return max(65_536, 4 * limit)


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ceiling = head_ceiling()
        self._in_head = True
        self._head_bytes = 0
        self._discarding = False

    def _unsupported_upgrade_warning(self) -> None:
        """`serve` runs without a WebSocket protocol (Gatehouse has no WebSocket routes), so an
        `Upgrade: websocket` request is answered as a plain HTTP request, with problem+json
        and the usual headers (a bare 403 before). uvicorn would log two warnings for each
        such request, a log flood anyone could trigger; the access log line is enough."""

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > self._ceiling:
                self._answer(errors.HeadersTooLarge(), "header section over the ceiling",
                             linger=True)
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes = True, 0  # the next request on this connection

    def send_400_response(self, msg: str) -> None:
        self._answer(errors.BadRequest(), msg)

    def _answer(self, error: errors.GatehouseError, reason: str, linger: bool = False) -> None:
        if self.transport.is_closing():
            return
        request_id = uuid.uuid4().hex
        body = json_bytes(problem_body(error, request_id))
        headers = [*self.server_state.default_headers, *_SECURITY,
                   (b"content-type", b"application/problem+json"),
                   (b"content-length", str(len(body)).encode()),
                   (b"x-request-id", request_id.encode()),
                   (b"connection", b"close")]
        if os.environ.get("PUBLIC_API_URL", "").startswith("https://"):
            headers.append((b"strict-transport-security", b"max-age=63072000; includeSubDomains"))
        head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        self.transport.write(STATUS_LINE[status_of(error)] + head + b"\r\n" + body)
        if linger and self.transport.can_write_eof():
            # A lingering close (nginx's lingering_close): closing now, with the client still
            # sending, makes the kernel answer with a reset that can destroy the 431 before the
            # client reads it. Send FIN, discard what still arrives, close after 2 s at most.
            self._discarding = True
            self.transport.write_eof()
            self.loop.call_later(2.0, self.transport.close)
        else:
            self.transport.close()
        # `reason` is uvicorn's or ours: it names the complaint, never the request's bytes.
        log.info("request", method=None, route="unparsed", path=None, status=status_of(error),
                 code=error.code, duration_ms=0.0, request_id=request_id, user_id=None,
                 reason=reason[:200])
