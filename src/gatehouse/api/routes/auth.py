"""`/auth/*`: login, refresh, logout, sessions, validate, register (API.md §3-4)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from gatehouse.api.deps import (
    CSRF_COOKIE,
    REFRESH_COOKIE,
    Ctx,
    CurrentUser,
    actor_of,
    check_csrf,
    check_origin,
)
from gatehouse.api.responses import JSONResponse
from gatehouse.api.schemas import (
    CookieLoginOut,
    LoginIn,
    Page,
    RefreshIn,
    RegisterIn,
    SessionOut,
    TokenPairOut,
    UserOut,
    ValidateOut,
)
from gatehouse.auth import devices
from gatehouse.auth.sessions import IssuedTokens
from gatehouse.context import Context
from gatehouse.errors import RefreshInvalid
from gatehouse.users.service import public_user, rfc3339

# Login, refresh and register each have their own per-IP bucket (API.md §4).
public = APIRouter(tags=["auth"])
# Included only when GATEHOUSE_SIGNUP=open: closed, the route does not exist (404 for any body).
signup = APIRouter(tags=["auth"])
router = APIRouter(tags=["auth"])

_ANSWERS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not authenticated (problem+json)"},
    422: {"description": "Validation failed (problem+json)"},
    429: {"description": "Too many requests (problem+json)"},
}


def cookie_mode_of(request: Request) -> bool:
    return request.headers.get("x-auth-mode", "").lower() == "cookie"


def _set_cookies(response: Response, ctx: Context, issued: IssuedTokens) -> None:
    secure = ctx.settings.secure_cookies
    remaining = issued.refresh_expires_in()
    response.set_cookie("gh_access", issued.access_token, max_age=ctx.settings.access_token_ttl,
                        path="/", secure=secure, httponly=True, samesite="lax")
    response.set_cookie(REFRESH_COOKIE, issued.refresh_token, max_age=remaining, path="/api",
                        secure=secure, httponly=True, samesite="strict")
    response.set_cookie(CSRF_COOKIE, ctx.sessions.csrf_token(issued.session_id), max_age=remaining,
                        path="/", secure=secure, httponly=False, samesite="strict")


def clear_cookies(response: Response, ctx: Context) -> None:
    secure = ctx.settings.secure_cookies
    response.delete_cookie("gh_access", path="/", secure=secure, httponly=True, samesite="lax")
    response.delete_cookie(REFRESH_COOKIE, path="/api", secure=secure, httponly=True,
                           samesite="strict")
    response.delete_cookie(CSRF_COOKIE, path="/", secure=secure, httponly=False, samesite="strict")


def _answer(ctx: Context, issued: IssuedTokens, cookie_mode: bool) -> JSONResponse:
    user = public_user(issued.user)
    if cookie_mode:
        response = JSONResponse({
            "user": user, "session_id": issued.session_id,
            "expires_in": issued.expires_in(), "refresh_expires_in": issued.refresh_expires_in(),
        })
        _set_cookies(response, ctx, issued)
        return response
    return JSONResponse({
        "access_token": issued.access_token, "token_type": "Bearer",
        "expires_in": issued.expires_in(), "refresh_token": issued.refresh_token,
        "refresh_expires_in": issued.refresh_expires_in(), "session_id": issued.session_id,
        "user": user,
    })


def _device_cookies(ctx: Context) -> devices.DeviceCookies:
    return devices.DeviceCookies(ctx.server_keys.device)


def _set_device_cookie(response: Response, ctx: Context, user_id: str) -> None:
    """`gh_device` (API.md §4): this browser signed in as `user_id`; in token and cookie mode."""
    # Path /api: the login route lives under /api/v1/auth and /api/auth, and nothing outside
    # /api needs it. SameSite=Strict: no other site can make a browser present it.
    response.set_cookie(devices.COOKIE, _device_cookies(ctx).issue(user_id),
                        max_age=devices.MAX_AGE, path="/api", secure=ctx.settings.secure_cookies,
                        httponly=True, samesite="strict")


def device_user_of(request: Request, ctx: Context) -> str | None:
    """Whom the `gh_device` cookie vouches for; forged, foreign or expired ones for nobody."""
    return _device_cookies(ctx).user_of(request.cookies.get(devices.COOKIE))


def login_answer(ctx: Context, issued: IssuedTokens, cookie_mode: bool) -> JSONResponse:
    """What a sign-in answers, with a password alone or with the second factor (API.md §8)."""
    response = _answer(ctx, issued, cookie_mode)
    _set_device_cookie(response, ctx, issued.user.id)
    return response


@public.post("/auth/login", response_model=TokenPairOut | CookieLoginOut, responses=_ANSWERS)
async def login(body: LoginIn, request: Request, ctx: Ctx) -> JSONResponse:
    """Password login. `X-Auth-Mode: cookie` answers with cookies instead of tokens.

    With the second factor on, a right password answers 401 `mfa_required` with an
    `mfa_token` for `POST /auth/login/mfa`, and opens no session."""
    cookie_mode = cookie_mode_of(request)
    if cookie_mode:
        check_origin(request, ctx)  # no login CSRF from foreign sites
    issued = await ctx.sessions.login(
        body.email, body.password, actor_of(request),
        auth_mode="cookie" if cookie_mode else "token", device_user_id=device_user_of(request, ctx),
    )
    return login_answer(ctx, issued, cookie_mode)


@public.post("/auth/refresh", response_model=TokenPairOut | CookieLoginOut, responses=_ANSWERS)
async def refresh(request: Request, ctx: Ctx, body: RefreshIn | None = None) -> JSONResponse:
    """Rotate the refresh token (idempotent within the grace window)."""
    if body is not None and body.refresh_token is not None:
        issued = await ctx.sessions.refresh(body.refresh_token, actor_of(request))
        return _answer(ctx, issued, cookie_mode=False)
    token = request.cookies.get(REFRESH_COOKIE)
    if token is None:
        raise RefreshInvalid("Send refresh_token in the body, or the gh_refresh cookie.")
    check_csrf(request, ctx, token.split(".", 1)[0])
    issued = await ctx.sessions.refresh(token, actor_of(request))
    return _answer(ctx, issued, cookie_mode=True)


@router.post("/auth/logout", status_code=204, responses=_ANSWERS)
async def logout(principal: CurrentUser, request: Request, ctx: Ctx) -> Response:
    """End this session; its access and refresh tokens stop working at once."""
    assert principal.user_id and principal.session_id
    await ctx.sessions.logout(principal.user_id, principal.session_id, actor_of(request, principal))
    response = Response(status_code=204)
    clear_cookies(response, ctx)
    return response


@router.post("/auth/logout-all", status_code=204, responses=_ANSWERS)
async def logout_all(principal: CurrentUser, request: Request, ctx: Ctx) -> Response:
    """End every session of the caller."""
    assert principal.user_id
    await ctx.sessions.logout_all(principal.user_id, actor_of(request, principal))
    response = Response(status_code=204)
    clear_cookies(response, ctx)
    return response


@router.get("/auth/validate", response_model=ValidateOut, responses=_ANSWERS)
async def validate(principal: CurrentUser) -> JSONResponse:
    """Introspect the caller's access token (RFC 7662-style), with no database query."""
    assert principal.expires_at is not None
    return JSONResponse({
        "active": True, "user_id": principal.user_id, "session_id": principal.session_id,
        "roles": principal.roles, "permissions": sorted(principal.permissions),
        "expires_at": rfc3339(datetime.fromtimestamp(principal.expires_at, UTC)),
    })


