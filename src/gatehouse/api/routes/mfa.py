"""The TOTP second factor (API.md §8): the account's own routes, the sign-in step, admin reset.

`/auth/mfa/*` need a user's session (an API key answers 403); turning the
factor on or off keeps every session. `/auth/login/mfa` answers exactly what
`/auth/login` answers, in token or cookie mode (`X-Auth-Mode: cookie` there).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from gatehouse.api.deps import (
    Ctx,
    CurrentUser,
    Principal,
    RequirePermission,
    actor_of,
    check_origin,
)
from gatehouse.api.responses import JSONResponse
from gatehouse.api.routes.auth import cookie_mode_of, device_user_of, login_answer
from gatehouse.api.schemas import (
    CookieLoginOut,
    MfaCodeIn,
    MfaLoginIn,
    RecoveryCodesOut,
    TokenPairOut,
    TotpSetupOut,
)

# The sign-in step: no credentials, the login bucket of the rate limits (ops/ratelimit.py).
public = APIRouter(tags=["auth"])
router = APIRouter(tags=["auth"])
admin = APIRouter(prefix="/admin", tags=["admin"])

UsersWrite = Annotated[Principal, Depends(RequirePermission("users:write"))]
_ANSWERS: dict[int | str, dict[str, Any]] = {
    401: {"description": "mfa_invalid (wrong or used code), mfa_expired (sign in again)"},
}


@public.post("/auth/login/mfa", response_model=TokenPairOut | CookieLoginOut, responses=_ANSWERS)
async def login_mfa(body: MfaLoginIn, request: Request, ctx: Ctx) -> JSONResponse:
    """Finish signing in with the `mfa_token` from `mfa_required` and a TOTP or recovery code.

    `X-Auth-Mode: cookie` answers with cookies, as `/auth/login` does."""
    cookie_mode = cookie_mode_of(request)
    if cookie_mode:
        check_origin(request, ctx)  # no login CSRF from foreign sites
    issued = await ctx.mfa_login.complete(
        body.mfa_token, body.code, actor_of(request),
        auth_mode="cookie" if cookie_mode else "token", device_user_id=device_user_of(request, ctx),
    )
    return login_answer(ctx, issued, cookie_mode)


@router.post("/auth/mfa/totp/setup", response_model=TotpSetupOut)
async def totp_setup(principal: CurrentUser, ctx: Ctx) -> JSONResponse:
    """A new TOTP secret and its `otpauth://` URI, pending until confirmed (409 when MFA is on)."""
    assert principal.user_id
    return JSONResponse(await ctx.mfa.setup(principal.user_id))


@router.post("/auth/mfa/totp/confirm", response_model=RecoveryCodesOut)
async def totp_confirm(
    body: MfaCodeIn, principal: CurrentUser, request: Request, ctx: Ctx
) -> JSONResponse:
    """Turn MFA on with a code of the pending secret; answers the recovery codes, shown once."""
    assert principal.user_id
    codes = await ctx.mfa.confirm(principal.user_id, body.code, actor_of(request, principal))
    return JSONResponse({"recovery_codes": codes})


@router.delete("/auth/mfa/totp", status_code=204)
async def totp_disable(
    body: MfaCodeIn, principal: CurrentUser, request: Request, ctx: Ctx
) -> Response:
    """Turn MFA off, proven by a TOTP or recovery code (wrong: 422); sessions stay."""
    assert principal.user_id
    await ctx.mfa.disable(principal.user_id, body.code, actor_of(request, principal))
    return Response(status_code=204)


@router.post("/auth/mfa/recovery-codes", response_model=RecoveryCodesOut)
async def recovery_codes(
    body: MfaCodeIn, principal: CurrentUser, request: Request, ctx: Ctx
) -> JSONResponse:
    """A new set of recovery codes, proven by a TOTP or recovery code; the old set stops working."""
    assert principal.user_id
    codes = await ctx.mfa.regenerate(principal.user_id, body.code, actor_of(request, principal))
    return JSONResponse({"recovery_codes": codes})


@admin.delete("/users/{user_id}/mfa", status_code=204)
async def reset_mfa(user_id: str, principal: UsersWrite, request: Request, ctx: Ctx) -> Response:
    """Turn off a user's second factor (a lost phone); they set it up again after signing in."""
    await ctx.mfa.reset(user_id, actor_of(request, principal), holder=principal.permissions)
    return Response(status_code=204)
