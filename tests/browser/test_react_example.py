"""The React example of docs/migration.md (docs/examples/react), bundled by esbuild from the npm
packages of package.json, signs in through GatehouseProvider/useSession in Chromium against a
real `gatehouse serve`: with a password, with a second factor, across two tabs.

The bundle is served by Playwright on the server's own origin (as a load balancer would put the
app next to Gatehouse), and imports `/static/gatehouse-client.js` from the real server.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pyotp
import pytest
from playwright.sync_api import BrowserContext, Page, Route, expect

from tests.browser.conftest import BrowserServer
from tests.conftest import PASSWORD

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "react"
APP_PATH = "/react-example/"
PAGE = ("<!doctype html><html lang=en><head><title>React example</title></head>"
        f'<body><div id="root"></div><script type="module" src="{APP_PATH}app.js"></script>'
        "</body></html>")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """main.jsx + the provider + React, as the guide bundles them."""
    out = tmp_path_factory.mktemp("react") / "app.js"
    done = subprocess.run(
        [str(ROOT / "node_modules" / ".bin" / "esbuild"), str(EXAMPLE / "main.jsx"), "--bundle",
         "--format=esm", "--jsx=automatic", "--external:/static/*",
         '--define:process.env.NODE_ENV="production"', f"--outfile={out}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return out.read_bytes()


def _serve_app(route: Route, bundle: bytes) -> None:
    if route.request.url.endswith("/app.js"):
        route.fulfill(status=200, content_type="text/javascript", body=bundle)
    else:
        route.fulfill(status=200, content_type="text/html; charset=utf-8", body=PAGE)


@pytest.fixture
def app_context(console_server: BrowserServer, bundle: bytes,
                new_context: Callable[..., BrowserContext]) -> BrowserContext:
    context = new_context(console_server)
    context.route(f"{console_server.url}{APP_PATH}**", lambda route: _serve_app(route, bundle))
    return context


def open_app(context: BrowserContext) -> Page:
    page = context.new_page()
    page.goto(APP_PATH)
    return page


def sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def assert_no_problems(context: BrowserContext) -> None:
    """No page error, CSP violation or console error but Chromium's line for the wrong
    password's or code's 401."""
    problems: list[str] = context.problems  # type: ignore[attr-defined]
    assert [p for p in problems if "401 (Unauthorized)" not in p] == []


def test_sign_in_through_the_provider_and_sign_out_in_every_tab(
    console_server: BrowserServer, app_context: BrowserContext,
) -> None:
    console_server.add_user("react@example.com", name="Reactor")
    first = open_app(app_context)
    sign_in(first, "react@example.com", "not-the-password")
    expect(first.get_by_role("alert")).to_contain_text("incorrect")

    sign_in(first, "react@example.com")
    expect(first.get_by_role("heading", name="Signed in as react@example.com")).to_be_visible()
    expect(first.get_by_text("Name: Reactor")).to_be_visible()  # client.json through the hook

    second = open_app(app_context)  # a page load: the provider restores the cookie session
    expect(second.get_by_role("heading", name="Signed in as react@example.com")).to_be_visible()

    first.get_by_role("button", name="Sign out", exact=True).click()
    expect(first.get_by_role("button", name="Sign in")).to_be_visible()
    expect(second.get_by_role("status")).to_contain_text("session_revoked")
    expect(second.get_by_role("button", name="Sign in")).to_be_visible()
    assert_no_problems(app_context)


def test_second_factor_through_the_provider(
    console_server: BrowserServer, app_context: BrowserContext,
) -> None:
    console_server.add_user("react-mfa@example.com")
    login = httpx.post(f"{console_server.url}/api/v1/auth/login",
                       json={"email": "react-mfa@example.com", "password": PASSWORD})
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    secret = httpx.post(f"{console_server.url}/api/v1/auth/mfa/totp/setup",
                        headers=headers).json()["secret"]
    confirm = httpx.post(f"{console_server.url}/api/v1/auth/mfa/totp/confirm", headers=headers,
                         json={"code": pyotp.TOTP(secret).now()})
    assert confirm.status_code == 200, confirm.text
    recovery_code = confirm.json()["recovery_codes"][0]

    page = open_app(app_context)
    sign_in(page, "react-mfa@example.com")
    code = page.get_by_label("Authentication code")
    code.fill("000000")
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("alert")).to_contain_text("wrong")  # mfa_invalid: same step again
    code.fill(recovery_code)  # the TOTP code above is spent: a replay would be mfa_invalid
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", name="Signed in as react-mfa@example.com")).to_be_visible()
    assert_no_problems(app_context)
