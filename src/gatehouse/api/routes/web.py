"""The browser side (API.md §9): the web console's shell and the files under `/static/`.

The console is a single-page app: every path under `/console/` answers the same
shell (`web/console/index.html`), whose modules read the path and pick the page.
`/static/{path}` serves `web/static/` (the browser client other apps load, and
the console's modules and styles). Both carry the CSP of §9 and `Cache-Control:
no-cache` with an ETag, so a browser revalidates and sees an upgrade at once
while an unchanged file costs a 304. CORS for other origins comes from the
app-wide CORS middleware (`CORS_ORIGINS`). None of this is in the OpenAPI schema.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from gatehouse import errors
from gatehouse.api.problem import problem_response, request_id_of

WEB_DIR = Path(__file__).resolve().parent.parent.parent / "web"
STATIC_DIR = WEB_DIR / "static"
CONSOLE_SHELL = WEB_DIR / "console" / "index.html"
PUSH_WORKER = "console/push-worker.js"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

# By suffix, longest first where one ends another (".d.ts" before ".ts").
_TYPES: list[tuple[str, str]] = [
    (".d.ts", "text/plain; charset=utf-8"),
    (".js", "text/javascript; charset=utf-8"),
    (".mjs", "text/javascript; charset=utf-8"),
    (".ts", "text/plain; charset=utf-8"),
    (".css", "text/css; charset=utf-8"),
    (".html", "text/html; charset=utf-8"),
    (".json", "application/json"),
    (".map", "application/json"),
    (".webmanifest", "application/manifest+json"),
    (".svg", "image/svg+xml"),
    (".png", "image/png"),
    (".ico", "image/x-icon"),
    (".woff2", "font/woff2"),
    (".txt", "text/plain; charset=utf-8"),
    (".md", "text/plain; charset=utf-8"),
]


def content_type_of(name: str) -> str:
    lowered = name.lower()
    for suffix, media in _TYPES:
        if lowered.endswith(suffix):
            return media
    return "application/octet-stream"


def resolve_static(root: Path, path: str) -> Path | None:
    """The file `path` names under `root`, or None: no traversal, hidden files or directories."""
    if not path or "\x00" in path or "\\" in path:
        return None
    parts = path.split("/")
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        return None
    candidate = (root / path).resolve()
    if not candidate.is_relative_to(root.resolve()) or not candidate.is_file():
        return None
    return candidate


def _not_found(request: Request) -> Response:
    response = problem_response(errors.NotFound("No such file."), request_id_of(request))
    response.headers["Content-Security-Policy"] = CSP
    return response


def file_response(request: Request, file: Path, media_type: str) -> Response:
    """The file with CSP, ETag and `no-cache`; 304 when the caller's copy is current."""
    body = file.read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {
        "Content-Security-Policy": CSP,
        "Cache-Control": "no-cache",
        "ETag": etag,
    }
    wanted = request.headers.get("if-none-match", "")
    tags = {tag.strip().removeprefix("W/") for tag in wanted.split(",")}
    if etag in tags or wanted.strip() == "*":
        return Response(status_code=304, headers=headers)
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(body))
        return Response(status_code=200, headers=headers, media_type=media_type)
    return Response(body, headers=headers, media_type=media_type)


def router(*, console: bool) -> APIRouter:
    """`/static/{path}` always; `/`, `/console` and `/console/{path}` only with the console on."""
    web = APIRouter(include_in_schema=False)

    @web.api_route("/static/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
    async def static_file(path: str, request: Request) -> Response:
        """A file under web/static/ (the console's own files only while the console is on)."""
        if not console and (path == "console" or path.startswith("console/")):
            return _not_found(request)
        file = resolve_static(STATIC_DIR, path)
        if file is None:
            return _not_found(request)
        response = file_response(request, file, content_type_of(file.name))
        if path == PUSH_WORKER:  # it lives here but serves the console's pages (API.md §10)
            response.headers["Service-Worker-Allowed"] = "/console/"
        return response

    if not console:
        return web

    @web.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def root() -> Response:
        """The service's front page is the console."""
        return RedirectResponse("/console/", status_code=302)

    @web.api_route("/console", methods=["GET", "HEAD"], include_in_schema=False)
    @web.api_route("/console/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
    async def console_shell(request: Request) -> Response:
        """The console's shell for every client-side route; its modules pick the page."""
        return file_response(request, CONSOLE_SHELL, "text/html; charset=utf-8")

    return web
