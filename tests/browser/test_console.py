"""The web console in Chromium against a real `gatehouse serve` (API.md §9): sign in, messages,
sessions across tabs, the error boundary, admin flows, permissions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from playwright.sync_api import BrowserContext, Page, Route, expect

from tests.browser.conftest import BrowserServer
from tests.conftest import PASSWORD

expect.set_options(timeout=5000)


def api_login(server: BrowserServer, email: str, password: str = PASSWORD) -> dict[str, str]:
    """Bearer headers of a token-mode session (an API client outside the browser)."""
    r = httpx.post(f"{server.url}/api/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()


# Records (Date.now()) when the page shows the sign-in button and a role=status notice.
WATCH_SIGN_IN = """() => {
  const seen = () => [...document.querySelectorAll('button')]
    .some((b) => b.textContent === 'Sign in')
    && [...document.querySelectorAll('[role=status]')].some((s) => !s.hidden && s.textContent);
  new MutationObserver((_, observer) => {
    if (seen()) { window.__signInShownAt = Date.now(); observer.disconnect(); }
  }).observe(document.body,
    {subtree: true, childList: true, attributes: true, characterData: true});
}"""


def no_problems(context: BrowserContext) -> list[str]:
    problems: list[str] = context.problems  # type: ignore[attr-defined]
    return problems


def test_sign_in_leads_to_the_account_page(
    console_server: BrowserServer, new_context: Callable[..., BrowserContext]
) -> None:
    """Email + password + `Sign in` shows the account page, with `Sign out` in the header."""
    console_server.add_user("signin@example.com")
    context = new_context(console_server)
    page = context.new_page()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/console/$"))
    sign_in(page, "signin@example.com")
    expect(page.get_by_role("heading", level=1)).to_have_text("Account")
    expect(page).to_have_url(re.compile(r"/console/account$"))
    expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()
    expect(page.get_by_role("cell", name="This device", exact=True)).to_be_visible()
    assert no_problems(context) == []


def test_wrong_password_then_throttling_say_what_happened(
    console_server: BrowserServer, new_context: Callable[..., BrowserContext]
) -> None:
    """A wrong password says so in role=alert; past LOGIN_MAX_FAILURES the alert gives the wait."""
    console_server.add_user("throttle@example.com")
    page = new_context(console_server).new_page()
    page.goto("/console/")
    alert = page.get_by_role("alert").filter(has_text=re.compile("."))
    for _ in range(3):  # LOGIN_MAX_FAILURES=3 on this server
        sign_in(page, "throttle@example.com", "not-the-password-123")
        expect(alert).to_have_text("Wrong email or password.")
    sign_in(page, "throttle@example.com")  # even the right password waits now
    expect(alert).to_have_text(
        re.compile(r"Too many failed sign-in attempts\. Wait \d+ seconds?, then try again\."))
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")


def test_disabled_account_is_told_so(
    console_server: BrowserServer, new_context: Callable[..., BrowserContext]
) -> None:
    """A disabled account with the right password reads that the account is disabled."""
    console_server.add_user("boss@example.com", ["admin"])
    target = console_server.add_user("gone@example.com")
    r = httpx.patch(f"{console_server.url}/api/v1/admin/users/{target['id']}",
                    json={"disabled": True},
                    headers=api_login(console_server, "boss@example.com"))
    assert r.status_code == 200, r.text
    page = new_context(console_server).new_page()
    page.goto("/console/")
    sign_in(page, "gone@example.com")
    expect(page.get_by_role("alert").filter(has_text=re.compile("."))).to_have_text(
        "This account is disabled. Ask an administrator to enable it.")


def test_sign_out_in_one_tab_signs_out_every_tab_within_a_second(
    console_server: BrowserServer, signed_in: Callable[..., BrowserContext]
) -> None:
    """`Sign out` in one of three tabs: all three show sign-in and a role=status notice in 1 s."""
    console_server.add_user("tabs@example.com")
    context = signed_in(console_server, "tabs@example.com")
    pages = [context.new_page() for _ in range(3)]
    for page in pages:
        page.goto("/console/account")
        expect(page.get_by_role("heading", level=1)).to_have_text("Account")
    for page in pages:  # each tab notes when its sign-in page (with its notice) appears
        page.evaluate(WATCH_SIGN_IN)
    pages[0].bring_to_front()
    pages[0].evaluate(
        "document.addEventListener('click', () => { window.__clickedAt = Date.now() }, true)")
    pages[0].get_by_role("button", name="Sign out", exact=True).click()
    clicked_at = pages[0].evaluate("window.__clickedAt")
    for page in pages:
        expect(page.get_by_role("button", name="Sign in", exact=True)).to_be_visible()
        expect(page.get_by_role("status").filter(has_text=re.compile("signed out"))).to_be_visible()
    delays = [page.evaluate("window.__signInShownAt") - clicked_at for page in pages]
    assert max(delays) < 1000, delays
    assert no_problems(context) == []


def test_signing_in_again_returns_to_the_page_the_user_was_on(
    console_server: BrowserServer, signed_in: Callable[..., BrowserContext]
) -> None:
    """A session ended elsewhere shows the sign-in page; signing in again lands on the same page."""
    console_server.add_user("return@example.com", ["admin"])
    context = signed_in(console_server, "return@example.com")
    page = context.new_page()
    page.goto("/console/admin/audit")
    expect(page.get_by_role("heading", level=1)).to_have_text("Audit log")
    other = context.new_page()
    other.goto("/console/account")
    other.get_by_role("button", name="Sign out", exact=True).click()
    notice = page.get_by_role("status").filter(has_text=re.compile("signed out"))
    expect(notice).to_be_visible(timeout=2000)
    sign_in(page, "return@example.com")
    expect(page.get_by_role("heading", level=1)).to_have_text("Audit log")
    expect(page).to_have_url(re.compile(r"/console/admin/audit$"))


def test_an_uncaught_error_shows_the_boundary_and_reaches_the_server_log(
    console_server: BrowserServer, signed_in: Callable[..., BrowserContext]
) -> None:
    """An error no code catches shows a friendly role=alert; the server logs it as client_error."""
    console_server.add_user("oops@example.com")
    page = signed_in(console_server, "oops@example.com").new_page()
    page.goto("/console/account")
    expect(page.get_by_role("heading", level=1)).to_have_text("Account")
    page.evaluate("setTimeout(() => { throw new Error('boundary-probe-7f3a') }, 0)")
    expect(page.locator(".gatehouse-error[role=alert]")).to_contain_text("Something went wrong")
    deadline = time.monotonic() + 5
    while "boundary-probe-7f3a" not in console_server.logs() and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = [line for line in console_server.logs().splitlines() if "boundary-probe-7f3a" in line]
    assert lines and '"client_error"' in lines[0]


def test_admin_creates_a_user_changes_roles_disables_and_revokes_sessions(
    console_server: BrowserServer, signed_in: Callable[..., BrowserContext]
) -> None:
    """Users page: create a user, make them operator, revoke their sessions, then disable them."""
    console_server.add_user("admin-flow@example.com", ["admin"])
    context = signed_in(console_server, "admin-flow@example.com")
    page = context.new_page()
    page.goto("/console/account")
    page.get_by_role("link", name="Users").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Users")

    page.get_by_role("button", name="New user").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Email").fill("newbie@example.com")
    dialog.get_by_label("Name").fill("New Bie")
    dialog.get_by_label("Password").fill(PASSWORD)
    dialog.get_by_role("button", name="Create user").click()
    expect(dialog).to_be_hidden()
    page.get_by_label("Search users").fill("newbie")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.get_by_role("cell", name="newbie@example.com", exact=True)).to_be_visible()

    newbie = api_login(console_server, "newbie@example.com")
    page.get_by_role("button", name="Manage newbie@example.com").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label(re.compile("^Operator")).check()
    dialog.get_by_role("button", name="Save roles").click()
    expect(dialog.get_by_role("status")).to_contain_text("Roles saved")

    dialog.get_by_role("button", name="Revoke sessions").click()
    expect(dialog.get_by_role("status")).to_contain_text("Every session of this user has ended")
    r = httpx.get(f"{console_server.url}/api/v1/users/profile", headers=newbie)
    assert r.status_code == 401 and r.json()["code"] == "session_revoked"

    dialog.get_by_role("button", name="Disable account").click()
    confirm = page.get_by_role("dialog", name="Disable newbie@example.com?")
    confirm.get_by_role("button", name="Disable account").click()
    expect(dialog.get_by_role("status")).to_contain_text("The account is disabled")
    dialog.get_by_role("button", name="Close").click()
    row = page.get_by_role("row").filter(has_text="newbie@example.com")
    expect(row).to_contain_text("operator")
    expect(row).to_contain_text("Disabled")
    r = httpx.post(f"{console_server.url}/api/v1/auth/login",
                   json={"email": "newbie@example.com", "password": PASSWORD})
    assert r.status_code == 403 and r.json()["code"] == "account_disabled"
    assert no_problems(context) == []


def test_a_page_still_loading_never_draws_over_the_page_navigated_to(
    console_server: BrowserServer, signed_in: Callable[..., BrowserContext]
) -> None:
    """Leave the account page while its profile is on the way: when the profile arrives, the
    account page must not replace the Users page the admin went to (seen on a loaded CI
    machine: the Users page's buttons vanished under the Account page)."""
    console_server.add_user("slow-link@example.com", ["admin"])
    page = signed_in(console_server, "slow-link@example.com").new_page()
    page.goto("/console/account")
    expect(page.get_by_role("heading", level=1)).to_have_text("Account")

    held: list[Route] = []

    def hold_the_first(route: Route) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)

    page.route("**/api/v1/users/profile", hold_the_first)
    page.get_by_role("link", name="Account").click()  # the account page asks for the profile
    deadline = time.monotonic() + 10
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(20)
    assert held, "the account page never asked for the profile"
    page.get_by_role("link", name="Users").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Users")

    # The account page draws its sessions list in the same step as the rest of the page,
    # so once its sessions request is out, the stale page has drawn whatever it draws.
    with page.expect_request("**/api/v1/auth/sessions?limit=200"):
        held[0].continue_()
    expect(page.get_by_role("heading", level=1)).to_have_text("Users")
    page.get_by_role("button", name="New user").click()
    expect(page.get_by_role("dialog")).to_be_visible()


