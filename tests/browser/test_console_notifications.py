"""The account page's Notifications section (API.md §10) in Chromium against a real server:
channel switches saved and put back on failure, a phone saved, texted a code (by a local fake
OpenPhone) and verified, and this browser's Web Push opt-in and opt-out.

Headless Chromium cannot subscribe for real: `pushManager.subscribe` answers "AbortError:
Registration failed - permission denied" even with notifications granted (and would need
Google's push service, out of reach here). So an init script replaces `PushManager.prototype
.subscribe` alone, returning the subscription of a fake browser of tests/_fake_push.py (a real
P-256 key and auth secret, a loopback endpoint). Everything else is real: the service worker
and its registration, the page's code, the POST to the server, and a push the server then
encrypts and sends to that endpoint, where the fake push service decrypts it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from gatehouse.notify.vapid import generate_vapid_pair
from tests._fake_openphone import FakeOpenPhone
from tests._fake_push import FakeBrowser, FakePushService, unb64
from tests.browser.conftest import BrowserServer
from tests.browser.test_console import api_login

PHONE = "+14155552671"
SUBJECT = "mailto:ops@example.com"
SHOTS = [("desktop", {"width": 1280, "height": 900}), ("phone", {"width": 375, "height": 812})]
PROFILE = "/api/v1/users/profile"


class Services:
    def __init__(self, server: BrowserServer, push: FakePushService, sms: FakeOpenPhone) -> None:
        self.server, self.push, self.sms = server, push, sms


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """A server with VAPID keys, loopback push endpoints allowed and SMS to a fake OpenPhone."""
    public, private = generate_vapid_pair()
    push = FakePushService(public, SUBJECT)
    sms = FakeOpenPhone().start()
    server = None
    try:
        server = BrowserServer(tmp_path_factory.mktemp("notify-server"), {
            "VAPID_PUBLIC_KEY": public, "VAPID_PRIVATE_KEY": private, "VAPID_SUBJECT": SUBJECT,
            "GATEHOUSE_PUSH_ALLOW_PRIVATE": "1", "OPENPHONE_API_URL": sms.url,
            "OPENPHONE_API_KEY": "op-test-key", "OPENPHONE_FROM": "+14155550100",
        }).start()
        yield Services(server, push, sms)
    finally:
        if server is not None:
            server.stop()
        sms.close()
        push.close()


# Replaces `subscribe` alone; records what the page asked for (key bytes as a plain array).
FAKE_SUBSCRIBE = """(() => {
  if (!("PushManager" in self)) return;
  const sub = SUBSCRIPTION;
  PushManager.prototype.subscribe = async function (options) {
    window.__subscribedWith = {userVisibleOnly: options.userVisibleOnly,
                               key: Array.from(new Uint8Array(options.applicationServerKey))};
    return {
      endpoint: sub.endpoint, expirationTime: null, options,
      toJSON: () => ({endpoint: sub.endpoint, expirationTime: null, keys: sub.keys}),
      unsubscribe: async () => { window.__unsubscribed = true; return true; },
    };
  };
})();"""


def fake_subscribe(browser: FakeBrowser) -> str:
    """Init script: `subscribe` resolves to `browser`'s subscription."""
    return FAKE_SUBSCRIBE.replace("SUBSCRIPTION", json.dumps(browser.subscription()))


def subscriptions(server: BrowserServer) -> list[tuple[str, str]]:
    """(endpoint, p256dh) of every stored subscription, straight from the database."""
    with sqlite3.connect(server.database_url.removeprefix("sqlite:///")) as db:
        return list(db.execute("SELECT endpoint, p256dh FROM push_subscriptions"))


def pushed_types(push: FakePushService, browser: FakeBrowser) -> list[str]:
    """The `type` of every push `browser` received and decrypted."""
    return [r.payload["type"] for r in push.received_by(browser)]


def section(page: Page) -> Locator:
    return page.get_by_role("region", name="Notifications")


