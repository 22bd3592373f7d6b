"""FastAPI dependencies as `Annotated` aliases; routes stay thin.

How a credential travels (Bearer header, `X-API-Key`, cookies) is decided
here, in the precedence of API.md §1; how it is checked lives in
`gatehouse.auth` (access tokens, API keys).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request

from gatehouse.audit.service import Actor
from gatehouse.auth.rbac import permissions_for
from gatehouse.context import Context
from gatehouse.errors import CsrfFailed, PermissionDenied, TokenExpired, TokenInvalid, TokenMissing

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
ACCESS_COOKIE, REFRESH_COOKIE, CSRF_COOKIE = "gh_access", "gh_refresh", "gh_csrf"


def context_of(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


async def get_context(request: Request) -> Context:
    """The app's services (async: FastAPI runs sync dependencies in a thread pool)."""
    return context_of(request)


Ctx = Annotated[Context, Depends(get_context)]


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user session (access token) or an API key."""

    user_id: str | None
    session_id: str | None
    roles: list[str]
    permissions: frozenset[str]
    expires_at: int | None = None
    api_key_id: str | None = None
    via_cookie: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_user(self) -> bool:
        return self.session_id is not None


def client_ip(request: Request) -> str:
    ip: str = request.scope["state"].get("client_ip", "unknown")
    return ip


def actor_of(request: Request, principal: Principal | None = None) -> Actor:
    return Actor(
        user_id=principal.user_id if principal else None,
        api_key_id=principal.api_key_id if principal else None,
        ip=client_ip(request),
        request_id=request.scope["state"].get("request_id"),
        user_agent=request.headers.get("user-agent"),
        rate_key=request.scope["state"].get("rate_key"),
    )


def _origin_key(origin: str) -> str | None:
    """`scheme://host[:port]`, lower-cased and without a default port, as browsers send Origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None  # includes the opaque origin "null" (sandboxed frames, file:, data:)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}"


def check_origin(request: Request, ctx: Context) -> None:
    """Second line of CSRF defence: refuse what a browser marks as coming from another site.

    Browsers send `Origin` on cross-origin and non-GET requests and, when recent,
    `Sec-Fetch-Site`; a request with neither comes from a non-browser client or an
    old browser, and the session-bound CSRF token still guards it.
    """
    if request.headers.get("sec-fetch-site", "").strip().lower() == "cross-site":
        raise CsrfFailed("Cross-site requests cannot use cookie authentication.")
    origin = request.headers.get("origin")
    if origin is None:
        return
    # The service's own origin is PUBLIC_API_URL's (the one base URL clients use), never one
    # derived from the Host header, which DNS rebinding or a proxy hop can make say anything.
    allowed = {_origin_key(o) for o in (ctx.settings.public_origin, *ctx.settings.cors_origins)}
    if _origin_key(origin) not in allowed - {None}:
        raise CsrfFailed("This origin may not use cookie authentication.")


def check_csrf(request: Request, ctx: Context, session_id: str) -> None:
    """Cookie-authenticated unsafe requests: X-CSRF-Token must equal gh_csrf and be bound to the session."""
    check_origin(request, ctx)
    header = request.headers.get("x-csrf-token", "")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not header or not hmac.compare_digest(header.encode(), cookie.encode()):
        raise CsrfFailed()
    if not ctx.sessions.csrf_valid(session_id, header):
        raise CsrfFailed()


async def _user_principal(ctx: Context, token: str, via_cookie: bool) -> Principal:
    claims = ctx.tokens.verify(token)
    await ctx.revocations.check(claims)
    return Principal(
        user_id=claims.sub, session_id=claims.sid, roles=claims.roles,
        permissions=permissions_for(claims.roles), expires_at=claims.exp, via_cookie=via_cookie,
    )


async def _api_key_principal(request: Request, ctx: Context, key: str) -> Principal:
    # The target exactly as sent; some ASGI servers leave the query on raw_path, others do not.
    raw_path = (request.scope.get("raw_path") or request.scope["path"].encode()).split(b"?", 1)[0]
    query = request.scope.get("query_string", b"")
    target = raw_path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
    body = await request.body()
    found = await ctx.api_keys.authenticate(
        key, method=request.method, target=target, body=body,
        signature=request.headers.get("x-signature"),
    )
    # A key acts for its creator (the audit's user_id) with the scopes the creator still holds.
    return Principal(
        user_id=found.created_by, session_id=None, roles=[], permissions=found.scopes,
        api_key_id=found.id,
    )


async def authenticate(request: Request) -> Principal:
    """Authorization header, then X-API-Key, then cookies (API.md §1); once per request."""
    state = request.scope["state"]
    known: Principal | None = state.get("principal")
    if known is not None:
        return known  # a signed API-key request must not be checked (and remembered) twice
    ctx = context_of(request)
    # 503 until this process knows every live revocation (API.md §3), whatever the credential.
    await ctx.revocations.ensure_ready()
    authorization = request.headers.get("authorization")
    principal: Principal
    if authorization is not None:
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise TokenInvalid("Send the token as 'Authorization: Bearer <token>'.")
        if credential.startswith("gh_"):
            principal = await _api_key_principal(request, ctx, credential)
        else:
            principal = await _user_principal(ctx, credential, via_cookie=False)
    elif (api_key := request.headers.get("x-api-key")) is not None:
        principal = await _api_key_principal(request, ctx, api_key.strip())
    elif (cookie := request.cookies.get(ACCESS_COOKIE)) is not None:
        principal = await _user_principal(ctx, cookie, via_cookie=True)
        if request.method in UNSAFE_METHODS:
            assert principal.session_id is not None
            check_csrf(request, ctx, principal.session_id)
    elif REFRESH_COOKIE in request.cookies:
        # The browser dropped gh_access at its Max-Age but still holds a session: refresh.
        raise TokenExpired()
    else:
        raise TokenMissing()
    key_id = principal.api_key_id
    state["user_id"] = f"api_key:{key_id}" if key_id else principal.user_id
    state["principal"] = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]

# The dependencies below take the request and call `authenticate` themselves rather than
# depending on CurrentPrincipal: one dependency per route instead of two (FastAPI's
# dependency solving was about a fifth of a profile request's CPU).


async def require_user_session(request: Request) -> Principal:
    """Routes about the caller's own session and profile need a user token, not an API key."""
    principal = await authenticate(request)
    if not principal.is_user:
        raise PermissionDenied("This route needs a user session, not an API key.")
    return principal


CurrentUser = Annotated[Principal, Depends(require_user_session)]


def RequirePermission(permission: str) -> Callable[[Request], Awaitable[Principal]]:  # noqa: N802
    """Dependency factory: 403 `forbidden` (never 401) when the caller lacks `permission`."""

    async def dependency(request: Request) -> Principal:
        principal = await authenticate(request)
        if permission not in principal.permissions:
            raise PermissionDenied(f"This needs the '{permission}' permission.")
        return principal

    return dependency

