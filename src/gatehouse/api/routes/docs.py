"""`/docs`: Swagger UI served from the package, with its own Content-Security-Policy.

FastAPI's default page loads Swagger UI from a CDN, which lets a third party
run script on the auth service's origin and fails offline. The page here loads
the vendored `swagger-ui-dist` files (`web/swagger/`, Apache-2.0) from
`/docs/assets/`. FastAPI's page starts Swagger UI with one inline script; the
CSP allows exactly that script by its SHA-256 hash (CSP Level 2), never
`'unsafe-inline'`. The console's stricter CSP (API.md §9) covers `/console` and
`/static` only. Nothing here is in the OpenAPI schema.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import Response

from gatehouse import errors

SWAGGER_UI_VERSION = "5.35.0"
SWAGGER_DIR = Path(__file__).resolve().parent.parent.parent / "web" / "swagger"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _asset_url(name: str) -> str:
    return f"/docs/assets/{name}?v={SWAGGER_UI_VERSION}"


def docs_page(title: str, openapi_url: str = "/openapi.json") -> tuple[bytes, str]:
    """The page's HTML and the CSP that lets exactly its inline script run."""
    html = bytes(get_swagger_ui_html(
        openapi_url=openapi_url,
        title=f"{title} - API reference",
        swagger_js_url=_asset_url("swagger-ui-bundle.js"),
        swagger_css_url=_asset_url("swagger-ui.css"),
        swagger_favicon_url=_asset_url("favicon-32x32.png"),
        oauth2_redirect_url=None,
        # No badge fetched from validator.swagger.io (a third-party origin).
        swagger_ui_parameters={"validatorUrl": None},
    ).body)
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html.decode())
    )
    csp = (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; object-src 'none'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )
    return html, csp


@functools.cache
def _asset(name: str) -> bytes:
    """Read at the first request for it: 1.9 MB a worker holds only once someone opens /docs."""
    return (SWAGGER_DIR / name).read_bytes()


def router(title: str) -> APIRouter:
    """The page and its assets, each read once."""
    html, csp = docs_page(title)
    docs = APIRouter(include_in_schema=False)

    @docs.get("/docs")
    async def swagger_ui() -> Response:
        return Response(html, media_type="text/html; charset=utf-8", headers={
            "Content-Security-Policy": csp, "Cache-Control": "no-cache"})

    @docs.get("/docs/assets/{name}")
    async def swagger_asset(name: str) -> Response:
        if name not in ASSETS:
            raise errors.NotFound()
        return Response(_asset(name), media_type=ASSETS[name], headers={
            "Cache-Control": "public, max-age=86400", "Content-Security-Policy": csp})

    return docs
