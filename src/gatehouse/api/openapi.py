"""The OpenAPI document declares every error answer as RFC 9457 problem+json (API.md §2).

FastAPI only knows the success answer and its own 422 shape
(`HTTPValidationError`), which Gatehouse never sends. `install` post-processes
the generated document once: each `/api` operation lists the problem answers
it can give, with the `Problem` schema (422 adds a non-empty `errors`, 429 and
503 add `retry_after`), so clients and schemathesis can rely on it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

PROBLEM = "application/problem+json"

_PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "required": ["type", "title", "status", "code", "detail", "request_id"],
    "properties": {
        "type": {"type": "string", "description": "`/errors/<code>`"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string", "description": "Stable machine-readable error code"},
        "detail": {"type": "string"},
        "request_id": {"type": ["string", "null"]},
        "errors": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                },
            },
        },
        "retry_after": {"type": "integer", "minimum": 1},
    },
}

_ANSWERS: dict[int, tuple[str, list[str]]] = {
    401: (
        "Not authenticated: token_missing, token_expired, token_invalid, session_revoked, "
        "invalid_credentials, refresh_*, api_key_invalid, signature_invalid",
        [],
    ),
    403: ("Forbidden: forbidden, csrf_failed, account_disabled", []),
    404: ("Not found", []),
    409: ("Conflict", []),
    413: ("Payload too large", []),
    415: ("Unsupported media type", []),
    422: ("Validation failed", ["errors"]),
    429: ("Too many requests: rate_limited or login_throttled (see Retry-After)", ["retry_after"]),
    500: ("Internal error", []),
    503: ("A dependency is unavailable (see Retry-After)", ["retry_after"]),
}
_BODY_METHODS = {"post", "put", "patch"}
_METHODS = {"get", "post", "put", "patch", "delete"}


def _problem(status: int) -> dict[str, Any]:
    description, required = _ANSWERS[status]
    schema: dict[str, Any] = {"$ref": "#/components/schemas/Problem"}
    if required:
        schema = {"allOf": [schema, {"required": required}]}
    return {"description": description, "content": {PROBLEM: {"schema": schema}}}


def _statuses(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    if path == "/metrics":
        return [401, 403, 500, 503]
    if not path.startswith("/api/"):
        return []
    statuses = [401, 403, 404, 422, 429, 500, 503]
    if method in _BODY_METHODS or "requestBody" in operation:
        statuses += [409, 413, 415]
    return sorted(statuses)


def declare_problems(document: dict[str, Any]) -> None:
    """Add (or replace) the problem+json answers of every operation in `document`, in place."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = _PROBLEM_SCHEMA
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for status in _statuses(path, method, operation):
                responses[str(status)] = _problem(status)
    # FastAPI's own 422 shapes are never sent; drop them once nothing refers to them.
    text = repr(document.get("paths", {}))
    for name in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{name}'" not in text:
            schemas.pop(name, None)


def install(app: FastAPI) -> None:
    """Make `app.openapi()` and /openapi.json return the document with problem answers declared."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            declare_problems(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