def wait_until(check: Callable[[], Any], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def capture(page: Page, target: Locator, artifacts: Path, name: str) -> None:
    """`target` at desktop and phone width, light and dark, with no sideways scrolling."""
    for device, viewport in SHOTS:
        page.set_viewport_size(viewport)
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            shot = artifacts / f"account-notifications-{name}-{device}-{scheme}.png"
            target.screenshot(path=shot)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"], f"{name}: page is {width}px wide at {device} width"
    page.set_viewport_size(SHOTS[0][1])
    page.emulate_media(color_scheme="light")


def problems_except(context: BrowserContext, *expected: str) -> list[str]:
    """Console errors and CSP violations, less the failed requests the test provokes."""
    problems: list[str] = context.problems  # type: ignore[attr-defined]
    return [p for p in problems if not any(e in p for e in expected)]


def test_push_opt_in_stores_a_subscription_the_server_then_pushes_to(
    services: Services, signed_in: Callable[..., BrowserContext],
) -> None:
    """`Enable notifications on this device` subscribes with the server's VAPID key through the
    console's service worker (scope /console/) and POSTs it; the server pushes a new-device
    sign-in to it; `Disable` unsubscribes and deletes it on the server."""
    server = services.server
    server.add_user("push@example.com")
    fake = services.push.browser()
    context = signed_in(server, "push@example.com", permissions=["notifications"])
    context.add_init_script(script=fake_subscribe(fake))
    page = context.new_page()
    page.goto("/console/account")
    notify = section(page)
    expect(notify.get_by_text("On this device: Off")).to_be_visible()

    notify.get_by_role("button", name="Enable notifications on this device").click()
    expect(notify.get_by_role("status")).to_have_text("Notifications are on for this device.")
    expect(notify.get_by_text("On this device: On")).to_be_visible()
    assert page.evaluate("window.__subscribedWith") == {
        "userVisibleOnly": True, "key": list(unb64(server.env["VAPID_PUBLIC_KEY"]))}
    assert subscriptions(server) == [(fake.endpoint, fake.p256dh)]
    registration = page.evaluate("""navigator.serviceWorker.getRegistration().then((r) => r
      && {scope: r.scope, script: (r.active || r.installing || r.waiting).scriptURL})""")
    assert registration == {"scope": f"{server.url}/console/",
                            "script": f"{server.url}/static/console/push-worker.js"}

    # The stored subscription works: a sign-in from another device reaches it, encrypted for
    # its keys (the browser's session came from Chromium; this one from httpx).
    api_login(server, "push@example.com")
    wait_until(lambda: "login.new_device" in pushed_types(services.push, fake))
    assert services.push.errors == []

    notify.get_by_role("button", name="Disable notifications on this device").click()
    expect(notify.get_by_role("status")).to_have_text("Notifications are off for this device.")
    expect(notify.get_by_text("On this device: Off")).to_be_visible()
    assert page.evaluate("window.__unsubscribed") is True
    assert subscriptions(server) == []
    assert problems_except(context) == []


SHOWN = """navigator.serviceWorker.ready
  .then((r) => r.getNotifications())
  .then((all) => all.map((n) => ({title: n.title, body: n.body, tag: n.tag, at: n.timestamp})))"""


def test_the_service_worker_shows_a_push_and_names_its_event(
    services: Services, signed_in: Callable[..., BrowserContext],
) -> None:
    """A push event delivered to the worker (DevTools protocol, as the push service would)
    becomes a notification with the payload's title, body and type."""
    server = services.server
    server.add_user("worker@example.com")
    context = signed_in(server, "worker@example.com", permissions=["notifications"])
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    registrations: dict[str, str] = {}
    cdp.on("ServiceWorker.workerRegistrationUpdated", lambda event: registrations.update(
        {r["scopeURL"]: r["registrationId"] for r in event["registrations"]}))
    cdp.send("ServiceWorker.enable")
    page.goto("/console/account")
    enable = section(page).get_by_role("button", name="Enable notifications on this device")
    expect(enable).to_be_visible()
    page.evaluate("navigator.serviceWorker.ready.then(() => true)")
    wait_until(lambda: f"{server.url}/console/" in registrations)

    payload = {"type": "login.new_device", "title": "New sign-in to your account",
               "body": "Chrome on Linux from 203.0.113.9.", "at": "2026-12-02T19:00:00Z"}
    cdp.send("ServiceWorker.deliverPushMessage", {
        "origin": server.url, "registrationId": registrations[f"{server.url}/console/"],
        "data": json.dumps(payload)})
    wait_until(lambda: page.evaluate(SHOWN))
    assert page.evaluate(SHOWN) == [{"title": payload["title"], "body": payload["body"],
                      "tag": "login.new_device", "at": 1796238000000}]
    assert problems_except(context) == []


def test_channel_switches_persist_and_a_refused_change_is_put_back(
    services: Services, signed_in: Callable[..., BrowserContext], artifacts: Path,
) -> None:
    """Switching Email and SMS off is saved at once and survives a reload; a change the server
    refuses flips back and says why in an alert."""
    server = services.server
    server.add_user("switches@example.com")
    context = signed_in(server, "switches@example.com")
    page = context.new_page()
    page.goto("/console/account")
    notify = section(page)
    email = notify.get_by_role("switch", name="Email")
    sms = notify.get_by_role("switch", name="Text message (SMS)")
    push = notify.get_by_role("switch", name="Browser push")
    for switch in (email, sms, push):
        expect(switch).to_be_checked()
    expect(notify.get_by_text("Texts go to a verified phone only")).to_be_visible()

    email.click()
    expect(notify.get_by_role("status")).to_have_text("Email alerts are off.")
    sms.focus()
    page.keyboard.press("Space")  # keyboard alone works too
    expect(notify.get_by_role("status")).to_have_text("Text message (SMS) alerts are off.")
    expect(notify.get_by_text("Texts go to a verified phone only")).to_be_hidden()
    capture(page, notify, artifacts, "switches")

    page.reload()
    expect(email).not_to_be_checked()
    expect(sms).not_to_be_checked()
    expect(push).to_be_checked()
    r = httpx.get(f"{server.url}{PROFILE}", headers=api_login(server, "switches@example.com"))
    assert r.json()["notify"] == {"push": True, "sms": False, "email": False}

    # The server refuses the next change: the switch goes back, the alert says what failed.
    def refuse(route: Any) -> None:
        if route.request.method != "PATCH":
            route.fallback()
            return
        route.fulfill(status=503, headers={"Retry-After": "30"},
                      content_type="application/problem+json",
                      body=json.dumps({"type": "about:blank", "title": "Service Unavailable",
                                       "status": 503, "code": "service_unavailable",
                                       "detail": "The database is not answering."}))

    page.route(f"**{PROFILE}", refuse)
    email.click()
    expect(notify.get_by_role("alert")).to_contain_text("Email could not be turned on")
    expect(email).not_to_be_checked()
    assert problems_except(context, "503 (Service Unavailable)") == []


def test_phone_is_saved_texted_a_code_and_verified(
    services: Services, signed_in: Callable[..., BrowserContext], artifacts: Path,
) -> None:
    """An invalid number and a wrong code are explained; after three codes an hour the fourth
    is refused with the wait; the texted code verifies the number, and that survives a reload."""
    server = services.server
    server.add_user("phone@example.com")
    context = signed_in(server, "phone@example.com")
    page = context.new_page()
    page.goto("/console/account")
    notify = section(page)
    number = notify.get_by_label("Phone number")
    expect(notify.get_by_text("No phone number yet.")).to_be_visible()

    number.fill("12345")
    notify.get_by_role("button", name="Save phone").click()
    expect(notify.get_by_role("alert")).to_be_visible()
    assert "request id" not in notify.get_by_role("alert").inner_text()
    number.fill("+1 415 555 2671")
    notify.get_by_role("button", name="Save phone").click()
    expect(notify.get_by_role("status")).to_have_text("Saved. Send a code to verify the number.")
    expect(notify.get_by_text(PHONE)).to_be_visible()
    expect(notify.get_by_text("unverified", exact=True)).to_be_visible()
    expect(notify.get_by_role("button", name="Send code")).to_be_focused()

    for sent in range(1, 4):
        notify.get_by_role("button", name="Send code").click()
        expect(notify.get_by_role("status")).to_have_text(f"A code is on its way to {PHONE}.")
        wait_until(lambda n=sent: len(services.sms.texts_to(PHONE)) == n)
    expect(notify.get_by_label("Verification code")).to_be_focused()
    notify.get_by_role("button", name="Send code").click()
    expect(notify.get_by_role("alert")).to_contain_text("At most 3 codes an hour")
    expect(notify.get_by_role("alert")).to_contain_text("Try again in")

    code = services.sms.code_sent_to(PHONE)
    notify.get_by_label("Verification code").fill("000000" if code != "000000" else "111111")
    notify.get_by_role("button", name="Verify").click()
    expect(notify.get_by_role("alert")).to_contain_text("The code is wrong or expired")
    capture(page, notify, artifacts, "phone-unverified")

    notify.get_by_label("Verification code").fill(code)
    notify.get_by_role("button", name="Verify").click()
    expect(notify.get_by_role("status")).to_have_text("Your phone number is verified.")
    expect(notify.get_by_text("verified", exact=True)).to_be_visible()
    expect(notify.get_by_role("button", name="Send code")).to_have_count(0)
    capture(page, notify, artifacts, "phone-verified")
    page.reload()
    expect(notify.get_by_text("verified", exact=True)).to_be_visible()
    expect(page.get_by_role("cell", name="This device", exact=True)).to_be_visible()
    page.screenshot(path=artifacts / "account-notifications-page-desktop.png", full_page=True)
    page.set_viewport_size(SHOTS[1][1])
    page.screenshot(path=artifacts / "account-notifications-page-phone.png", full_page=True)
    assert problems_except(context, "422 (Unprocessable", "429 (Too Many Requests)") == []