def test_admin_creates_an_api_key_sees_it_once_and_revokes_it(
    console_server: BrowserServer, signed_in: Callable[..., BrowserContext], artifacts: Path
) -> None:
    """API keys: the new key shows once with a Copy button, works, and stops when revoked."""
    console_server.add_user("keys@example.com", ["admin"])
    context = signed_in(console_server, "keys@example.com")
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.goto("/console/admin/api-keys")
    expect(page.get_by_role("heading", level=1)).to_have_text("API keys")
    page.get_by_label("Name").fill("billing service")
    page.get_by_label(re.compile(r"\(users:read\)")).check()
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("API key", exact=True)
    expect(secret).to_have_value(re.compile(r"^gh_"))
    key = secret.input_value()
    page.get_by_role("button", name="Copy API key").click()
    expect(page.get_by_text("Copied", exact=True)).to_be_visible()
    page.screenshot(path=artifacts / "api-keys-created-desktop-light.png", full_page=True)
    assert page.evaluate("navigator.clipboard.readText()") == key
    assert httpx.get(f"{console_server.url}/api/v1/admin/users",
                     headers={"X-API-Key": key}).status_code == 200

    page.get_by_role("button", name="I have saved it").click()
    expect(page.get_by_label("API key", exact=True)).to_have_count(0)
    page.reload()
    expect(page.get_by_role("cell", name="billing service", exact=True)).to_be_visible()
    assert key not in page.content()  # listings show the prefix only

    page.get_by_role("button", name="Revoke key billing service").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke key").click()
    expect(page.get_by_role("status").filter(has_text="revoked")).to_be_visible()
    expect(page.get_by_role("cell", name="billing service", exact=True)).to_have_count(0)
    r = httpx.get(f"{console_server.url}/api/v1/admin/users", headers={"X-API-Key": key})
    assert r.status_code == 401 and r.json()["code"] == "api_key_invalid"
    assert no_problems(context) == []