@router.get("/auth/sessions", response_model=Page[SessionOut], responses=_ANSWERS)
async def list_sessions(
    principal: CurrentUser, ctx: Ctx,
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = Query(None, min_length=1, max_length=64),
) -> dict[str, Any]:
    """The caller's live sessions; `current` marks this one."""
    assert principal.user_id
    items, next_cursor = await ctx.sessions.list_sessions(
        principal.user_id, principal.session_id, limit, cursor
    )
    return {"items": items, "next_cursor": next_cursor}


@router.delete("/auth/sessions/{session_id}", status_code=204, responses=_ANSWERS)
async def delete_session(session_id: str, principal: CurrentUser, request: Request, ctx: Ctx) -> Response:
    """Revoke one of the caller's own sessions (404 for anyone else's)."""
    assert principal.user_id
    await ctx.sessions.revoke_one(principal.user_id, session_id, actor_of(request, principal))
    return Response(status_code=204)


@signup.post("/auth/register", status_code=201, response_model=UserOut, responses=_ANSWERS)
async def register(body: RegisterIn, request: Request, ctx: Ctx) -> JSONResponse:
    """Self-service sign-up (this route exists only when GATEHOUSE_SIGNUP=open)."""
    user = await ctx.accounts.create(
        email=body.email, password=body.password, name=body.name, roles=["user"],
        actor=actor_of(request), self_service=True,
    )
    ctx.recovery.request_verification_of(user.id, actor_of(request))  # sent off the request path
    return JSONResponse(public_user(user), status_code=201)
