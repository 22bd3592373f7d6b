"""`/admin/*`: users, sessions, audit and API keys, each behind a permission.

Routes that change a user pass the caller's permissions (`holder`) down: no one grants more
than they hold, nor acts on a user who holds more (API.md §4, `gatehouse.auth.rbac`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from gatehouse.api.deps import Ctx, Principal, RequirePermission, actor_of
from gatehouse.api.responses import JSONResponse
from gatehouse.api.schemas import (
    AdminUserCreate,
    AdminUserPatch,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    AuditEventOut,
    Page,
    UserOut,
)
from gatehouse.audit.service import list_events
from gatehouse.users import service as users
from gatehouse.users.service import public_user

router = APIRouter(prefix="/admin", tags=["admin"])

UsersRead = Annotated[Principal, Depends(RequirePermission("users:read"))]
UsersWrite = Annotated[Principal, Depends(RequirePermission("users:write"))]
SessionsRevoke = Annotated[Principal, Depends(RequirePermission("sessions:revoke"))]
AuditRead = Annotated[Principal, Depends(RequirePermission("audit:read"))]
KeysManage = Annotated[Principal, Depends(RequirePermission("api_keys:manage"))]
Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[str | None, Query(min_length=1, max_length=512)]  # `cursor=` is no cursor


@router.get("/users", response_model=Page[UserOut])
async def list_users(
    _: UsersRead, ctx: Ctx, q: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = 50, cursor: Cursor = None,
) -> dict[str, Any]:
    """Users ordered by email; `q` matches email or name."""
    async with ctx.db() as db:
        rows, next_cursor = await users.list_users(db, q=q, limit=limit, cursor=cursor)
    return {"items": [public_user(u) for u in rows], "next_cursor": next_cursor}


@router.post("/users", status_code=201, response_model=UserOut)
async def create_user(body: AdminUserCreate, principal: UsersWrite, request: Request, ctx: Ctx) -> JSONResponse:
    """Create a user with roles."""
    user = await ctx.accounts.create(
        email=body.email, password=body.password, name=body.name, roles=body.roles,
        actor=actor_of(request, principal), holder=principal.permissions,
        email_verified=body.email_verified,
    )
    return JSONResponse(public_user(user), status_code=201)


@router.get("/users/{user_id}", response_model=UserOut)
async def get_user(user_id: str, _: UsersRead, ctx: Ctx) -> JSONResponse:
    """One user."""
    return JSONResponse(public_user(await ctx.accounts.get(user_id)))


@router.patch("/users/{user_id}", response_model=UserOut)
async def patch_user(
    user_id: str, body: AdminUserPatch, principal: UsersWrite, request: Request, ctx: Ctx
) -> JSONResponse:
    """Change name, roles (effective within 1 s) or disabled (revokes every session)."""
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    user = await ctx.accounts.admin_update(
        user_id, changes, actor_of(request, principal), holder=principal.permissions
    )
    return JSONResponse(public_user(user))


@router.delete("/users/{user_id}", status_code=204)
async def delete_user(user_id: str, principal: UsersWrite, request: Request, ctx: Ctx) -> Response:
    """Delete a user; their sessions are revoked first."""
    await ctx.accounts.delete(
        user_id, actor_of(request, principal), holder=principal.permissions
    )
    return Response(status_code=204)


@router.post("/users/{user_id}/unlock", status_code=204)
async def unlock_user(user_id: str, principal: UsersWrite, request: Request, ctx: Ctx) -> Response:
    """Clear login throttling for the account."""
    await ctx.accounts.unlock(
        user_id, actor_of(request, principal), holder=principal.permissions
    )
    return Response(status_code=204)


@router.post("/users/{user_id}/revoke-sessions", status_code=204)
async def revoke_sessions(
    user_id: str, principal: SessionsRevoke, request: Request, ctx: Ctx
) -> Response:
    """Revoke every session of the user."""
    await ctx.accounts.revoke_all(
        user_id, actor_of(request, principal), holder=principal.permissions
    )
    return Response(status_code=204)


@router.get("/audit", response_model=Page[AuditEventOut])
async def audit(
    _: AuditRead, ctx: Ctx, type: Annotated[str | None, Query(max_length=64)] = None,  # noqa: A002
    user_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = 50, cursor: Cursor = None,
) -> dict[str, Any]:
    """Security events, newest first."""
    async with ctx.db() as db:
        items, next_cursor = await list_events(
            db, type_=type, user_id=user_id, limit=limit, cursor=cursor
        )
    return {"items": items, "next_cursor": next_cursor}


@router.get("/api-keys", response_model=Page[ApiKeyOut])
async def list_api_keys(_: KeysManage, ctx: Ctx, limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    """Live API keys (never their secrets)."""
    items, next_cursor = await ctx.api_keys.list(limit, cursor)
    return {"items": items, "next_cursor": next_cursor}


@router.post("/api-keys", status_code=201, response_model=ApiKeyCreated)
async def create_api_key(body: ApiKeyCreate, principal: KeysManage, request: Request, ctx: Ctx) -> ApiKeyCreated:
    """Create a key; `key` and `signing_secret` are shown only in this answer."""
    created = await ctx.api_keys.create(
        name=body.name, scopes=body.scopes, expires_at=body.expires_at,
        require_signature=body.require_signature, actor=actor_of(request, principal),
        grantable=principal.permissions,
    )
    return ApiKeyCreated(**created)


@router.delete("/api-keys/{key_id}", status_code=204)
async def revoke_api_key(key_id: str, principal: KeysManage, request: Request, ctx: Ctx) -> Response:
    """Revoke a key at once."""
    await ctx.api_keys.revoke(key_id, actor_of(request, principal))
    return Response(status_code=204)