def test_a_plain_user_sees_no_admin_navigation_and_the_admin_api_answers_403(
    console_server: BrowserServer, signed_in: Callable[..., BrowserContext]
) -> None:
    """A `user` sees only Account in the nav; admin URLs explain, the API says 403, no sign-out."""
    console_server.add_user("plain@example.com")
    context = signed_in(console_server, "plain@example.com")
    page = context.new_page()
    page.goto("/console/account")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link")).to_have_text(["Account"])
    page.goto("/console/admin/users")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not available")
    expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()
    r = context.request.get(f"{console_server.url}/api/v1/admin/users")
    assert r.status == 403 and r.json()["code"] == "forbidden"
    page.goto("/console/account")
    expect(page.get_by_role("heading", level=1)).to_have_text("Account")


def test_sign_out_everywhere_asks_first_then_ends_every_session(
    console_server: BrowserServer, signed_in: Callable[..., BrowserContext]
) -> None:
    """`Sign out everywhere` asks in a dialog whose same-named button ends every session."""
    console_server.add_user("everywhere@example.com")
    other_device = api_login(console_server, "everywhere@example.com")
    context = signed_in(console_server, "everywhere@example.com")
    page = context.new_page()
    page.goto("/console/account")
    expect(page.get_by_role("row")).to_have_count(3)  # header + this device + the API session
    page.get_by_role("button", name="Sign out everywhere").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Account")
    page.get_by_role("button", name="Sign out everywhere").click()
    page.get_by_role("dialog").get_by_role("button", name="Sign out everywhere").click()
    expect(page.get_by_role("button", name="Sign in", exact=True)).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("signed out everywhere")
    r = httpx.get(f"{console_server.url}/api/v1/users/profile", headers=other_device)
    assert r.status_code == 401
    assert no_problems(context) == []


