"""A dictionary lookup for routes without path parameters, before Starlette's route scan.

Starlette's router tries each route's regular expression in turn, so a request to
the profile (W1) ran about 16 FastAPI and 17 Starlette `matches` before reaching its
route: about a seventh of the in-process cost of that request (bench/RESULTS.md,
2026-12-02 profile). `install` puts a table `(method, path) -> route` in front of
the scan. The answer is the one the scan would give: a path goes into the table
only for a route that the scan would pick first, that is, when no earlier route
(a parametrised path, a mount, anything else) could fully match that method and
path. Everything else (parameters, 404, 405, slash redirects) falls through to
the scan unchanged. The selected route is then handled exactly as the scan does.
"""

from __future__ import annotations

from typing import Any

import fastapi.routing as fastapi_routing
from fastapi import FastAPI
from starlette.routing import BaseRoute, Match, Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

_route_selected: Any = getattr(fastapi_routing, "_route_selected", None)


def _could_match(route: BaseRoute, method: str, path: str) -> bool:
    """Whether `route` might fully match an HTTP `method path` (when unsure: yes)."""
    if isinstance(route, WebSocketRoute):
        return False
    if isinstance(route, Route):
        methods = route.methods
        return bool(route.path_regex.match(path)) and (methods is None or method in methods)
    if isinstance(route, Mount):
        return path == route.path or path.startswith(route.path.rstrip("/") + "/")
    return True


def build_table(routes: list[BaseRoute]) -> dict[tuple[str, str], Route]:
    """`(method, path) -> route` for every static path whose route the scan would pick."""
    table: dict[tuple[str, str], Route] = {}
    for index, route in enumerate(routes):
        api_route = fastapi_routing.APIRoute
        if not isinstance(route, api_route) or type(route) is not api_route:
            continue  # exactly FastAPI's own route class: its matching is what is mirrored here
        if route.param_convertors or not route.methods:
            continue
        for method in route.methods:
            key = (method, route.path)
            if key in table:
                continue
            if not any(_could_match(earlier, method, route.path) for earlier in routes[:index]):
                table[key] = route
    return table


class StaticRoutes:
    """The router's own app, with the table consulted first."""

    def __init__(self, router: fastapi_routing.APIRouter, scan: ASGIApp) -> None:
        self.router = router
        self.scan = scan
        self.table = build_table(list(router.routes))
        self.built_for = len(router.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http" and not scope.get("root_path"):
            if len(self.router.routes) != self.built_for:  # a route added later (tests do)
                self.table = build_table(list(self.router.routes))
                self.built_for = len(self.router.routes)
            route = self.table.get((scope["method"], scope["path"]))
        if route is None:
            await self.scan(scope, receive, send)
            return
        # What the scan does for the first route that matches fully (fastapi.routing.APIRouter.app).
        fastapi_routing._apply_router_form_limits(scope, self.router.form_limits)
        scope.setdefault("router", self.router)
        match, child_scope = route.matches(scope)
        if match is not Match.FULL:  # cannot happen for a table entry; never guess
            await self.scan(scope, receive, send)
            return
        fastapi_routing._update_scope(scope, child_scope)
        _route_selected(scope=scope, path=route.path_format, mount=False)
        await route.handle(scope, receive, send)


def install(app: FastAPI) -> None:
    """Once every route is added: look static paths up before the scan."""
    router: Any = app.router
    # The scan's private helpers must still exist; fail at start-up, not per request.
    for name in ("_apply_router_form_limits", "_update_scope", "_route_selected"):
        assert callable(getattr(fastapi_routing, name, None)), f"fastapi changed: {name}"
    assert router.middleware_stack == router.app, "the router has its own middleware"
    router.middleware_stack = StaticRoutes(router, router.app)
