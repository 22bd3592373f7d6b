"""Every console page in light and dark, at desktop and phone width: no console errors, no CSP
violations, no horizontal overflow, and a screenshot under tests/artifacts/ for a reviewer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import BrowserServer
from tests.conftest import PASSWORD

DOCS_IMAGE = Path(__file__).resolve().parent.parent.parent / "docs" / "img" / "console.png"
#: Pictures of docs/console.md, kept current by this test: (page, device, scheme) -> file.
DOCS_SHOTS = {
    ("sign-in", "desktop", "light"): DOCS_IMAGE.with_name("console-sign-in.png"),
    ("users", "desktop", "light"): DOCS_IMAGE.with_name("console-users.png"),
    ("account", "phone", "dark"): DOCS_IMAGE.with_name("console-account-phone-dark.png"),
}

VARIANTS = [
    ("desktop", {"width": 1280, "height": 800}, "light"),
    ("desktop", {"width": 1280, "height": 800}, "dark"),
    ("phone", {"width": 375, "height": 812}, "light"),
    ("phone", {"width": 375, "height": 812}, "dark"),
]
PUBLIC_PAGES = [
    ("sign-in", "/console/", "Sign in"),
    ("forgot-password", "/console/forgot-password", "Reset your password"),
    ("reset-password", "/console/reset-password#token=from-the-email", "Set a new password"),
    ("verify-email", "/console/verify-email", "Verify your email"),
]
SIGNED_IN_PAGES = [
    ("account", "/console/account", "Account"),
    ("users", "/console/admin/users", "Users"),
    ("api-keys", "/console/admin/api-keys", "API keys"),
    ("audit", "/console/admin/audit", "Audit log"),
    ("ops", "/console/ops", "Operations"),
]


@pytest.fixture(scope="module")
def tour_server(console_server: BrowserServer) -> BrowserServer:
    """A server with some data on every page: users, an API key, audit events, a client error."""
    console_server.add_user("root@example.com", ["admin"], name="Ada Admin", email_verified=True)
    for email, roles in [("olivia@example.com", ["operator"]), ("sam@example.com", ["support"]),
                         ("uma@example.com", ["user"])]:
        console_server.add_user(email, roles)
    headers = {"Authorization": "Bearer " + httpx.post(
        f"{console_server.url}/api/v1/auth/login",
        json={"email": "root@example.com", "password": PASSWORD},
        headers={"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) "
                               "Safari/604.1"},
    ).json()["access_token"]}
    httpx.post(f"{console_server.url}/api/v1/admin/api-keys", headers=headers,
               json={"name": "billing service", "scopes": ["users:read", "audit:read"]})
    httpx.post(f"{console_server.url}/api/v1/auth/login",
               json={"email": "uma@example.com", "password": "wrong-password-123"})
    httpx.post(f"{console_server.url}/api/v1/client-errors",
               json={"message": "TypeError: cannot read properties of undefined (reading 'id')",
                     "url": f"{console_server.url}/console/admin/users"})
    return console_server


def settle(page: Page, name: str, heading: str) -> None:
    """Wait until the page has drawn what it loads."""
    expect(page.get_by_role("heading", level=1)).to_have_text(heading)
    if name in ("users", "audit", "api-keys"):
        expect(page.locator("table").first).to_be_visible()
    if name == "account":
        expect(page.get_by_role("cell", name="This device", exact=True)).to_be_visible()
        expect(page.get_by_role("heading", name="Browser notifications")).to_be_visible()
    if name == "ops":
        expect(page.get_by_role("cell", name="Met").first).to_be_visible()
        expect(page.locator(".status-card").nth(2)).to_be_visible()  # /healthz, /readyz, its checks


def no_horizontal_overflow(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"page is {width}px wide"


@pytest.mark.parametrize(("device", "viewport", "scheme"), VARIANTS,
                         ids=[f"{d}-{s}" for d, _, s in VARIANTS])
def test_every_page_renders_cleanly_and_is_captured(
    tour_server: BrowserServer, new_context: Callable[..., BrowserContext],
    signed_in: Callable[..., BrowserContext], artifacts: Path,
    device: str, viewport: dict[str, int], scheme: str,
) -> None:
    """Each page shows its h1 with no console error, CSP violation or sideways scrolling."""
    anonymous = new_context(tour_server, viewport=viewport, color_scheme=scheme)
    page = anonymous.new_page()
    for name, path, heading in PUBLIC_PAGES:
        page.goto(path)
        settle(page, name, heading)
        no_horizontal_overflow(page)
        page.screenshot(path=artifacts / f"{name}-{device}-{scheme}.png", full_page=True)
        if (name, device, scheme) in DOCS_SHOTS:
            page.screenshot(path=DOCS_SHOTS[name, device, scheme])  # what the viewport shows
    assert anonymous.problems == []  # type: ignore[attr-defined]

    admin = signed_in(tour_server, "root@example.com", viewport=viewport, color_scheme=scheme)
    page = admin.new_page()
    for name, path, heading in SIGNED_IN_PAGES:
        page.goto(path)
        settle(page, name, heading)
        no_horizontal_overflow(page)
        shot = artifacts / f"{name}-{device}-{scheme}.png"
        page.screenshot(path=shot, full_page=True)
        if (name, device, scheme) in DOCS_SHOTS:
            page.screenshot(path=DOCS_SHOTS[name, device, scheme])
        if name == "users":
            page.get_by_role("button", name="Manage olivia@example.com").click()
            expect(page.get_by_role("dialog")).to_be_visible()
            page.screenshot(path=artifacts / f"users-manage-{device}-{scheme}.png")
            page.get_by_role("dialog").get_by_role("button", name="Close").click()
        if (name, device, scheme) == ("account", "desktop", "light"):
            DOCS_IMAGE.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=DOCS_IMAGE)  # the README's picture, kept current by this test
    if (device, scheme) == ("desktop", "light"):
        # Let the Operations charts gather a few samples, for the reviewer's picture.
        page.goto("/console/ops")
        expect(page.locator("svg.chart polyline").first).to_be_attached(timeout=15000)
        page.screenshot(path=artifacts / "ops-desktop-light-charts.png", full_page=True)
    assert admin.problems == []  # type: ignore[attr-defined]

