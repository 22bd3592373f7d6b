"""Pre-built dependency paths for routes whose every input comes from the Request.

FastAPI solves a route's dependencies on every request: it walks the dependency tree,
looks up its cache keys, builds the endpoint's context for error messages, reads the
body, validates parameters and answers through `solve_dependencies`. For a token check
(`GET /api/v1/users/profile`, W1) that machinery was about 18 % of the request, as much
as the token check itself (bench/RESULTS.md, 2026-12-03 profile).

Most of Gatehouse's routes need nothing but the Request: `CurrentUser`, `Ctx` and
`RequirePermission(...)` are async functions of the request alone, and the endpoints
return a Response (the `response_model` is for the OpenAPI document only). For such a
route `install` builds the plan once, at start, the dependencies in FastAPI's order,
each called once per request as FastAPI's cache does, and swaps the route's ASGI app
for FastAPI's own `request_response` around that plan: the same exception handling and
exit stacks, so errors still become problem details.

A route may also take one JSON body (login, refresh, register: W2 and W3). Its plan
reads the body, and when the request is the plain case (`Content-Type:
application/json`, a body that parses and validates against the body's field, FastAPI's
own `ModelField.validate`) runs the dependencies and the endpoint with it. Every other
case (no or another content type, an empty body, bad JSON, a validation error, a body
that could not be read) is handed to FastAPI's own handler for the route, with the body
already read, so every refusal is FastAPI's, word for word. FastAPI validates the body
after the dependencies; validation has no side effects, so doing it first changes nothing
a client sees (a refused dependency still answers before a bad body).

A route with anything else (path, query, header or cookie parameters, a form or several
body fields, sub-dependencies, `yield` dependencies, sync callables, an endpoint that may
return a plain value) keeps FastAPI's handler; so does every route where FastAPI's
OpenTelemetry bridge is on (app.py), since the plan records no telemetry.
`tests/test_lean_routes.py` checks which routes are planned and that their answers match
FastAPI's own handler.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, params
from fastapi._compat import ModelField
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, request_response
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class Plan:
    """The dependencies as (endpoint parameter or None, function of the request), in
    FastAPI's order, and the JSON body's parameter when the route takes one."""

    steps: list[tuple[str | None, Callable[[Request], Awaitable[Any]]]] = field(
        default_factory=list)
    body: ModelField | None = None


def _request_only(dependant: Dependant) -> bool:
    """An async function (not a generator) whose one input is the Request."""
    call = dependant.call
    return (
        call is not None and inspect.iscoroutinefunction(call)
        and dependant.request_param_name is not None and dependant.use_cache
        and not (_other_inputs(dependant) or dependant.dependencies
                 or dependant.own_oauth_scopes)
        and len(inspect.signature(call).parameters) == 1
    )


def _other_inputs(dependant: Dependant, body_allowed: bool = False) -> bool:
    """Whether FastAPI would give it anything but the Request (parameters, a body, ...)."""
    return bool(
        dependant.path_params or dependant.query_params or dependant.header_params
        or dependant.cookie_params or (dependant.body_params and not body_allowed)
        or dependant.websocket_param_name or dependant.http_connection_param_name
        or dependant.response_param_name or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
    )


def _returns_response(call: Callable[..., Any]) -> bool:
    try:
        returned = typing.get_type_hints(call).get("return")
    except Exception:  # an annotation that cannot be resolved: not sure, so not planned
        return False
    return isinstance(returned, type) and issubclass(returned, Response)


def _json_body(route: APIRoute) -> ModelField | None:
    """The route's one JSON body field, validated whole (not embedded), or None."""
    body = route.dependant.body_params
    if (
        len(body) != 1 or route.body_field is None or getattr(route, "_embed_body_fields", True)
        or isinstance(body[0].field_info, params.Form)
    ):
        return None
    return body[0]


def plan_for(route: APIRoute) -> Plan | None:
    """The route's plan, or None when FastAPI's own handler must serve it."""
    endpoint = route.dependant
    plan = Plan(body=_json_body(route))
    if (
        (route.body_field is not None and plan.body is None)
        or not inspect.iscoroutinefunction(endpoint.call)
        or not _returns_response(endpoint.call)
        or _other_inputs(endpoint, body_allowed=plan.body is not None)
    ):
        return None
    for dependency in endpoint.dependencies:
        if not _request_only(dependency):
            return None
        assert dependency.call is not None
        plan.steps.append((dependency.name, dependency.call))
    if endpoint.request_param_name is not None:
        plan.steps.append((endpoint.request_param_name, _itself))
    return plan


async def _itself(request: Request) -> Request:
    return request


def _replaying(request: Request, error: Exception) -> Request:
    """The request again, for FastAPI's handler, its body read failing as ours did."""
    async def receive() -> Message:
        raise error

    return Request(request.scope, receive)


def handler(plan: Plan, endpoint: Callable[..., Awaitable[Response]],
            fallback: Handler | None = None) -> Handler:
    body_field = plan.body

    async def app(request: Request) -> Response:
        values: dict[str, Any] = {}
        if body_field is not None:
            assert fallback is not None
            try:
                raw = await request.body()
            except Exception as exc:  # a disconnect, a body over the limit: FastAPI's answer
                return await fallback(_replaying(request, exc))
            if not raw or request.headers.get("content-type") != "application/json":
                return await fallback(request)
            try:
                received = json.loads(raw)
            except ValueError:
                return await fallback(request)
            value, errors = body_field.validate(received, {}, loc=("body",))
            if errors:
                return await fallback(request)
            values[body_field.name] = value
        solved: dict[Callable[..., Any], Any] = {}
        for name, call in plan.steps:
            if call in solved:
                value = solved[call]
            else:
                value = solved[call] = await call(request)
            if name is not None:
                values[name] = value
        return await endpoint(**values)

    return app


def install(app: FastAPI) -> list[APIRoute]:
    """Give every route that allows it a pre-built plan; the routes planned."""
    planned = []
    for route in app.router.routes:
        if type(route) is not APIRoute:
            continue
        plan = plan_for(route)
        if plan is None:
            continue
        assert route.dependant.call is not None
        fallback = route.get_route_handler() if plan.body is not None else None
        route.app = request_response(handler(plan, route.dependant.call, fallback))
        planned.append(route)
    return planned
