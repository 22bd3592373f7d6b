"""The account page's two-step verification, in a real browser against a real server:
setup with a locally drawn QR code and a typed key, recovery codes shown once, sign-in with
a TOTP code and with a recovery code, new recovery codes, turning it off; no console errors,
no CSP violations, screenshots under tests/artifacts/."""

from __future__ import annotations

import re
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pyotp
import zxingcpp
from playwright.sync_api import BrowserContext, Locator, Page, expect

from tests.browser.conftest import BrowserServer
from tests.conftest import PASSWORD

EMAIL = "two-step@example.com"
SHOTS = [("desktop", {"width": 1280, "height": 900}), ("phone", {"width": 375, "height": 800})]


def sign_in(page: Page, email: str = EMAIL) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()


def second_factor(page: Page, code: str) -> None:
    page.get_by_label("Authentication code").fill(code)
    page.get_by_role("button", name="Verify").click()


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page.get_by_role("button", name="Sign in", exact=True)).to_be_visible()


def capture(page: Page, section: Locator | None, artifacts: Path, name: str) -> None:
    """The section (or the viewport) at desktop and 375 px, light and dark, for a reviewer."""
    for device, viewport in SHOTS:
        page.set_viewport_size(viewport)
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            path = artifacts / f"account-mfa-{name}-{device}-{scheme}.png"
            (section or page).screenshot(path=path)
    page.set_viewport_size(SHOTS[0][1])
    page.emulate_media(color_scheme="light")


