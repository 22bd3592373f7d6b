"""`/docs` (issue 9, item 8): Swagger UI served from the package, with no third-party origin,
its own CSP, and a working bearer "Authorize" button, checked in a real headless Chromium."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from gatehouse.api.routes.docs import ASSETS, SWAGGER_DIR
from tests.conftest import PASSWORD, create_user

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"


def test_swagger_ui_files_are_vendored_with_their_licence() -> None:
    """The package holds Swagger UI's bundle, stylesheet and icon, with its Apache-2.0 licence."""
    for name in (*ASSETS, "LICENSE", "NOTICE", "swagger-ui-bundle.js.LICENSE.txt"):
        assert (SWAGGER_DIR / name).stat().st_size > 0, name
    assert "Apache License" in (SWAGGER_DIR / "LICENSE").read_text()
    assert "SwaggerUIBundle" in (SWAGGER_DIR / "swagger-ui-bundle.js").read_text()


@pytest.mark.asyncio
async def test_docs_page_names_no_other_origin_and_allows_only_its_own_inline_script(
    client: httpx.AsyncClient,
) -> None:
    """The HTML loads everything from the service itself, and the CSP lets exactly the page's one
    inline script run (by hash, no 'unsafe-inline')."""
    r = await client.get("/docs")
    html = r.text
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?://", html), re.findall(r"https?://[^\s'\"]+", html)
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert url.startswith("/docs/assets/"), url
        asset = await client.get(url)
        assert asset.status_code == 200 and asset.content, url
    csp = r.headers["content-security-policy"]
    inline = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert f"script-src 'self' 'sha256-{digest}'" in csp
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert (await client.get("/docs/assets/..%2Fswagger%2FLICENSE")).status_code == 404
    assert (await client.get("/docs/assets/LICENSE")).json()["code"] == "not_found"


@pytest.mark.asyncio
async def test_openapi_document_declares_the_three_credentials(client: httpx.AsyncClient) -> None:
    """The document declares Bearer, X-API-Key and the gh_access cookie, and each protected
    operation the ones it takes: what Swagger UI's Authorize button needs."""
    doc = (await client.get("/openapi.json")).json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert (schemes["apiKeyHeader"]["in"], schemes["apiKeyHeader"]["name"]) == ("header", "X-API-Key")
    assert (schemes["accessCookie"]["in"], schemes["accessCookie"]["name"]) == ("cookie", "gh_access")
    paths = doc["paths"]
    assert paths["/api/v1/users/profile"]["get"]["security"] == [{"bearerAuth": []},
                                                                 {"accessCookie": []}]
    admin = paths["/api/v1/admin/users"]["get"]
    assert {next(iter(s)) for s in admin["security"]} == {"bearerAuth", "apiKeyHeader", "accessCookie"}
    assert "`users:read`" in admin["description"]
    assert "security" not in paths["/api/v1/auth/login"]["post"]
    assert "security" not in paths["/healthz"]["get"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"])
def test_docs_render_in_chromium_offline_and_authorize_calls_the_api(
    make_server: Any, make_app: Any, tmp_path: Path
) -> None:
    """In headless Chromium /docs lists the operations with no console error, CSP violation or
    request to another origin, and a token entered under "Authorize" is sent by "Try it out"."""
    from playwright.sync_api import sync_playwright

    import asyncio

    ctx = make_app().state.ctx
    asyncio.run(create_user(ctx))
    asyncio.run(ctx.engine.dispose())
    server = make_server()
    token = httpx.post(f"{server.url}/api/v1/auth/login",
                       json={"email": "alice@example.com", "password": PASSWORD}).json()["access_token"]

    problems: list[str] = []
    foreign: list[str] = []
    own = urlsplit(server.url).netloc
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--headless", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("request", lambda r: foreign.append(r.url)
                    if urlsplit(r.url).scheme in ("http", "https") and urlsplit(r.url).netloc != own
                    else None)
            page.goto(f"{server.url}/docs", wait_until="networkidle")
            page.wait_for_selector(".opblock", timeout=15_000)
            assert page.locator(".opblock").count() >= 20
            assert page.get_by_text("/api/v1/users/profile").first.is_visible()

            page.get_by_role("button", name=re.compile("Authorize")).first.click()
            bearer = page.locator(".auth-container").filter(has_text="bearerAuth")
            bearer.locator("input").fill(token)
            bearer.get_by_role("button", name="Apply credentials").click()
            bearer.get_by_role("button", name="Close").click()

            operation = page.locator("#operations-users-get_profile_api_v1_users_profile_get")
            operation.locator(".opblock-summary").click()
            operation.get_by_role("button", name="Try it out").click()
            operation.get_by_role("button", name="Execute").click()
            response = operation.locator(".live-responses-table .response .response-col_status")
            response.first.wait_for(timeout=10_000)
            assert response.first.inner_text().strip() == "200"
            assert "alice@example.com" in operation.locator(".live-responses-table").inner_text()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "docs.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert foreign == []
