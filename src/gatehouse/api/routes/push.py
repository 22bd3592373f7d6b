"""`/push/*`: the VAPID public key and Web Push subscriptions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import Field

from gatehouse.api.deps import Ctx, CurrentUser
from gatehouse.api.responses import JSONResponse
from gatehouse.api.schemas import Strict
from gatehouse.errors import NotFound
from gatehouse.notify.subscriptions import PushSubscriptions

router = APIRouter(tags=["push"])
KeyPart = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_=-]+$")]


class SubscriptionKeys(Strict):
    p256dh: KeyPart
    auth: KeyPart


class SubscriptionIn(Strict):
    endpoint: Annotated[str, Field(min_length=8, max_length=2048)]
    keys: SubscriptionKeys
    expirationTime: int | None = None  # noqa: N815 - the browser's PushSubscription.toJSON() field


class UnsubscribeIn(Strict):
    endpoint: Annotated[str, Field(min_length=8, max_length=2048)]


class VapidKeyOut(Strict):
    public_key: str


def _subscriptions(ctx: Ctx) -> PushSubscriptions:
    return PushSubscriptions(ctx.db, allow_private=ctx.settings.push_allow_private)


@router.get("/push/vapid-public-key", response_model=VapidKeyOut)
async def vapid_public_key(ctx: Ctx) -> dict[str, str]:
    """The application server key browsers subscribe with (404 when VAPID is not configured)."""
    if not ctx.settings.vapid_public_key:
        raise NotFound("Web Push is not configured.")
    return {"public_key": ctx.settings.vapid_public_key}


@router.post("/push/subscriptions", status_code=201, responses={
    409: {"description": "The endpoint is registered to another account (problem+json)"},
    422: {"description": "Not an https endpoint on public addresses (problem+json)"},
})
async def subscribe(body: SubscriptionIn, principal: CurrentUser, ctx: Ctx) -> JSONResponse:
    """Store the browser's push subscription for the caller (409 if another account holds it)."""
    assert principal.user_id
    sub_id = await _subscriptions(ctx).subscribe(
        principal.user_id, body.endpoint, body.keys.p256dh, body.keys.auth
    )
    return JSONResponse({"id": sub_id, "endpoint": body.endpoint}, status_code=201)


@router.delete("/push/subscriptions", status_code=204)
async def unsubscribe(body: UnsubscribeIn, principal: CurrentUser, ctx: Ctx) -> Response:
    """Forget one of the caller's subscriptions."""
    assert principal.user_id
    await _subscriptions(ctx).unsubscribe(principal.user_id, body.endpoint)
    return Response(status_code=204)
