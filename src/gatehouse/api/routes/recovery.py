"""`/auth/password/*` and `/auth/email/*`: password reset and email verification (API.md §8).

The rules live in `gatehouse.users.recovery`; these routes only translate. The
four count against their own per-IP bucket of GATEHOUSE_AUTH_RATE_LIMIT
(`recovery`, ops/ratelimit.py), not against `api`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gatehouse.api.deps import Ctx, actor_of, require_user_session
from gatehouse.api.schemas import EmailIn, EmailVerifyIn, PasswordResetIn
from gatehouse.users.emails import checked_email

router = APIRouter(tags=["auth"])

_ANSWERS: dict[int | str, dict[str, Any]] = {
    422: {"description": "Validation failed (problem+json)"},
    429: {"description": "Too many requests (problem+json)"},
}
_LINK_ANSWERS: dict[int | str, dict[str, Any]] = {
    400: {"description": "link_invalid: unknown, used, superseded or expired (problem+json)"},
    **_ANSWERS,
}


@router.post("/auth/password/forgot", status_code=202, responses=_ANSWERS, response_class=Response)
async def forgot_password(body: EmailIn, request: Request, ctx: Ctx) -> Response:
    """Email a password-reset link, if the address has an enabled account (always 202)."""
    ctx.recovery.request_reset(checked_email(body.email), actor_of(request))
    return Response(status_code=202)


@router.post("/auth/password/reset", status_code=204, responses=_LINK_ANSWERS)
async def reset_password(body: PasswordResetIn, request: Request, ctx: Ctx) -> Response:
    """Set a new password with a reset link's token; every session of the account ends."""
    await ctx.recovery.reset(body.token, body.new_password, actor_of(request))
    return Response(status_code=204)


@router.post("/auth/email/verify-request", status_code=202, response_class=Response,
             responses={401: {"description": "Not authenticated (problem+json)"}, **_ANSWERS})
async def request_verification(request: Request, ctx: Ctx, body: EmailIn | None = None) -> Response:
    """Email a verification link: to the caller's address, or (no session) to `email`."""
    if body is not None:
        ctx.recovery.request_verification(checked_email(body.email), actor_of(request))
    else:
        principal = await require_user_session(request)
        assert principal.user_id
        ctx.recovery.request_verification_of(principal.user_id, actor_of(request, principal))
    return Response(status_code=202)


@router.post("/auth/email/verify", status_code=204, responses=_LINK_ANSWERS)
async def verify_email(body: EmailVerifyIn, request: Request, ctx: Ctx) -> Response:
    """Mark the address verified with a verification link's token."""
    await ctx.recovery.verify(body.token, actor_of(request))
    return Response(status_code=204)
