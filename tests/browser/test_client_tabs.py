"""gatehouse-client.js in several tabs of one Chromium profile against a real `gatehouse serve`
(API.md §9): one refresh per access-token expiry across tabs, with and without Web Locks; a tab
closed or frozen in the middle of a refresh blocks nobody; 403 and a server restart never sign out.

Each tab is a blank page on the server's origin (served by Playwright, so no app of its own
makes requests) that imports `/static/gatehouse-client.js` from the real server and calls
GET /api/v1/users/profile through the client in a loop. Access tokens live 3 s.

What "one refresh per expiry" means here, exactly: every refresh request the browser sent got
200 and counted `success` on the server (server successes == browser refresh requests), none
was a `grace` answer (no tab presented a refresh token another tab had already rotated), and
consecutive refreshes are at least half a token lifetime apart (no access token was refreshed
twice), while zero requests failed (no token was left to expire unrefreshed under the loops).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, Request, Route, expect
from prometheus_client.parser import text_string_to_metric_families

from tests.browser.conftest import BrowserServer
from tests.conftest import PASSWORD

TTL = 3  # seconds an access token lives
METRICS_TOKEN = "metrics-token-for-client-tab-tests"
SERVER_ENV = {"ACCESS_TOKEN_TTL": str(TTL), "GATEHOUSE_RATE_LIMITS": "off",
              "GATEHOUSE_METRICS_TOKEN": METRICS_TOKEN}
GUIDE = Path(__file__).resolve().parents[2] / "docs" / "browser.md"
EMAIL = "tabs@example.com"
TAB_PATH = "/__client-tab"
REFRESH = "/api/v1/auth/refresh"

# A tab: the client in cookie mode, its session-expired notices, and a request loop.
SETUP_TAB = """async () => {
  const { createClient } = await import("/static/gatehouse-client.js");
  window.expired = [];
  window.stats = { ok: 0, failed: [], maxMs: 0 };
  window.gh = createClient({ onSessionExpired: (code) => window.expired.push(code) });
  return typeof navigator.locks;
}"""
START_LOOP = """() => {
  window.stopLoop = false;
  window.loop = (async () => {
    while (!window.stopLoop) {
      const started = performance.now();
      try {
        await window.gh.json("/api/v1/users/profile");
        window.stats.ok += 1;
      } catch (error) {
        window.stats.failed.push(`${error.code}: ${error.message}`);
      }
      window.stats.maxMs = Math.max(window.stats.maxMs, performance.now() - started);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
}"""
# Stops the loop and the client's timers (close() waits for a refresh in flight): counts are final.
STOP_TAB = """async () => {
  window.stopLoop = true;
  await window.loop;
  await window.gh.close();
  return { ...window.stats, expired: window.expired, user: window.gh.user && window.gh.user.email };
}"""


def refresh_counts(server: BrowserServer,
                   before: dict[str, float] | None = None) -> dict[str, float]:
    """gatehouse_auth_refresh_total by result, minus `before` when given."""
    r = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    r.raise_for_status()
    counts = {"success": 0.0, "grace": 0.0, "expired": 0.0, "invalid": 0.0, "revoked": 0.0,
              "reused": 0.0}
    for family in text_string_to_metric_families(r.text):
        if family.name == "gatehouse_auth_refresh":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels["result"]] = sample.value
    if before is not None:
        counts = {result: value - before.get(result, 0.0) for result, value in counts.items()}
    return counts


class RefreshLog:
    """Every refresh request the browser context sent: start time (ms) and status (0: failed)."""

    def __init__(self, context: BrowserContext) -> None:
        self.finished: list[Request] = []
        self.failed: list[Request] = []
        context.on("requestfinished",
                   lambda r: self.finished.append(r) if r.url.endswith(REFRESH) else None)
        context.on("requestfailed",
                   lambda r: self.failed.append(r) if r.url.endswith(REFRESH) else None)

    def answered(self) -> list[tuple[float, int]]:
        out = []
        for request in self.finished:
            response = request.response()
            out.append((request.timing["startTime"], response.status if response else 0))
        return sorted(out)


class AppPages(BaseHTTPRequestHandler):
    """Another web app's origin on loopback: answers every GET with `page` (set by a test).

    A real server, not a Playwright route: Chromium lets a page reach the loopback service
    only from a loopback page (Local Network Access), and a routed page has no address."""

    page = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.page)))
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        pass


@pytest.fixture(scope="module")
def app_origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), AppPages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def tab_server(tmp_path_factory: pytest.TempPathFactory,
               app_origin: str) -> Iterator[BrowserServer]:
    """One server for the module (starting one costs seconds); tests compare counters.
    CORS_ORIGINS lists the other app's origin, as docs/browser.md says."""
    server = BrowserServer(tmp_path_factory.mktemp("client-tabs"),
                           {**SERVER_ENV, "CORS_ORIGINS": app_origin}).start()
    server.add_user(EMAIL)
    yield server
    server.stop()


@pytest.fixture
def tabs_context(tab_server: BrowserServer,
                 new_context: Callable[..., BrowserContext]) -> Iterator[BrowserContext]:
    """A browser context whose TAB_PATH is a blank page on the server's origin."""
    context = new_context(tab_server)
    context.route(f"{tab_server.url}{TAB_PATH}", lambda route: route.fulfill(
        status=200, content_type="text/html; charset=utf-8",
        body="<!doctype html><html lang=en><head><title>tab</title></head><body></body></html>"))
    yield context


def open_tab(context: BrowserContext, server: BrowserServer, *, web_locks: bool = True) -> Page:
    page = context.new_page()
    if not web_locks:
        page.add_init_script("delete Navigator.prototype.locks;")
    page.goto(f"{server.url}{TAB_PATH}")
    locks = page.evaluate(SETUP_TAB)
    assert locks == ("object" if web_locks else "undefined")
    return page


def sign_in(page: Page) -> float:
    """Signs in through the client in `page`; when (ms since the epoch) the answer arrived."""
    result: dict[str, Any] = page.evaluate(
        "async ([email, password]) => { const { user } = await window.gh.login(email, password);"
        " return { email: user.email, at: Date.now() }; }", [EMAIL, PASSWORD])
    assert result["email"] == EMAIL
    return float(result["at"])


def wait_for_user(pages: list[Page]) -> None:
    """Every tab has heard of the sign-in (BroadcastChannel) before its loop starts."""
    for page in pages:
        page.wait_for_function("window.gh.user !== null", timeout=10_000)


def run_tabs(pages: list[Page], seconds: float) -> list[dict[str, Any]]:
    for page in pages:
        page.evaluate(START_LOOP)
    pages[0].wait_for_timeout(seconds * 1000)  # keeps Playwright's event dispatch running
    return [page.evaluate(STOP_TAB) for page in pages]


def assert_one_refresh_per_expiry(server: BrowserServer, before: dict[str, float],
                                  log: RefreshLog, login_at: float,
                                  results: list[dict[str, Any]], seconds: float) -> None:
    counts = refresh_counts(server, before)
    answered = log.answered()
    # Every tab ran, nothing failed, nobody was signed out.
    for result in results:
        assert result["failed"] == [], results
        assert result["expired"] == [], results
        assert result["user"] == EMAIL, results
        assert result["ok"] > 20, results
    assert log.failed == []
    # Server successes == refresh requests the browser sent, all answered 200; no grace, no reuse.
    assert [status for _, status in answered] == [200] * len(answered), answered
    assert counts == {"success": len(answered), "grace": 0, "expired": 0, "invalid": 0,
                      "revoked": 0, "reused": 0}, (counts, answered)
    # No access token was refreshed twice: refreshes are at least half a lifetime apart.
    times = [login_at] + [at for at, _ in answered]
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert all(gap >= TTL * 1000 / 2 for gap in gaps), gaps
    # And the tokens did expire several times during the run (~4 lifetimes of 3 s).
    assert len(answered) >= int(seconds // TTL), (len(answered), gaps)


@pytest.mark.parametrize("web_locks", [True, False], ids=["web-locks", "without-web-locks"])
def test_three_tabs_across_expiries_refresh_once_per_expiry(
    tab_server: BrowserServer, tabs_context: BrowserContext, web_locks: bool
) -> None:
    """Three tabs looping for ~4 token lifetimes: one refresh per expiry, no failure or sign-out."""
    before = refresh_counts(tab_server)
    log = RefreshLog(tabs_context)
    pages = [open_tab(tabs_context, tab_server, web_locks=web_locks) for _ in range(3)]
    login_at = sign_in(pages[0])
    wait_for_user(pages)
    seconds = 13.0
    results = run_tabs(pages, seconds)
    assert_one_refresh_per_expiry(tab_server, before, log, login_at, results, seconds)


def hold_refreshes(page: Page) -> list[Route]:
    """Refresh requests of `page` are held (never sent on) from now on; the held routes."""
    held: list[Route] = []
    page.route(f"**{REFRESH}", lambda route: held.append(route))
    return held


def start_held_refresh(page: Page, held: list[Route]) -> None:
    """Starts a refresh in `page` (then holding the cross-tab lock); waits until it is in flight."""
    page.evaluate("() => { window.gh.refresh().catch(() => {}); }")
    deadline = time.monotonic() + 10
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(20)
    assert held, "the refresh never left the tab"


def test_a_tab_closed_and_a_tab_frozen_mid_refresh_block_no_other_tab(
    tab_server: BrowserServer, tabs_context: BrowserContext
) -> None:
    """Tabs closed or frozen holding the refresh lock block no one: no sign-out, no long wait."""
    pages = [open_tab(tabs_context, tab_server) for _ in range(3)]
    closing = open_tab(tabs_context, tab_server)
    freezing = open_tab(tabs_context, tab_server)
    sign_in(pages[0])
    wait_for_user([*pages, closing, freezing])
    for page in pages:
        page.evaluate(START_LOOP)

    held_closing = hold_refreshes(closing)
    start_held_refresh(closing, held_closing)
    closing.close()

    held_freezing = hold_refreshes(freezing)
    start_held_refresh(freezing, held_freezing)
    cdp = tabs_context.new_cdp_session(freezing)
    cdp.send("Page.setWebLifecycleState", {"state": "frozen"})
    before = refresh_counts(tab_server)

    # Three more token lifetimes with the lock held by a frozen tab.
    pages[0].wait_for_timeout(10_000)
    results = [page.evaluate(STOP_TAB) for page in pages]
    for result in results:
        assert result["failed"] == [], results
        assert result["expired"] == [], results
        assert result["user"] == EMAIL, results
        assert result["ok"] > 20, results
        # Bounded by the lock timeout (3 s), half that on the lease, and one refresh (~4.5 s
        # and a round trip at worst, with room for a loaded machine): never hung on the holder.
        assert result["maxMs"] < 7000, results
    counts = refresh_counts(tab_server, before)
    # The live tabs refreshed without the lock's holder, once per expiry: the lease stood in.
    # Grace answers may occur here, and are the floor this design rests on: the closed tab's
    # refresh may reach the server after the tab is gone, its new cookies never stored, and
    # tabs that meet on the localStorage lease under load can both refresh. Never more than
    # one per refresh; nothing reused or revoked, so nobody is signed out.
    assert counts["success"] >= 2, counts
    assert counts["grace"] <= counts["success"], counts
    assert (counts["reused"], counts["revoked"], counts["invalid"]) == (0, 0, 0), counts
    cdp.send("Page.setWebLifecycleState", {"state": "active"})
    for route in held_freezing:
        route.abort()


def test_the_guides_example_page_signs_in_from_another_origin(
    tab_server: BrowserServer, app_origin: str, new_context: Callable[..., BrowserContext]
) -> None:
    """docs/browser.md's complete page, on an origin in CORS_ORIGINS: sign in, reload, sign out."""
    blocks = re.findall(r"```html\n(<!doctype html>.*?)```", GUIDE.read_text(), re.S)
    assert len(blocks) == 1
    AppPages.page = blocks[0].replace("http://127.0.0.1:8000", tab_server.url).encode()
    page = new_context(tab_server).new_page()
    page.goto(f"{app_origin}/app.html")
    notice = page.get_by_role("status")

    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(notice).not_to_be_empty(timeout=10_000)
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(f"Signed in as {EMAIL}.")).to_be_visible(timeout=10_000)
    page.reload()  # the session is in sessionStorage: restore() finds it
    expect(page.get_by_text(f"Signed in as {EMAIL}.")).to_be_visible(timeout=10_000)

    page.get_by_role("button", name="Sign out").click()
    expect(notice).to_have_text("You are signed out.", timeout=10_000)
    expect(page.get_by_label("Email")).to_be_visible()


def test_forbidden_and_a_server_restart_never_sign_out(
    tab_server: BrowserServer, tabs_context: BrowserContext
) -> None:
    """A 403 and a server restart mid-session (same database and port) sign no tab out."""
    pages = [open_tab(tabs_context, tab_server) for _ in range(2)]
    sign_in(pages[0])
    wait_for_user(pages)

    forbidden = pages[0].evaluate("""async () => {
      try { await window.gh.json("/api/v1/admin/users"); return null; }
      catch (error) { return [error.status, error.code, window.gh.user && window.gh.user.email]; }
    }""")
    assert forbidden == [403, "forbidden", EMAIL]

    for page in pages:
        page.evaluate(START_LOOP)
    pages[0].wait_for_timeout(1000)
    stopped_at = time.monotonic()
    tab_server.stop()
    pages[0].wait_for_timeout(TTL * 1000 + 500)  # the access token expires while the server is down
    tab_server.start(timeout=90)  # a loaded CI machine starts a server slowly
    down_for = time.monotonic() - stopped_at
    ok_at_restart = [page.evaluate("window.stats.ok") for page in pages]
    pages[0].wait_for_timeout(TTL * 1000 * 2)  # and two more lifetimes after the restart
    results = [page.evaluate(STOP_TAB) for page in pages]
    for result, ok_before in zip(results, ok_at_restart, strict=True):
        assert result["expired"] == [], results
        assert result["user"] == EMAIL, results
        assert result["ok"] > ok_before, results  # each tab went on with the same session
        # Requests in flight during the restart were retried (GET is idempotent) until it was
        # back; only a restart longer than the retries' 30 s cap may fail some, as network errors.
        if down_for < 25:
            assert result["failed"] == [], (down_for, results)
        assert all(f.startswith(("network_error", "timeout")) for f in result["failed"]), results
    profile = pages[1].evaluate("async () => (await window.gh.json('/api/v1/users/profile')).email")
    assert profile == EMAIL
    counts = refresh_counts(tab_server)  # the new process counts from zero
    assert counts["success"] >= 1 and counts["reused"] == 0, counts
