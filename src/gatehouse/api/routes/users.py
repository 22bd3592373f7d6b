"""`/users/profile`: the caller's own account."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from gatehouse.api.deps import Ctx, CurrentUser, actor_of
from gatehouse.api.schemas import PasswordChangeIn, ProfilePatch, UserOut
from gatehouse.users.service import public_user

router = APIRouter(tags=["users"])


@router.get("/users/profile", response_model=UserOut)
async def get_profile(principal: CurrentUser, ctx: Ctx) -> JSONResponse:
    """The caller's account."""
    assert principal.user_id
    return JSONResponse(await ctx.accounts.public_profile(principal.user_id))


@router.patch("/users/profile", response_model=UserOut)
async def patch_profile(body: ProfilePatch, principal: CurrentUser, request: Request, ctx: Ctx) -> JSONResponse:
    """Change the caller's display name."""
    assert principal.user_id
    user = await ctx.accounts.update_profile(principal.user_id, body.name, actor_of(request, principal))
    return JSONResponse(public_user(user))


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