def test_console_modules_come_from_this_origin_only(
    console_server: BrowserServer, new_context: Callable[..., BrowserContext]
) -> None:
    """Every request the sign-in page makes stays on the service's origin (no CDN)."""
    context = new_context(console_server)
    page = context.new_page()
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    page.goto("/console/")
    expect(page.get_by_role("button", name="Sign in", exact=True)).to_be_visible()
    assert seen and all(url.startswith(console_server.url) for url in seen)



def test_forgot_password_sends_a_link_without_saying_whether_the_account_exists(
    console_server: BrowserServer, new_context: Callable[..., BrowserContext]
) -> None:
    """`Forgot password?` leads to `Email` + `Send reset link`; any address gets the same notice."""
    page = new_context(console_server).new_page()
    page.goto("/console/")
    page.get_by_role("link", name="Forgot password?").click()
    # The sign-in page has an `Email` field too: wait until the reset page has replaced it.
    expect(page.get_by_role("button", name="Send reset link")).to_be_visible()
    page.get_by_label("Email").fill("nobody@example.com")
    page.get_by_role("button", name="Send reset link").click()
    expect(page.get_by_role("status")).to_contain_text(
        "If nobody@example.com belongs to an account")


def test_a_used_or_unknown_reset_link_says_to_ask_for_a_new_one(
    console_server: BrowserServer, new_context: Callable[..., BrowserContext]
) -> None:
    """A bad reset token: `New password` + `Set password` answer that the link is not valid."""
    page = new_context(console_server).new_page()
    page.goto("/console/reset-password#token=not-a-real-token")
    # The token leaves the address bar (and the history) as soon as the page has read it.
    expect(page).to_have_url(re.compile(r"/console/reset-password$"))
    page.get_by_label("New password").fill("a-brand-new-passphrase-42")
    page.get_by_role("button", name="Set password").click()
    expect(page.get_by_role("alert").filter(has_text=re.compile("."))).to_contain_text(
        "This link has expired or was already used")
    expect(page.get_by_role("link", name="Ask for a new link")).to_be_visible()


def test_recovery_pages_explain_a_server_without_the_route(
    console_server: BrowserServer, new_context: Callable[..., BrowserContext]
) -> None:
    """Against an older server (the §8 routes answer 404) the pages say so, not fail silently."""
    page = new_context(console_server).new_page()
    problem = ('{"type":"/errors/not_found","title":"Not found","status":404,"code":"not_found",'
               '"detail":"Not found.","request_id":"r1"}')
    page.route(re.compile(r".*/api/v1/auth/(password|email)/.*"), lambda route: route.fulfill(
        status=404, content_type="application/problem+json", body=problem))
    page.goto("/console/reset-password#token=t")
    page.get_by_label("New password").fill("a-brand-new-passphrase-42")
    page.get_by_role("button", name="Set password").click()
    expect(page.get_by_role("alert").filter(has_text=re.compile("."))).to_have_text(
        "This server does not offer password reset yet.")
    page.goto("/console/verify-email#token=t")
    expect(page.get_by_role("alert").filter(has_text=re.compile("."))).to_have_text(
        "This server does not offer email verification yet.")


def test_the_sign_in_form_works_from_the_keyboard_alone(
    console_server: BrowserServer, new_context: Callable[..., BrowserContext]
) -> None:
    """Email has focus on arrival; typing, Tab and Enter sign in, and focus is visibly marked."""
    console_server.add_user("keyboard@example.com")
    page = new_context(console_server).new_page()
    page.goto("/console/")
    expect(page.get_by_label("Email")).to_be_focused()
    page.keyboard.type("keyboard@example.com")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Account")


