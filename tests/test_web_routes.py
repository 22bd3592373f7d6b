"""The console shell and /static/ files (API.md §9): URLs, CSP, caching, CORS, GATEHOUSE_CONSOLE."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import asgi_client

pytestmark = [pytest.mark.asyncio, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
CONSOLE_ROUTES = ["/console", "/console/", "/console/account", "/console/admin/users",
                  "/console/admin/api-keys", "/console/admin/audit", "/console/ops",
                  "/console/reset-password", "/console/verify-email"]


async def test_root_redirects_to_the_console(make_app: Callable[..., Any]) -> None:
    """GET / sends the browser to /console/."""
    async with asgi_client(make_app()) as client:
        r = await client.get("/")
    assert r.status_code in (302, 307)
    assert r.headers["location"] == "/console/"


@pytest.mark.parametrize("path", CONSOLE_ROUTES)
async def test_every_console_route_serves_the_shell_with_the_csp(
    make_app: Callable[..., Any], path: str
) -> None:
    """Each client-side route answers the console's HTML shell with exactly the CSP of §9."""
    async with asgi_client(make_app()) as client:
        r = await client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CSP
    assert r.headers["cache-control"] == "no-cache"
    assert '<script type="module" src="/static/console/app.js">' in r.text
    assert "<style" not in r.text and "style=" not in r.text


async def test_the_shell_has_no_inline_script(make_app: Callable[..., Any]) -> None:
    """Every <script> of the shell loads a file from 'self' (the CSP forbids inline code)."""
    async with asgi_client(make_app()) as client:
        html = (await client.get("/console/")).text
    for chunk in html.split("<script")[1:]:
        tag, _, rest = chunk.partition(">")
        assert 'src="/static/' in tag
        assert rest.startswith("</script>")


@pytest.mark.parametrize(("path", "media"), [
    ("/static/console/app.js", "text/javascript"),
    ("/static/console/console.css", "text/css"),
    ("/static/console/favicon.svg", "image/svg+xml"),
    ("/static/gatehouse-client.js", "text/javascript"),
    ("/static/gatehouse-client.d.ts", "text/plain"),
])
async def test_static_files_have_their_content_type_csp_and_etag(
    make_app: Callable[..., Any], path: str, media: str
) -> None:
    """A static file answers with its media type, the CSP, an ETag and no-cache (updates show)."""
    async with asgi_client(make_app()) as client:
        r = await client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == media
    assert r.headers["content-security-policy"] == CSP
    assert r.headers["cache-control"] == "no-cache"
    assert r.headers["etag"].startswith('"')
    assert r.headers["x-content-type-options"] == "nosniff"


async def test_an_unchanged_file_revalidates_to_304(make_app: Callable[..., Any]) -> None:
    """If-None-Match with the current ETag answers 304 with no body."""
    async with asgi_client(make_app()) as client:
        first = await client.get("/static/console/app.js")
        again = await client.get("/static/console/app.js",
                                 headers={"If-None-Match": first.headers["etag"]})
        stale = await client.get("/static/console/app.js", headers={"If-None-Match": '"old"'})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == first.headers["etag"]
    assert stale.status_code == 200


async def test_head_answers_headers_without_a_body(make_app: Callable[..., Any]) -> None:
    """HEAD on a static file and on the shell gives the GET headers and no body."""
    async with asgi_client(make_app()) as client:
        get = await client.get("/static/console/console.css")
        head = await client.head("/static/console/console.css")
        shell = await client.head("/console/account")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(get.content))
    assert head.headers["etag"] == get.headers["etag"]
    assert shell.status_code == 200
    assert shell.headers["content-security-policy"] == CSP


@pytest.mark.parametrize("path", [
    "/static/nope.js",
    "/static/console/",
    "/static/console",
    "/static/",
    "/static/%2e%2e/console/index.html",
    "/static/console/%2e%2e/%2e%2e/console/index.html",
    "/static/..%2f..%2fapi%2froutes%2fweb.py",
    "/static/%2e%2e%2f%2e%2e%2fapi%2froutes%2fweb.py",
    "/static/console/..%5c..%5cconsole%5cindex.html",
    "/static/.hidden",
    "/static/console/app.js%00.png",
])
async def test_missing_and_escaping_paths_are_404_problems(
    make_app: Callable[..., Any], path: str
) -> None:
    """Missing files, directories and traversal attempts answer 404 problem+json, never a file."""
    async with asgi_client(make_app()) as client:
        r = await client.get(path)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "not_found"
    assert "import" not in r.text and "<html" not in r.text


async def test_static_answers_cors_for_configured_origins_only(
    make_app: Callable[..., Any]
) -> None:
    """Another origin listed in CORS_ORIGINS may import /static/ files; an unlisted one may not."""
    app = make_app(CORS_ORIGINS="https://app.example.com")
    async with asgi_client(app) as client:
        listed = await client.get("/static/console/app.js",
                                  headers={"Origin": "https://app.example.com"})
        other = await client.get("/static/console/app.js",
                                 headers={"Origin": "https://evil.example.net"})
    assert listed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "origin" in listed.headers["vary"].lower()
    assert "access-control-allow-origin" not in other.headers


async def test_console_off_removes_the_console_but_keeps_static(
    make_app: Callable[..., Any]
) -> None:
    """GATEHOUSE_CONSOLE=off: console paths and its files 404; other static files still serve."""
    app = make_app(GATEHOUSE_CONSOLE="off")
    async with asgi_client(app) as client:
        for path in ["/", "/console", "/console/", "/console/account",
                     "/static/console/app.js"]:
            r = await client.get(path)
            assert r.status_code == 404, path
            assert r.headers["content-type"] == "application/problem+json"
        # Other web apps still load the browser client from this service.
        module = await client.get("/static/gatehouse-client.js")
        assert module.status_code == 200
        assert module.headers["content-type"].startswith("text/javascript")
        assert (await client.get("/healthz")).status_code == 200


async def test_web_routes_are_not_in_the_openapi_schema(make_app: Callable[..., Any]) -> None:
    """The console and static routes are not API operations."""
    async with asgi_client(make_app()) as client:
        paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [p for p in paths if p == "/" or p.startswith(("/console", "/static"))]


async def test_web_routes_are_labelled_by_template_in_metrics(
    make_app: Callable[..., Any]
) -> None:
    """Console paths count under their route template, so raw paths never become labels."""
    app = make_app()
    async with asgi_client(app) as client:
        await client.get("/console/admin/users")
        await client.get("/static/console/app.js")
    text = app.state.ctx.metrics.render().decode()
    assert 'route="/console/{path:path}"' in text
    assert 'route="/static/{path:path}"' in text
    assert "/console/admin/users" not in text
