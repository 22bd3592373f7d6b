"""RFC 9457 problem details: the one module that turns errors into HTTP answers.

Domain errors (`gatehouse.errors`, tree drawn there) map to a status here;
framework errors (routing 404/405, request validation) and unexpected
exceptions are folded into the same shape. Bodies never carry submitted
values, stack traces, SQL, secrets or tokens.
"""

from __future__ import annotations

import traceback
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from gatehouse import errors
from gatehouse.api.responses import json_bytes
from gatehouse.ops import sentry
from gatehouse.store.db.engine import outage_of

log = structlog.get_logger("gatehouse.api")

STATUS: dict[type[errors.GatehouseError], int] = {
    errors.AuthenticationError: 401,
    errors.PermissionDenied: 403,
    errors.LinkInvalid: 400,
    errors.NotFound: 404,
    errors.MethodNotAllowed: 405,
    errors.Conflict: 409,
    errors.PayloadTooLarge: 413,
    errors.HeadersTooLarge: 431,
    errors.BadRequest: 400,
    errors.UnsupportedMediaType: 415,
    errors.ValidationFailed: 422,
    errors.TooManyRequests: 429,
    errors.InternalError: 500,
    errors.ServiceUnavailable: 503,
}


# Answers of the login steps, not of a protected route: no WWW-Authenticate challenge.
_LOGIN_ANSWERS = (errors.InvalidCredentials, errors.MfaRequired, errors.MfaInvalid,
                  errors.MfaExpired)


def status_of(error: errors.GatehouseError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 500


def problem_body(error: errors.GatehouseError, request_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"/errors/{error.code}",
        "title": error.title,
        "status": status_of(error),
        "code": error.code,
        "detail": error.detail,
        "request_id": request_id,
    }
    if isinstance(error, errors.ValidationFailed):
        body["errors"] = error.errors
    if isinstance(error, errors.TooManyRequests | errors.ServiceUnavailable):
        body["retry_after"] = error.retry_after
    if isinstance(error, errors.MfaRequired):
        body["mfa_token"] = error.mfa_token
        body["methods"] = error.methods
    return body


def problem_response(
    error: errors.GatehouseError, request_id: str | None, *, token_sent: bool = False
) -> Response:
    body = problem_body(error, request_id)
    headers: dict[str, str] = {}
    if "retry_after" in body:
        headers["Retry-After"] = str(body["retry_after"])
    if body["status"] == 401 and not isinstance(error, _LOGIN_ANSWERS):
        # RFC 6750 §3: say how to authenticate; name the error when a token was sent.
        headers["WWW-Authenticate"] = (
            'Bearer error="invalid_token"' if token_sent else 'Bearer realm="gatehouse"'
        )
    return Response(
        json_bytes(body),
        status_code=body["status"],
        media_type="application/problem+json",
        headers=headers,
    )


def request_id_of(request: Request) -> str | None:
    return request.scope.get("state", {}).get("request_id")


def _token_sent(request: Request) -> bool:
    return bool(
        request.headers.get("authorization")
        or request.headers.get("x-api-key")
        or "gh_access" in request.cookies
    )


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [p for p in err.get("loc", ()) if isinstance(p, str | int)]
        kind = err.get("type", "")
        if kind == "json_invalid":
            msg = "Request body is not valid JSON."
        elif kind == "extra_forbidden":
            msg = "Unknown field."
        elif kind == "missing":
            msg = "Field required."
        else:
            # pydantic messages describe the rule, not the value; `input` is never copied.
            msg = str(err.get("msg", "Invalid value."))
        out.append({"loc": loc, "msg": msg})
    return out or [{"loc": ["body"], "msg": "Invalid request."}]


def unexpected_response(exc: BaseException, request_id: str | None, retry_after: int) -> Response:
    """500 for bugs, 503 for a database or cache that cannot be reached; logged without the message."""
    dependency = outage_of(exc)
    if dependency is not None:
        log.warning("dependency_unavailable", dependency=dependency, error=type(exc).__name__,
                    request_id=request_id)
        return problem_response(errors.ServiceUnavailable(retry_after), request_id)
    # Only the type and the frames: exception text can carry SQL parameters or input.
    log.error("unhandled_exception", error=type(exc).__name__, request_id=request_id,
              frames=safe_frames(exc))
    sentry.capture_exception(exc, request_id)  # when SENTRY_DSN is set; redacted there
    return problem_response(errors.InternalError(), request_id)


def safe_frames(exc: BaseException) -> list[str]:
    tb = traceback.extract_tb(exc.__traceback__)
    return [f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in tb[-12:]]


def allowed_methods(request: Request) -> str:
    """Every method the request's path answers (RFC 9110 §15.5.6), HEAD wherever GET is.

    The router's own 405 names only the first route that matched the path, so
    `PUT /users/profile` said `Allow: GET` although PATCH works there too.
    """
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE and getattr(route, "methods", None):
            methods |= set(route.methods)
    if "GET" in methods:
        methods.add("HEAD")  # the middleware answers HEAD on every GET route
    return ", ".join(sorted(methods))


def install(app: FastAPI) -> None:
    async def on_domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.GatehouseError)
        return problem_response(exc, request_id_of(request), token_sent=_token_sent(request))

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        error = errors.ValidationFailed("The request is not valid.", _validation_errors(exc))
        return problem_response(error, request_id_of(request))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        error: errors.GatehouseError
        if request.scope.get("state", {}).get("body_too_large"):
            error = errors.PayloadTooLarge()
        elif exc.status_code == 404:
            error = errors.NotFound()
        elif exc.status_code == 405:
            error = errors.MethodNotAllowed()
        elif exc.status_code == 413:
            error = errors.PayloadTooLarge()
        elif exc.status_code == 415:
            error = errors.UnsupportedMediaType()
        elif exc.status_code in (400, 422):
            error = errors.ValidationFailed("The request is not valid.")
        else:
            error = errors.InternalError()
        response = problem_response(error, request_id_of(request))
        if exc.status_code == 405:
            response.headers["Allow"] = allowed_methods(request)
        return response

    app.add_exception_handler(errors.GatehouseError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
