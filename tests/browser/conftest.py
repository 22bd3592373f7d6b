"""Browser fixtures: real `gatehouse serve` processes, Debian's Chromium through Playwright,
and browser contexts that record console errors, page errors and CSP violations.

- `console_server`: one server for a whole test module (SQLite, insecure cookies for plain
  http, LOGIN_MAX_FAILURES=3, generous per-IP limits), with users made by `add_user`.
- `make_browser_server(**env)`: a server of its own with env overrides, stopped after the test.
- `chromium`: one browser per session; `new_context(server, ...)`: a fresh context (own
  cookies) whose pages record problems in `context.problems`; `signed_in(server, email)`:
  a context already holding a cookie session (logged in through the API, as the console would).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from gatehouse.audit.service import CLI
from gatehouse.context import Context
from gatehouse.notify.vapid import generate_vapid_pair
from gatehouse.settings import load_settings
from gatehouse.store.db import migrate
from tests.conftest import BASE_ENV, PASSWORD, Server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"

# Plain http on 127.0.0.1; limits high enough that a suite's logins never hit them.
BROWSER_ENV = {
    "GATEHOUSE_INSECURE_COOKIES": "1",
    "LOGIN_MAX_FAILURES": "3",
    "GATEHOUSE_AUTH_RATE_LIMIT": "1000/minute",
    "GATEHOUSE_RATE_LIMIT": "5000/minute",
    "GATEHOUSE_CLIENT_ERRORS_RATE_LIMIT": "1000/minute",
}


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """Browser tests run on SQLite unless a test asks otherwise (the API suite covers both)."""
    return str(getattr(request, "param", "sqlite"))


def _clean_environ() -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items()
            if not (k.startswith("GATEHOUSE_") and not k.startswith("GATEHOUSE_TEST_"))}
    for name in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET", "ENCRYPTION_KEY", "PUBLIC_API_URL",
                 "CORS_ORIGINS", "JWT_ALGORITHM", "JWT_KEYS_DIR", "ACCESS_TOKEN_TTL"):
        keep.pop(name, None)
    return keep


class BrowserServer(Server):
    """A `gatehouse serve` on its own migrated SQLite file, with helpers to seed users."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.database_url = f"sqlite:///{workdir / 'gatehouse.db'}"
        migrate.upgrade(self.database_url)
        super().__init__({}, workdir)
        self.env = {**_clean_environ(), **BASE_ENV, "PUBLIC_API_URL": self.url,
                    "DATABASE_URL": self.database_url, **BROWSER_ENV, **env}

    def add_user(self, email: str, roles: list[str] | None = None, password: str = PASSWORD,
                 name: str | None = None, email_verified: bool = False) -> dict[str, Any]:
        """Create a user straight in the server's database (as `gatehouse users create` would)."""

        async def create() -> dict[str, Any]:
            settings = load_settings(**{**BASE_ENV, "DATABASE_URL": self.database_url})
            ctx = Context.build(settings)
            try:
                user = await ctx.accounts.create(
                    email=email, password=password, name=name or email.split("@")[0].title(),
                    roles=roles or ["user"], actor=CLI, email_verified=email_verified)
            finally:
                await ctx.close()
            return {"id": str(user.id), "email": email}

        # Playwright's sync API owns this thread's event loop; the seeding runs in its own.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, create()).result()


def _start(workdir: Path, env: dict[str, Any]) -> BrowserServer:
    return BrowserServer(workdir, {k: str(v) for k, v in env.items()}).start()


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserServer]:
    """With VAPID keys, so the account page offers Web Push (and asks for no missing key)."""
    public, private = generate_vapid_pair()
    server = _start(tmp_path_factory.mktemp("console-server"), {
        "VAPID_PUBLIC_KEY": public, "VAPID_PRIVATE_KEY": private,
        "VAPID_SUBJECT": "mailto:ops@example.com"})
    yield server
    server.stop()


@pytest.fixture
def make_browser_server(tmp_path: Path) -> Iterator[Callable[..., BrowserServer]]:
    servers: list[BrowserServer] = []

    def factory(**env: Any) -> BrowserServer:
        server = _start(tmp_path / f"server-{len(servers)}", env)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


# Module scope, not session: Playwright's sync API keeps an event loop running in this thread
# while it is started, and the asyncio tests that run after the browser modules need it stopped.
@pytest.fixture(scope="module")
def playwright_instance() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def chromium(playwright_instance: Playwright) -> Iterator[Browser]:
    browser = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


# Chromium logs CSP violations to the console; this names them plainly too (init scripts are
# injected by the browser itself, so the page's CSP does not apply to this one).
REPORT_CSP = """document.addEventListener("securitypolicyviolation", (e) =>
  console.error(
    `CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline code"}`));"""


def _watch(page: Page, problems: list[str]) -> None:
    """Console errors (CSP violations among them) and uncaught page errors land in `problems`."""
    page.on("console", lambda msg: problems.append(
        f"console {msg.type}: {msg.text} ({msg.location.get('url', '')})")
        if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))


@pytest.fixture
def new_context(chromium: Browser) -> Iterator[Callable[..., BrowserContext]]:
    """`new_context(server, **playwright_options)`: base URL set, problems recorded per context."""
    contexts: list[BrowserContext] = []

    def factory(server: Server, **options: Any) -> BrowserContext:
        options.setdefault("viewport", {"width": 1280, "height": 800})
        context = chromium.new_context(base_url=server.url, **options)
        problems: list[str] = []
        context.problems = problems  # type: ignore[attr-defined]
        context.add_init_script(script=REPORT_CSP)
        context.on("page", lambda page: _watch(page, problems))
        contexts.append(context)
        return context

    yield factory
    for context in contexts:
        context.close()


@pytest.fixture
def signed_in(new_context: Callable[..., BrowserContext]) -> Callable[..., BrowserContext]:
    """`signed_in(server, email, password=PASSWORD, **options)`: a context with a cookie session."""

    def factory(server: Server, email: str, password: str = PASSWORD,
                **options: Any) -> BrowserContext:
        context = new_context(server, **options)
        r = context.request.post(f"{server.url}/api/v1/auth/login",
                                 data={"email": email, "password": password},
                                 headers={"X-Auth-Mode": "cookie", "Origin": server.url})
        assert r.status == 200, r.text()
        return context

    return factory


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots go (ignored by git): tests/artifacts/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
