"""uvicorn's httptools protocol, answering requests that never reach the app as problem+json.

A request line or header section that the HTTP parser refuses (a raw non-ASCII
byte in the path, a target too long for it, a malformed header) is answered by
uvicorn itself with a plain-text 400 and none of the headers every response
carries (API.md §1-2). This protocol answers it the way the middleware answers
everything else: 400 `bad_request` as problem+json, with a fresh `X-Request-ID`
(also in the log line), the security headers, and HSTS under an https
`PUBLIC_API_URL`. `gatehouse serve` runs uvicorn with it.
"""

from __future__ import annotations

import json
import os
import uuid

import structlog
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from gatehouse import errors
from gatehouse.api.problem import problem_body

log = structlog.get_logger("gatehouse.access")

_SECURITY = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        request_id = uuid.uuid4().hex
        body = json.dumps(problem_body(errors.BadRequest(), request_id),
                          separators=(",", ":")).encode()
        headers = [*self.server_state.default_headers, *_SECURITY,
                   (b"content-type", b"application/problem+json"),
                   (b"content-length", str(len(body)).encode()),
                   (b"x-request-id", request_id.encode()),
                   (b"connection", b"close")]
        if os.environ.get("PUBLIC_API_URL", "").startswith("https://"):
            headers.append((b"strict-transport-security", b"max-age=63072000; includeSubDomains"))
        head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        self.transport.write(STATUS_LINE[400] + head + b"\r\n" + body)
        self.transport.close()
        # uvicorn's message names the parser's complaint, never the request's bytes.
        log.info("request", method=None, route="unparsed", path=None, status=400,
                 code="bad_request", duration_ms=0.0, request_id=request_id, user_id=None,
                 reason=msg[:200])
