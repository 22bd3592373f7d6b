"""FastAPI and Starlette: a dependency that yields the caller's :class:`Principal`.

Errors are answered the way Gatehouse answers them (API.md §2): problem+json
with the same codes, so one client error handler serves both. Only Starlette
is imported (FastAPI is built on it); the rest of the SDK needs neither::

    from typing import Annotated
    from fastapi import Depends, FastAPI
    from gatehouse.client.resource import AsyncTokenVerifier, Principal
    from gatehouse.client.resource_fastapi import install_problem_details, require_user

    verifier = AsyncTokenVerifier("https://auth.example.com")
    app = FastAPI()
    install_problem_details(app)

    @app.get("/audit")
    async def audit(user: Annotated[Principal, Depends(require_user(verifier, ["audit:read"]))]):
        ...

    401 token_missing    no bearer token        WWW-Authenticate: Bearer
    401 token_invalid    bad signature/claims   WWW-Authenticate: Bearer error="invalid_token"
    401 token_expired    expired                (same), refresh and retry once
    401 session_revoked  with check_revocation  (same), the session is over
    403 forbidden        a permission is missing
    503 service_unavailable  keys or revocation answer unavailable; Retry-After

Without :func:`install_problem_details` the statuses and headers are the same
but the body is FastAPI's ``{"detail": ...}``.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ._exceptions import ApiError
from .resource import AsyncTokenVerifier, Principal

__all__ = ["ProblemError", "install_problem_details", "require_user"]

_TITLES = {
    "token_missing": "Authentication required",
    "token_expired": "Access token expired",
    "token_invalid": "Invalid access token",
    "session_revoked": "Session revoked",
    "forbidden": "Forbidden",
    "service_unavailable": "Service unavailable",
}
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")


class ProblemError(HTTPException):
    """An error answer in problem+json shape (API.md §2), raised by :func:`require_user`."""

    def __init__(self, status: int, code: str, detail: str, *, token_sent: bool = False,
                 retry_after: float | None = None) -> None:
        headers: dict[str, str] = {}
        if status == 401:
            # RFC 6750 §3: say how to authenticate; name the error when a token was sent.
            headers["WWW-Authenticate"] = 'Bearer error="invalid_token"' if token_sent else "Bearer"
        self.retry_after = None if retry_after is None else math.ceil(retry_after)
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        super().__init__(status, detail, headers)
        self.code = code


def require_user(
    verifier: AsyncTokenVerifier, permissions: Iterable[str] = ()
) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that yields the verified caller, who must hold every one of ``permissions``.
    """
    needed = tuple(permissions)

    async def current_principal(request: Request) -> Principal:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ProblemError(401, "token_missing", "This route needs a bearer access token.")
        try:
            principal = await verifier.verify(token)
        except ApiError as exc:
            raise ProblemError(exc.status or 503, exc.code, exc.detail, token_sent=True,
                               retry_after=exc.retry_after) from None
        if missing := principal.missing(needed):
            detail = f"This needs the permission(s) {', '.join(missing)}."
            raise ProblemError(403, "forbidden", detail)
        return principal

    return current_principal


async def problem_response(request: Request, exc: Exception) -> Response:
    """Render a :class:`ProblemError` as ``application/problem+json``, with a request id."""
    assert isinstance(exc, ProblemError)
    sent = request.headers.get("x-request-id", "")
    request_id = sent if _REQUEST_ID.match(sent) else uuid.uuid4().hex
    body: dict[str, object] = {
        "type": f"/errors/{exc.code}", "title": _TITLES.get(exc.code, "Not authenticated"),
        "status": exc.status_code, "code": exc.code, "detail": exc.detail,
        "request_id": request_id,
    }
    if exc.retry_after is not None:
        body["retry_after"] = exc.retry_after
    return Response(json.dumps(body, separators=(",", ":")), status_code=exc.status_code,
                    media_type="application/problem+json",
                    headers={**(exc.headers or {}), "X-Request-ID": request_id})


def install_problem_details(app: Starlette) -> None:
    """Answer :class:`ProblemError` as problem+json in ``app`` (FastAPI or Starlette)."""
    app.add_exception_handler(ProblemError, problem_response)
