"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from gatehouse import __version__
from gatehouse.api import cookies, lean_routes, openapi, problem, static_routes
from gatehouse.api.client_ip import ClientIP
from gatehouse.api.cors import ProblemCORSMiddleware
from gatehouse.api.middleware import GatehouseMiddleware
from gatehouse.api.routes import admin, auth, docs, mfa, ops, push, recovery, users, web
from gatehouse.auth.janitor import PRUNE_INTERVAL, prune_ended_sessions
from gatehouse.auth.revocation import POLL_INTERVAL, POLL_OVERLAP, apply_unlocks
from gatehouse.context import Context
from gatehouse.notify.background import cancel_until_done
from gatehouse.ops import sentry
from gatehouse.settings import Settings
from gatehouse.users.recovery import prune_links

log = structlog.get_logger("gatehouse")


async def _follow_revocations(ctx: Context) -> None:
    """Apply revocations and unlocks written by other processes (CLI, other instances).

    Also prunes long-ended sessions and expired email links every PRUNE_INTERVAL seconds.
    Until the start-up warm-up of revocations has succeeded, protected routes answer
    503 and each poll retries it (API.md §3).
    """
    last_event = 0
    next_prune = time.monotonic() + PRUNE_INTERVAL
    while True:
        await asyncio.sleep(POLL_INTERVAL)
        try:
            async with ctx.db() as db:
                was_ready = ctx.revocations.ready
                restored = await ctx.revocations.poll(db)
                if not was_ready:
                    log.info("revocations_loaded", revocations_restored=restored)
                await ctx.accounts.cache.evict_changed(db, POLL_OVERLAP)
                last_event = await apply_unlocks(db, ctx.throttle, last_event)
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + PRUNE_INTERVAL
                async with ctx.db.begin() as db:
                    pruned = await prune_ended_sessions(db, idle_ttl=ctx.settings.session_idle_ttl)
                    links = await prune_links(db)
                log.info("sessions_pruned", count=pruned, email_links=links)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database may be down for a while; keep following
            log.warning("revocation_poll_failed", error=type(exc).__name__)


def _add_routes(app: FastAPI, router: APIRouter, *, prefix: str, deprecated: bool = False) -> None:
    """Register a router's routes directly on the app, under `prefix`.

    Recent FastAPI versions resolve `include_router` lazily, matching every
    included router on every request (measured: over half of the CPU of a
    request to /healthz). Flat routes keep matching to one pass over a list.
    The router's own prefix, tags and dependencies are already part of each route.
    """
    for route in router.routes:
        assert isinstance(route, APIRoute), route
        app.add_api_route(
            prefix + route.path,
            route.endpoint,
            methods=sorted(route.methods),
            response_model=route.response_model,
            status_code=route.status_code,
            tags=list(route.tags),
            dependencies=list(route.dependencies),
            summary=route.summary,
            description=route.description,
            response_description=route.response_description,
            responses=dict(route.responses),
            deprecated=deprecated or route.deprecated,
            name=route.name,
            include_in_schema=route.include_in_schema and not deprecated,
            response_class=route.response_class,
            operation_id=f"{route.unique_id}_legacy" if deprecated else None,
        )


def _fastapi_telemetry() -> dict[str, bool] | None:
    """FastAPI's OpenTelemetry bridge, on only where OpenTelemetry is configured.

    The bridge asks OpenTelemetry's global providers on every request whether anyone
    listens (3.5 % of a token-checked request in a profile, bench/RESULTS.md 2026-12-03).
    Gatehouse's own signals are Prometheus metrics and JSON logs; a deployment that uses
    OpenTelemetry configures it through its standard `OTEL_*` variables, and then the
    bridge stays on as FastAPI ships it.
    """
    if any(name.startswith("OTEL_") for name in os.environ):
        return None
    return {"tracing": False, "metrics": False, "logs": False}


