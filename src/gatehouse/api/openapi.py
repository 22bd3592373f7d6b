"""The OpenAPI document: problem answers, security schemes and the rules the service enforces.

FastAPI only knows the success answer and its own 422 shape
(`HTTPValidationError`), which Gatehouse never sends, and nothing of how a
credential travels (the routes read it in `api/deps.py`). `install`
post-processes the generated document once:

- each `/api` operation lists the problem answers it can give, with the
  `Problem` schema (RFC 9457; 422 adds a non-empty `errors`, 429 and 503 add
  `retry_after`);
- `components.securitySchemes` declares the three ways a credential travels
  (API.md §1: Bearer token or API key, `X-API-Key`, the `gh_access` cookie),
  and each protected operation names the ones it takes and the permission it
  needs, read from its dependencies (so Swagger UI's "Authorize" works);
- request rules the service enforces beyond pydantic's types: emails are
  addresses where they create an account, new passwords have the configured
  minimum length (and at most 1024 UTF-8 bytes), roles and scopes are the
  known names, repeated query parameters are refused (422).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from gatehouse.api import deps
from gatehouse.auth.rbac import ALL_PERMISSIONS, ROLES

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
        "mfa_token": {"type": "string", "description": "mfa_required only: single use, 5 minutes"},
        "methods": {"type": "array", "items": {"type": "string"},
                    "description": "mfa_required only: the second factors accepted"},
    },
}

_ANSWERS: dict[int, tuple[str, list[str]]] = {
    401: (
        "Not authenticated: token_missing, token_expired, token_invalid, session_revoked, "
        "invalid_credentials, refresh_*, api_key_invalid, signature_invalid, mfa_required "
        "(adds mfa_token and methods), mfa_invalid, mfa_expired",
        [],
    ),
    403: ("Forbidden: forbidden, csrf_failed, account_disabled, email_unverified", []),
    404: ("Not found", []),
    409: ("Conflict", []),
    413: ("Payload too large", []),
    415: ("Unsupported media type", []),
    422: ("Validation failed", ["errors"]),
    429: ("Too many requests: rate_limited or login_throttled (see Retry-After)", ["retry_after"]),
    500: ("Internal error", []),
    503: ("A dependency is unavailable (see Retry-After)", ["retry_after"]),
}
_ANSWERS[431] = ("Request header fields too large: headers_too_large", [])
_ANSWERS[400] = ("Bad request: link_invalid (a reset or verification token that is unknown, "
                 "used, superseded or expired)", [])

BEARER, API_KEY, COOKIE = "bearerAuth", "apiKeyHeader", "accessCookie"
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    BEARER: {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "An access token from `POST /api/v1/auth/login`, or an API key "
                       "(`gh_...`) on routes that take one.",
    },
    API_KEY: {
        "type": "apiKey", "in": "header", "name": "X-API-Key",
        "description": "An API key (`gh_...`); keys created with `require_signature` also "
                       "send `X-Signature`.",
    },
    COOKIE: {
        "type": "apiKey", "in": "cookie", "name": "gh_access",
        "description": "Cookie mode (browsers): unsafe methods also need `X-CSRF-Token`.",
    },
}
_ANY_CREDENTIAL = [{BEARER: []}, {API_KEY: []}, {COOKIE: []}]
_USER_SESSION = [{BEARER: []}, {COOKIE: []}]
# Fields whose values the service checks as email addresses (422 otherwise).
_EMAIL_FIELDS = {"RegisterIn": ["email"], "AdminUserCreate": ["email"], "EmailIn": ["email"]}
_PASSWORD_FIELDS = ("password", "current_password", "new_password")
# Passwords that become an account's password: the configured minimum length applies.
_NEW_PASSWORDS = {"RegisterIn": "password", "AdminUserCreate": "password",
                  "PasswordChangeIn": "new_password"}
_NAMES = {"roles": sorted(ROLES), "scopes": sorted(ALL_PERMISSIONS)}
_BODY_METHODS = {"post", "put", "patch"}
_METHODS = {"get", "post", "put", "patch", "delete"}


def _problem(status: int) -> dict[str, Any]:
    description, required = _ANSWERS[status]
    schema: dict[str, Any] = {"$ref": "#/components/schemas/Problem"}
    if required:
        schema = {"allOf": [schema, {"required": required}]}
    return {"description": description, "content": {PROBLEM: {"schema": schema}}}


def _takes_link_token(operation: dict[str, Any], schemas: dict[str, Any]) -> bool:
    for media in operation.get("requestBody", {}).get("content", {}).values():
        name = media.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1]
        if "token" in schemas.get(name, {}).get("properties", {}):
            return True
    return False


def _statuses(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    if path == "/metrics":
        return [401, 403, 500, 503]
    if not path.startswith("/api/"):
        return []
    statuses = [401, 403, 404, 422, 429, 431, 500, 503]
    if method in _BODY_METHODS or "requestBody" in operation:
        statuses += [409, 413, 415]
    elif method == "delete":
        statuses.append(409)  # e.g. deleting the last enabled admin
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
            statuses = _statuses(path, method, operation)
            if _takes_link_token(operation, schemas):
                statuses.append(400)
            for status in statuses:
                responses[str(status)] = _problem(status)
    # FastAPI's own 422 shapes are never sent; drop them once nothing refers to them.
    text = repr(document.get("paths", {}))
    for name in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{name}'" not in text:
            schemas.pop(name, None)


def _calls(dependant: Dependant) -> list[Any]:
    found = [dependant.call] if dependant.call is not None else []
    for sub in dependant.dependencies:
        found += _calls(sub)
    return found


def _needs(route: APIRoute) -> tuple[list[dict[str, list[str]]], str | None] | None:
    """The credentials a route takes and the permission it needs, from its dependencies."""
    if route.path == "/metrics":  # checks the credential itself (or GATEHOUSE_METRICS_TOKEN)
        return [{BEARER: []}, {API_KEY: []}], "ops:read"
    security: list[dict[str, list[str]]] | None = None
    permission = None
    for call in _calls(route.dependant):
        if call is deps.require_user_session:
            security = _USER_SESSION
        elif call is deps.authenticate:
            security = security or _ANY_CREDENTIAL
        elif getattr(call, "__qualname__", "").startswith("RequirePermission."):
            security = security or _ANY_CREDENTIAL
            cells = [c.cell_contents for c in getattr(call, "__closure__", None) or ()]
            permission = next((c for c in cells if isinstance(c, str)), permission)
    return (security, permission) if security is not None else None


def declare_security(document: dict[str, Any], routes: list[Any]) -> None:
    """Declare the security schemes, and on each protected operation the ones it takes."""
    document.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    for route in routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        item = document.get("paths", {}).get(route.path_format)
        needs = _needs(route)
        if item is None or needs is None:
            continue
        security, permission = needs
        for method in route.methods:
            operation = item.get(method.lower())
            if operation is None:
                continue
            operation["security"] = security
            if security is _USER_SESSION:
                note = "Needs a user's session (an API key answers 403 `forbidden`)."
            else:
                note = f"Needs the `{permission}` permission." if permission else ""
            if note:
                operation["description"] = (operation.get("description", "") + "\n\n" + note).strip()


def _array_items(prop: dict[str, Any]) -> dict[str, Any] | None:
    for variant in [prop, *prop.get("anyOf", [])]:
        if variant.get("type") == "array":
            items: dict[str, Any] = variant.setdefault("items", {})
            return items
    return None


_NO_NUL = "^[^\\u0000]*$"  # PostgreSQL text cannot hold U+0000: requests refuse it (422)


def _request_bodies(document: dict[str, Any]) -> set[str]:
    names = set()
    for item in document.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            for media in operation.get("requestBody", {}).get("content", {}).values():
                ref = media.get("schema", {}).get("$ref", "")
                names.add(ref.rsplit("/", 1)[-1])
    return names


def _refuse_nul(schema: dict[str, Any]) -> None:
    if schema.get("type") == "string" and "pattern" not in schema:
        schema["pattern"] = _NO_NUL
    for variant in schema.get("anyOf", []):
        _refuse_nul(variant)
    if isinstance(schema.get("items"), dict):
        _refuse_nul(schema["items"])


def declare_rules(document: dict[str, Any], password_min_length: int) -> None:
    """Request rules enforced beyond the pydantic types: email addresses, password length and
    bytes, known roles and scopes."""
    schemas = document.get("components", {}).get("schemas", {})
    for name in _request_bodies(document):
        for prop in schemas.get(name, {}).get("properties", {}).values():
            _refuse_nul(prop)
    for name, field in _NEW_PASSWORDS.items():
        prop = schemas.get(name, {}).get("properties", {}).get(field)
        if prop is not None:
            prop["minLength"] = password_min_length
    for schema in schemas.values():
        for field, names in _NAMES.items():
            prop = schema.get("properties", {}).get(field)
            items = _array_items(prop) if prop is not None else None
            if items is not None and items.get("type") == "string":
                items["enum"] = names
    for name, fields in _EMAIL_FIELDS.items():
        for field in fields:
            prop = schemas.get(name, {}).get("properties", {}).get(field)
            if prop is not None:
                prop["format"] = "email"
    for schema in schemas.values():
        for field in _PASSWORD_FIELDS:
            prop = schema.get("properties", {}).get(field)
            if prop is not None and prop.get("type") == "string":
                prop["description"] = "At most 1024 bytes in UTF-8 (422 above)."


def install(app: FastAPI) -> None:
    """Make `app.openapi()` and /openapi.json return the document with problems, security
    schemes and rules declared."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            declare_problems(document)
            declare_security(document, app.routes)
            declare_rules(document, app.state.ctx.settings.password_min_length)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
