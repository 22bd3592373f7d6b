"""CORS (API.md §6) with refused preflights answered as problem+json."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Receive, Scope, Send

from gatehouse import errors
from gatehouse.api.problem import problem_response


class ProblemCORSMiddleware(CORSMiddleware):
    """Starlette's CORS (exact origins, credentials), with refused preflights as problem+json.

    Starlette answers a refused preflight with a text/plain 400; API.md §2 wants
    every 4xx as problem+json, so it becomes 403 `forbidden` (still without
    Access-Control-Allow-Origin for a foreign origin, so the browser blocks it).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            headers = Headers(scope=scope)
            if "origin" in headers and "access-control-request-method" in headers:
                response = self.preflight_response(request_headers=headers)
                if response.status_code != 200:
                    refused = bytes(response.body).decode("latin-1")
                    refused = refused.removeprefix("Disallowed CORS ")
                    problem = problem_response(
                        errors.PermissionDenied(f"CORS preflight refused ({refused})."),
                        scope.get("state", {}).get("request_id"),
                    )
                    for name, value in response.headers.items():
                        if name not in ("content-type", "content-length"):
                            problem.headers[name] = value
                    response = problem
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)
