"""Probes, metrics, the JWKS and client error reports."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from gatehouse.api.deps import Ctx, Principal, RequirePermission, authenticate, client_ip
from gatehouse.api.responses import JSONResponse
from gatehouse.api.schemas import ClientErrorIn, ClientErrorOut, Page
from gatehouse.errors import PermissionDenied
from gatehouse.ops import sentry
from gatehouse.ops.client_errors import page_url, recent_client_errors
from gatehouse.ops.health import readiness

router = APIRouter(tags=["ops"])
log = structlog.get_logger("gatehouse.client_errors")


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """200 while the process serves."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Not ready; `checks` says why"}})
async def readyz(ctx: Ctx) -> JSONResponse:
    """200 when the database is reachable, migrations are at head and the cache answers."""
    checks = await readiness(ctx.engine, ctx.kv, ctx.revocations)
    ok = all(c.ok for c in checks.values())
    body = {"status": "ok" if ok else "fail",
            "checks": {name: {"ok": c.ok, "detail": c.detail} for name, c in checks.items()}}
    return JSONResponse(body, status_code=200 if ok else 503,
                        headers={} if ok else {"Retry-After": str(ctx.settings.retry_after_seconds)})


@router.get("/metrics", response_class=Response)
async def metrics(request: Request, ctx: Ctx) -> Response:
    """Prometheus text; needs GATEHOUSE_METRICS_TOKEN, an `ops:read` token or API key."""
    token = ctx.settings.metrics_token
    header = request.headers.get("authorization", "")
    presented = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if not (token and presented and hmac.compare_digest(
        presented.encode(), token.get_secret_value().encode()
    )):
        principal = await authenticate(request)
        if "ops:read" not in principal.permissions:
            raise PermissionDenied("This needs the 'ops:read' permission.")
    return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/.well-known/jwks.json")
async def jwks(ctx: Ctx) -> JSONResponse:
    """Public keys that verify access tokens (empty under HS256)."""
    return JSONResponse(ctx.key_ring.jwks(), headers={"Cache-Control": "public, max-age=300"})


client_errors = APIRouter(tags=["ops"])


@client_errors.post("/client-errors", status_code=202)
async def report_client_error(body: ClientErrorIn, request: Request, ctx: Ctx) -> dict[str, Any]:
    """Browser error reports: logged (no cookies or headers) for error tracking."""
    # Page addresses carry tokens in their query or fragment (OAuth callbacks, reset links):
    # only scheme, host and path reach the log and the console's list.
    log.warning("client_error", message=body.message[:500], url=page_url(body.url),
                ip=client_ip(request),
                reported_request_id=body.request_id,
                request_id=request.scope["state"].get("request_id"))
    ctx.metrics.client_errors.inc()
    sentry.client_error(body.message, url=page_url(body.url), stack=body.stack,
                        reported_request_id=body.request_id,
                        request_id=request.scope["state"].get("request_id"))
    recent_client_errors(request.app.state).add(
        message=body.message, url=body.url, request_id=body.request_id)
    return {"accepted": True}


@client_errors.get("/ops/client-errors", response_model=Page[ClientErrorOut])
async def list_client_errors(_: Annotated[Principal, Depends(RequirePermission("ops:read"))],
                             request: Request) -> dict[str, Any]:
    """The last 50 browser error reports this process received, newest first (`ops:read`)."""
    return {"items": recent_client_errors(request.app.state).newest_first(), "next_cursor": None}