def png_gray(png: bytes) -> tuple[memoryview, int, int]:
    """Decode Playwright's PNG (8-bit RGB/RGBA, not interlaced) to a grayscale pixel buffer."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        chunk = png[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and color in (2, 6), (depth, color)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw, stride = zlib.decompress(idat), width * channels
    previous, gray = bytearray(stride), bytearray()
    for y in range(height):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        kind, row = line[0], bytearray(line[1:])
        for i in range(stride):
            left = row[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                row[i] = (row[i] + left) & 0xFF
            elif kind == 2:
                row[i] = (row[i] + up) & 0xFF
            elif kind == 3:
                row[i] = (row[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                row[i] = (row[i] + pred) & 0xFF
        gray.extend(row[0::channels])
        previous = row
    return memoryview(bytes(gray)).cast("B", (height, width)), width, height


def decode_qr(png: bytes) -> str:
    pixels, _, _ = png_gray(png)
    found = zxingcpp.read_barcodes(pixels, formats=zxingcpp.BarcodeFormat.QRCode)
    assert len(found) == 1, f"{len(found)} QR codes decoded from the screenshot"
    return str(found[0].text)


# The answers the flow provokes on purpose; Chromium logs every non-2xx fetch as a console error.
EXPECTED_FAILURES = re.compile(
    r"^console error: Failed to load resource: the server responded with a status of "
    r"(401 \(Unauthorized\) \(\S+/api/v1/auth/login\)"
    r"|422 \(Unprocessable (Content|Entity)\) "
    r"\(\S+/api/v1/auth/mfa/(totp/confirm|recovery-codes|totp)\))$")


def unexpected(context: BrowserContext) -> list[str]:
    problems: list[str] = context.problems  # type: ignore[attr-defined]
    return [p for p in problems if not EXPECTED_FAILURES.match(p)]


def codes_on(page: Page) -> list[str]:
    codes = page.get_by_role("list", name="Your recovery codes").get_by_role("listitem")
    expect(codes).to_have_count(10)
    return [text.strip() for text in codes.all_inner_texts()]


def test_set_up_sign_in_with_codes_renew_and_turn_off_two_step_verification(
    console_server: BrowserServer,
    signed_in: Callable[..., BrowserContext],
    artifacts: Path,
) -> None:
    """Set up from the account page (QR encodes the otpauth URI, typed key), codes shown once,
    sign in with TOTP and with a recovery code, renew the codes, turn it off; errors in alerts."""
    server = console_server
    server.add_user(EMAIL)
    context = signed_in(server, EMAIL, viewport=SHOTS[0][1], accept_downloads=True)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page = context.new_page()
    page.goto("/console/account")
    section = page.get_by_role("region", name="Two-step verification")
    expect(section.get_by_text("Status: Off")).to_be_visible()

    # Setup: the QR code (drawn in the page) and the key in groups of 4 for typing by hand.
    section.get_by_role("button", name="Set up two-step verification").click()
    qr = section.get_by_role("img", name="QR code to scan with your authenticator app")
    expect(qr).to_be_visible()
    expect(section.get_by_label("Authentication code")).to_be_focused()
    shown_key = section.locator("code.secret-key").inner_text()
    assert re.fullmatch(r"[A-Z2-7]{4}( [A-Z2-7]{1,4})+", shown_key), shown_key
    secret = shown_key.replace(" ", "")
    section.get_by_role("button", name="Copy key").click()
    expect(section.get_by_text("Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == secret

    uri = urlsplit(decode_qr(qr.screenshot()))
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert unquote(uri.path).endswith(f":{EMAIL}")
    assert parse_qs(uri.query)["secret"] == [secret]
    capture(page, section, artifacts, "setup")

    # A wrong first code is explained in an alert; the right one turns it on.
    now = pyotp.TOTP(secret)
    section.get_by_label("Authentication code").fill(
        "000000" if now.now() != "000000" else "111111")
    section.get_by_role("button", name="Turn on").click()
    expect(section.get_by_role("alert")).to_contain_text("That code is not right")
    section.get_by_label("Authentication code").fill(now.now())
    section.get_by_role("button", name="Turn on").click()
    expect(section.get_by_role("status")).to_have_text("Two-step verification is on.")
    expect(section.get_by_text("Store these now.")).to_be_visible()
    expect(section.get_by_role("heading", name="Your recovery codes")).to_be_focused()
    codes = codes_on(page)
    assert len(set(codes)) == 10 and all(re.fullmatch(r"[0-9a-z]{5}-[0-9a-z]{5}", c) for c in codes)
    with page.expect_download() as download:
        section.get_by_role("button", name="Download codes (.txt)").click()
    assert download.value.suggested_filename == "gatehouse-recovery-codes.txt"
    saved = Path(download.value.path()).read_text()
    assert all(code in saved.splitlines() for code in codes) and EMAIL in saved
    capture(page, section, artifacts, "recovery-codes")

    # Shown once: after "stored", the page holds the status and no code.
    section.get_by_role("button", name="I have stored my codes").click()
    expect(section.get_by_text("Status: On")).to_be_visible()
    expect(section.get_by_role("heading", name="Two-step verification")).to_be_focused()
    assert all(code not in page.content() for code in codes)
    capture(page, section, artifacts, "on")
    page.reload()
    expect(section.get_by_text("Status: On")).to_be_visible()

    # Sign-in now asks for the second factor: a fresh TOTP code, then a recovery code.
    sign_out(page)
    sign_in(page)
    second_factor(page, now.at(time.time() + 30))
    expect(page.get_by_role("heading", level=1)).to_have_text("Account")
    sign_out(page)
    sign_in(page)
    second_factor(page, codes[0].upper())
    expect(page.get_by_role("heading", level=1)).to_have_text("Account")

    # New recovery codes, proven by a code; a spent recovery code is refused in the dialog.
    section.get_by_role("button", name="Get new recovery codes").click()
    dialog = page.get_by_role("dialog", name="Get new recovery codes?")
    dialog.get_by_label("Authentication code").fill(codes[0])
    dialog.get_by_role("button", name="Get new recovery codes").click()
    expect(dialog.get_by_role("alert")).to_contain_text("already used")
    dialog.get_by_label("Authentication code").fill(codes[1])
    dialog.get_by_role("button", name="Get new recovery codes").click()
    expect(section.get_by_role("status")).to_contain_text("the old ones no longer work")
    fresh = codes_on(page)
    assert not set(fresh) & set(codes)
    section.get_by_role("button", name="I have stored my codes").click()

    # Turning it off: an old-set code is refused, a new-set code works; the password alone signs in.
    section.get_by_role("button", name="Turn off two-step verification").click()
    dialog = page.get_by_role("dialog", name="Turn off two-step verification?")
    dialog.get_by_label("Authentication code").fill(codes[2])
    dialog.get_by_role("button", name="Turn off two-step verification").click()
    expect(dialog.get_by_role("alert")).to_contain_text("That code is not right")
    capture(page, None, artifacts, "turn-off-dialog")
    dialog.get_by_label("Authentication code").fill(fresh[0])
    dialog.get_by_role("button", name="Turn off two-step verification").click()
    expect(section.get_by_role("status")).to_contain_text("Two-step verification is off")
    expect(section.get_by_text("Status: Off")).to_be_visible()
    r = httpx.post(f"{server.url}/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD})
    assert r.status_code == 200, r.text

    assert unexpected(context) == []  # no CSP violation, page error or other console error


def test_setup_finished_in_another_tab_shows_on_instead_of_a_wrong_code(
    console_server: BrowserServer,
    signed_in: Callable[..., BrowserContext],
) -> None:
    """A page mid-setup whose user turned MFA on elsewhere answers `Turn on` with status On."""
    server = console_server
    server.add_user("elsewhere@example.com")
    context = signed_in(server, "elsewhere@example.com")
    page = context.new_page()
    page.goto("/console/account")
    section = page.get_by_role("region", name="Two-step verification")
    section.get_by_role("button", name="Set up two-step verification").click()
    stale = section.locator("code.secret-key").inner_text().replace(" ", "")

    login = httpx.post(f"{server.url}/api/v1/auth/login",
                       json={"email": "elsewhere@example.com", "password": PASSWORD})
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    setup = httpx.post(f"{server.url}/api/v1/auth/mfa/totp/setup", headers=headers)
    confirm = httpx.post(f"{server.url}/api/v1/auth/mfa/totp/confirm", headers=headers,
                         json={"code": pyotp.TOTP(setup.json()["secret"]).now()})
    assert confirm.status_code == 200, confirm.text

    section.get_by_label("Authentication code").fill(pyotp.TOTP(stale).now())
    section.get_by_role("button", name="Turn on").click()
    expect(section.get_by_role("status")).to_contain_text("already on")
    expect(section.get_by_text("Status: On")).to_be_visible()
    problems: list[str] = context.problems  # type: ignore[attr-defined]
    assert [p for p in problems if "409 (Conflict)" not in p] == []