def test_a_csp_violation_would_be_reported(
    console_server: BrowserServer, new_context: Callable[..., BrowserContext]
) -> None:
    """The CSP refuses inline code and the recorder catches it ("no problems" means something)."""
    context = new_context(console_server)
    page = context.new_page()
    response = page.goto("/console/")
    assert response is not None
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.evaluate("""() => {
      const s = document.createElement("script");
      s.textContent = "window.__inlineRan = true";
      document.body.append(s);
    }""")
    problems = no_problems(context)
    deadline = time.monotonic() + 3
    while not problems and time.monotonic() < deadline:
        page.wait_for_timeout(50)  # the violation event is dispatched asynchronously
    assert page.evaluate("window.__inlineRan === undefined")
    assert any("CSP violation: script-src" in p for p in problems), problems


def test_an_unverified_address_can_ask_for_a_verification_link(
    console_server: BrowserServer, signed_in: Callable[..., BrowserContext]
) -> None:
    """An unverified email is marked, and `Send verification email` confirms the send."""
    console_server.add_user("unverified@example.com")
    page = signed_in(console_server, "unverified@example.com").new_page()
    page.goto("/console/account")
    expect(page.get_by_text("not verified")).to_be_visible()
    page.get_by_role("button", name="Send verification email").click()
    expect(page.get_by_role("status").filter(has_text="verification link")).to_be_visible()


def totp(secret: str, at: float) -> str:
    """RFC 6238 code (SHA-1, 6 digits, 30 s) for `at`, as an authenticator app shows it."""
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", int(at // 30)), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    return f"{(struct.unpack('>I', digest[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


def enable_mfa(server: BrowserServer, email: str) -> str:
    """Turn on TOTP for `email` through the API; the secret its authenticator app would hold."""
    headers = api_login(server, email)
    setup = httpx.post(f"{server.url}/api/v1/auth/mfa/totp/setup", headers=headers)
    assert setup.status_code == 200, setup.text
    secret: str = setup.json()["secret"]
    confirm = httpx.post(f"{server.url}/api/v1/auth/mfa/totp/confirm", headers=headers,
                         json={"code": totp(secret, time.time())})
    assert confirm.status_code == 200, confirm.text
    return secret


def test_second_factor_step_asks_for_the_code_and_explains_a_wrong_one(
    console_server: BrowserServer, new_context: Callable[..., BrowserContext]
) -> None:
    """With MFA on, the password leads to `Authentication code` + `Verify`; a wrong code says so."""
    console_server.add_user("mfa@example.com")
    secret = enable_mfa(console_server, "mfa@example.com")

    context = new_context(console_server)
    page = context.new_page()
    page.goto("/console/")
    sign_in(page, "mfa@example.com")
    code = page.get_by_label("Authentication code")
    expect(code).to_be_focused()
    wrong = "000000" if totp(secret, time.time()) != "000000" else "111111"
    code.fill(wrong)
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("alert").filter(has_text=re.compile("."))).to_contain_text(
        "That code is not right")
    page.get_by_label("Authentication code").fill(totp(secret, time.time() + 30))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Account")
    expect(page.get_by_text("Status: On")).to_be_visible()


def test_admin_resets_a_users_second_factor(
    console_server: BrowserServer, signed_in: Callable[..., BrowserContext]
) -> None:
    """Users → Manage → `Reset two-step verification` (confirmed) turns the user's MFA off."""
    console_server.add_user("mfa-admin@example.com", ["admin"])
    console_server.add_user("lost-phone@example.com")
    enable_mfa(console_server, "lost-phone@example.com")
    context = signed_in(console_server, "mfa-admin@example.com")
    page = context.new_page()
    page.goto("/console/admin/users")
    page.get_by_label("Search users").fill("lost-phone")
    page.get_by_role("button", name="Search", exact=True).click()
    page.get_by_role("button", name="Manage lost-phone@example.com").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Reset two-step verification").click()
    page.get_by_role("dialog", name=re.compile("^Reset two-step")).get_by_role(
        "button", name="Reset two-step verification").click()
    expect(dialog.get_by_role("status")).to_contain_text("Two-step verification is off")
    r = httpx.post(f"{console_server.url}/api/v1/auth/login",
                   json={"email": "lost-phone@example.com", "password": PASSWORD})
    assert r.status_code == 200, r.text  # the password alone signs in again
    assert no_problems(context) == []