def create_app(settings: Settings, context: Context | None = None) -> FastAPI:
    ctx = context or Context.build(settings)
    sentry.setup(settings)  # SENTRY_DSN: unhandled errors and browser reports (ops/sentry.py)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            async with ctx.db() as db:
                restored = await ctx.revocations.warm_up(db)
            log.info("startup", version=__version__, database=ctx.engine.dialect.name,
                     cache=ctx.kv.name, revocations_restored=restored)
        except Exception as exc:  # the database may be down at boot; /readyz says so
            # Protected routes answer 503 until the poller has loaded the revocations.
            log.warning("startup_warm_up_failed", error=type(exc).__name__)
        poller = asyncio.create_task(_follow_revocations(ctx))
        ctx.mailer.start()  # email goes out from here, never on the request path (API.md §8)
        ctx.alerts.start()  # Slack alerts too (API.md §6 GATEHOUSE_ALERTS)
        ctx.sms.start()  # and texts and user notifications (API.md §10)
        ctx.notifier.start()
        yield
        await cancel_until_done([poller])
        await ctx.notifier.stop()
        await ctx.mailer.stop()
        await ctx.alerts.stop()
        await ctx.sms.stop()
        await ctx.close()

    telemetry = _fastapi_telemetry()
    app = FastAPI(
        title="Gatehouse",
        version=__version__,
        description="Self-hosted authentication and API-token service.",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI from the package, not a CDN: api/routes/docs.py
        redoc_url=None,
        telemetry=telemetry,
    )
    app.state.ctx = ctx
    cookies.install()
    problem.install(app)
    openapi.install(app)

    _add_routes(app, ops.router, prefix="")
    for prefix, deprecated in (("/api/v1", False), ("/api", True)):
        routers = [auth.public, auth.router, recovery.router, users.router, admin.router,
                   push.router, ops.client_errors, mfa.public, mfa.router, mfa.admin]
        if settings.signup == "open":
            routers.append(auth.signup)
        for router in routers:
            _add_routes(app, router, prefix=prefix, deprecated=deprecated)
    _add_routes(app, web.router(console=settings.console == "on"), prefix="")
    _add_routes(app, docs.router(app.title), prefix="")
    static_routes.install(app)  # static paths by dictionary lookup, same answers as the scan
    if telemetry is not None:  # FastAPI's OpenTelemetry bridge off: pre-built dependency paths
        lean_routes.install(app)

    cors: dict[str, Any] | None = None
    if settings.cors_origins:
        cors = {
            "allow_origins": settings.cors_origins,
            "allow_credentials": True,
            "allow_methods": ["GET", "POST", "PUT", "PATCH", "DELETE"],
            "allow_headers": ["Authorization", "Content-Type", "X-CSRF-Token", "X-Request-ID",
                              "X-Auth-Mode", "X-API-Key", "X-Signature"],
            "expose_headers": ["X-Request-ID", "Retry-After", "RateLimit-Limit",
                               "RateLimit-Remaining", "RateLimit-Reset"],
            "max_age": 600,
        }
        app.add_middleware(ProblemCORSMiddleware, **cors)
    app.add_middleware(
        GatehouseMiddleware,
        metrics=ctx.metrics,
        client_ip=ClientIP(settings.trusted_proxies),
        max_body=settings.max_body_bytes,
        max_headers=settings.max_header_bytes,
        hsts=settings.https,
        retry_after=settings.retry_after_seconds,
        rate_limits=ctx.rate_limits,
        # The same policy, applied to the answers the outer middleware makes itself.
        cors=ProblemCORSMiddleware(_no_app, **cors) if cors else None,
    )
    return app


async def _no_app(scope: Any, receive: Any, send: Any) -> None:
    raise RuntimeError("only the CORS header logic of this instance is used")


def app_from_env() -> FastAPI:
    """uvicorn factory (`gatehouse serve`): settings from the environment, JSON logs."""
    from gatehouse.ops.logging import configure_logging
    from gatehouse.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_file)
    return create_app(settings)
