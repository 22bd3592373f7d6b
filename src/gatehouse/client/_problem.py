"""Read RFC 9457 problem details and turn them into SDK exceptions.

This is the one module that decides which exception a response becomes and
which 401 codes end a session (API.md §2). It does no I/O: it looks at an
already-read :class:`httpx.Response`.
"""

from __future__ import annotations

import email.utils
import json
from dataclasses import dataclass, field
from typing import Final

import httpx

from . import _clock
from ._exceptions import (
    ApiError,
    EmailUnverified,
    Forbidden,
    InvalidCredentials,
    LinkInvalid,
    MfaExpired,
    MfaInvalid,
    MfaRequired,
    NotAuthenticated,
    RateLimited,
    ServiceUnavailable,
    SessionExpired,
)

#: 401 codes after which the session can never be used again (API.md §2, §3).
SESSION_OVER_CODES: Final = frozenset(
    {"refresh_invalid", "refresh_expired", "refresh_reused", "session_revoked"}
)
#: 401 codes that mean "refresh the access token, then retry once".
REFRESHABLE_CODES: Final = frozenset({"token_expired", "token_invalid"})
#: Codes with a class of their own, by (status, code); none of them ends a session.
CODE_CLASSES: Final[dict[tuple[int, str], type[ApiError]]] = {
    (401, "mfa_required"): MfaRequired,
    (401, "mfa_invalid"): MfaInvalid,
    (401, "mfa_expired"): MfaExpired,
    (400, "link_invalid"): LinkInvalid,
    (403, "email_unverified"): EmailUnverified,
}


@dataclass(frozen=True)
class Problem:
    """The fields of a problem+json body the SDK relies on."""

    status: int
    code: str
    detail: str
    request_id: str | None
    retry_after: float | None
    #: ``mfa_required`` only: the second step's token and the accepted methods.
    mfa_token: str = field(default="", repr=False)
    methods: tuple[str, ...] = ()


def parse_retry_after(value: str | None) -> float | None:
    """Return the wait a ``Retry-After`` value asks for, in seconds, or ``None``.

    Integer seconds are what Gatehouse sends; an HTTP-date is also accepted
    and, being based on the server's clock, is clamped to be non-negative.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - _clock.wall()
    return max(0.0, seconds)


def read_problem(response: httpx.Response) -> Problem:
    """Extract code, detail, request id and retry-after from an error response.

    Bodies that are not problem+json (a proxy's HTML 502, say) still give a
    usable problem: the code falls back to ``http_<status>``.
    """
    body: object
    try:
        body = json.loads(response.content) if response.content else {}
    except ValueError:
        body = {}
    fields = body if isinstance(body, dict) else {}
    code = fields.get("code")
    detail = fields.get("detail") or fields.get("title")
    request_id = fields.get("request_id") or response.headers.get("x-request-id")
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if retry_after is None and isinstance(fields.get("retry_after"), (int, float)):
        retry_after = max(0.0, float(fields["retry_after"]))
    mfa_token = fields.get("mfa_token")
    methods = fields.get("methods")
    if not isinstance(methods, list):
        methods = []
    return Problem(
        status=response.status_code,
        code=code if isinstance(code, str) and code else f"http_{response.status_code}",
        detail=detail if isinstance(detail, str) and detail else response.reason_phrase,
        request_id=request_id if isinstance(request_id, str) else None,
        retry_after=retry_after,
        mfa_token=mfa_token if isinstance(mfa_token, str) else "",
        methods=tuple(m for m in methods if isinstance(m, str)),
    )


def problem_code(response: httpx.Response) -> str:
    """Return only the problem ``code`` of an error response."""
    return read_problem(response).code


def error_class(status: int, code: str) -> type[ApiError]:
    """Choose the exception class for an HTTP status and problem code."""
    if (cls := CODE_CLASSES.get((status, code))) is not None:
        return cls
    if status == 401:
        if code in SESSION_OVER_CODES:
            return SessionExpired
        if code == "invalid_credentials":
            return InvalidCredentials
        return NotAuthenticated
    if status == 403:
        return Forbidden
    if status == 429:
        return RateLimited
    if status in (502, 503, 504):
        return ServiceUnavailable
    return ApiError


def error_from_response(response: httpx.Response) -> ApiError:
    """Build the exception that describes an error response (status >= 400)."""
    problem = read_problem(response)
    cls = error_class(problem.status, problem.code)
    error = cls(
        problem.detail,
        status=problem.status,
        code=problem.code,
        request_id=problem.request_id,
        retry_after=problem.retry_after,
    )
    if isinstance(error, MfaRequired):
        error.mfa_token = problem.mfa_token
        error.methods = problem.methods
    return error
