"""`/users/profile`: the caller's own account."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gatehouse.api.deps import Ctx, CurrentUser, actor_of
from gatehouse.api.responses import JSONResponse
from gatehouse.api.schemas import PasswordChangeIn, PhoneCodeIn, ProfileOut, ProfilePatch
from gatehouse.users.profile import own_profile

router = APIRouter(tags=["users"])


@router.get("/users/profile", response_model=ProfileOut)
async def get_profile(principal: CurrentUser, ctx: Ctx) -> JSONResponse:
    """The caller's account, with notification switches and phone."""
    assert principal.user_id
    return JSONResponse(await ctx.accounts.public_profile(principal.user_id))


@router.patch("/users/profile", response_model=ProfileOut)
async def patch_profile(
    body: ProfilePatch, principal: CurrentUser, request: Request, ctx: Ctx
) -> JSONResponse:
    """Change the display name, notification switches (`notify`) and/or `phone`."""
    assert principal.user_id
    changes: dict[str, Any] = {}
    if body.name is not None:
        changes["name"] = body.name
    if body.notify is not None:
        changes["notify"] = body.notify.model_dump(exclude_none=True)
    if "phone" in body.model_fields_set:
        changes["phone"] = body.phone
    actor = actor_of(request, principal)
    user = await ctx.accounts.update_profile(principal.user_id, changes, actor)
    return JSONResponse(own_profile(user))


@router.post("/users/profile/phone/verify-request", status_code=202)
async def phone_verify_request(principal: CurrentUser, ctx: Ctx) -> Response:
    """Text a 6-digit code to the profile's phone (at most 3 an hour)."""
    assert principal.user_id
    await ctx.phone.request(principal.user_id)
    return Response(status_code=202)


@router.post("/users/profile/phone/verify", status_code=204)
async def phone_verify(
    body: PhoneCodeIn, principal: CurrentUser, request: Request, ctx: Ctx
) -> Response:
    """Prove the phone with the texted code; 5 wrong codes spend it."""
    assert principal.user_id
    await ctx.phone.verify(principal.user_id, body.code, actor_of(request, principal))
    return Response(status_code=204)


@router.post("/users/profile/password", status_code=204)
async def change_password(
    body: PasswordChangeIn, principal: CurrentUser, request: Request, ctx: Ctx
) -> Response:
    """Change the password; every other session of the user is revoked."""
    assert principal.user_id
    user = await ctx.accounts.get(principal.user_id)
    await ctx.accounts.change_password(
        user, principal.session_id, body.current_password, body.new_password,
        actor_of(request, principal),
    )
    return Response(status_code=204)
