"""Cookie mode for browsers (API.md §3): cookie flags, CSRF, origin checks, refresh, logout,
CORS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import update

from gatehouse.context import Context
from gatehouse.settings import SettingsError
from gatehouse.store.db.models import Session
from tests._abuse_helpers import (
    COOKIE_MODE,
    SITE,
    browser,
    cookie_header,
    cookie_login,
    create_api_key,
    set_cookies,
)
from tests.conftest import PASSWORD, asgi_client, bearer, create_user, login

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)

APP_ORIGIN = "https://app.example.com"
EVIL = "https://evil.example.net"
TOKEN_FIELDS = {"access_token", "refresh_token", "token_type"}


@pytest.fixture
def cookie_app(make_app: Any) -> Any:
    """Secure cookies (the default), distinct TTLs so Max-Age values are recognisable."""
    return make_app(ACCESS_TOKEN_TTL="600", REFRESH_TOKEN_TTL="86400", CORS_ORIGINS=APP_ORIGIN)


@pytest_asyncio.fixture
async def web(cookie_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(cookie_app) as c:
        yield c


@pytest.fixture
def web_ctx(cookie_app: Any) -> Context:
    context: Context = cookie_app.state.ctx
    return context


@pytest_asyncio.fixture
async def user(web_ctx: Context) -> Any:
    return await create_user(web_ctx)


async def _rename(client: httpx.AsyncClient, headers: dict[str, str], name: str) -> httpx.Response:
    return await client.patch("/api/v1/users/profile", json={"name": name}, headers=headers)


async def _name(client: httpx.AsyncClient, cookies: dict[str, str]) -> str:
    r = await client.get("/api/v1/users/profile", headers=browser(cookies))
    assert r.status_code == 200, r.text
    name: str = r.json()["name"]
    return name


# -- cookies and bodies ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_cookie_login_sets_three_cookies_with_contract_flags(
    web: httpx.AsyncClient, user: Any
) -> None:
    """Cookie-mode login sets gh_access, gh_refresh and gh_csrf with exactly the §3 flags, all
    Secure by default (and the §4 device cookie, tested in test_device_cookie)."""
    r = await web.post(
        "/api/v1/auth/login",
        json={"email": "alice@example.com", "password": PASSWORD},
        headers=COOKIE_MODE,
    )
    assert r.status_code == 200, r.text
    cookies = set_cookies(r)
    assert set(cookies) == {"gh_access", "gh_refresh", "gh_csrf", "gh_device"}
    access, refresh, csrf = cookies["gh_access"], cookies["gh_refresh"], cookies["gh_csrf"]
    remaining = r.json()["refresh_expires_in"]
    assert 86_390 <= remaining <= 86_400

    assert (
        access.get("httponly"),
        access["samesite"].lower(),
        access["path"],
        access["max-age"],
        access.get("secure"),
    ) == (True, "lax", "/", "600", True)
    assert (
        refresh.get("httponly"),
        refresh["samesite"].lower(),
        refresh["path"],
        int(refresh["max-age"]),
        refresh.get("secure"),
    ) == (True, "strict", "/api", remaining, True)
    assert (
        "httponly" in csrf,
        csrf["samesite"].lower(),
        csrf["path"],
        int(csrf["max-age"]),
        csrf.get("secure"),
    ) == (False, "strict", "/", remaining, True)
    assert access["value"].count(".") == 2  # a JWT
    assert refresh["value"].startswith(r.json()["session_id"] + ".")


@pytest.mark.asyncio
async def test_cookie_login_body_carries_no_tokens(web: httpx.AsyncClient, user: Any) -> None:
    """The cookie-mode answer has user, session_id and lifetimes but no token field or token
    value."""
    r = await web.post(
        "/api/v1/auth/login",
        json={"email": "alice@example.com", "password": PASSWORD},
        headers=COOKIE_MODE,
    )
    body = r.json()
    assert set(body) == {"user", "session_id", "expires_in", "refresh_expires_in"}
    assert body["user"]["email"] == "alice@example.com"
    assert 595 <= body["expires_in"] <= 600
    for cookie in set_cookies(r).values():
        assert cookie["value"] not in r.text
    assert r.headers["cache-control"] == "no-store"


@pytest.mark.asyncio
async def test_insecure_cookies_setting_drops_only_the_secure_flag(make_app: Any) -> None:
    """GATEHOUSE_INSECURE_COOKIES=1 removes Secure from all three cookies and changes nothing
    else."""
    app = make_app(GATEHOUSE_INSECURE_COOKIES="1", ACCESS_TOKEN_TTL="600")
    await create_user(app.state.ctx)
    async with asgi_client(app) as client:
        r = await client.post(
            "/api/v1/auth/login",
            json={"email": "alice@example.com", "password": PASSWORD},
            headers=COOKIE_MODE,
        )
    cookies = set_cookies(r)
    assert {name: "secure" in attrs for name, attrs in cookies.items()} == {
        "gh_access": False,
        "gh_refresh": False,
        "gh_csrf": False,
        "gh_device": False,
    }
    assert {
        name: (attrs["path"], attrs["samesite"].lower(), "httponly" in attrs)
        for name, attrs in cookies.items()
    } == {
        "gh_access": ("/", "lax", True),
        "gh_refresh": ("/api", "strict", True),
        "gh_csrf": ("/", "strict", False),
        "gh_device": ("/api", "strict", True),
    }
    assert cookies["gh_access"]["max-age"] == "600"


@pytest.mark.asyncio
async def test_browser_cookie_jar_flow_works_with_insecure_cookies(make_app: Any) -> None:
    """With plain-http cookies a real cookie jar logs in, reads the profile, refreshes and logs
    out."""
    app = make_app(GATEHOUSE_INSECURE_COOKIES="1")
    await create_user(app.state.ctx)
    async with asgi_client(app) as jar:
        r = await jar.post(
            "/api/v1/auth/login",
            json={"email": "alice@example.com", "password": PASSWORD},
            headers=COOKIE_MODE,
        )
        assert r.status_code == 200
        assert (await jar.get("/api/v1/users/profile")).json()["email"] == "alice@example.com"
        csrf = jar.cookies["gh_csrf"]
        r = await jar.post("/api/v1/auth/refresh", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200, r.text
        assert (
            await jar.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
        ).status_code == 204
        # The session's cookies are gone; the device cookie stays (API.md §4: it proves this
        # browser signed in before, against lockout by strangers).
        assert [cookie.name for cookie in jar.cookies.jar] == ["gh_device"]
        r = await jar.get("/api/v1/users/profile")
        assert (r.status_code, r.json()["code"]) == (401, "token_missing")


@pytest.mark.asyncio
async def test_refresh_cookie_max_age_is_the_sessions_remaining_lifetime(
    web: httpx.AsyncClient, web_ctx: Context, user: Any
) -> None:
    """gh_refresh and gh_csrf expire with the session's absolute lifetime, not a fresh full TTL."""
    cookies = await cookie_login(web)
    sid = cookies["gh_refresh"].split(".", 1)[0]
    async with web_ctx.db.begin() as db:
        await db.execute(
            update(Session)
            .where(Session.id == sid)
            .values(expires_at=datetime.now(UTC) + timedelta(seconds=1000))
        )
    r = await web.post("/api/v1/auth/refresh", headers=browser(cookies, csrf=cookies["gh_csrf"]))
    assert r.status_code == 200, r.text
    new = set_cookies(r)
    assert 990 <= int(new["gh_refresh"]["max-age"]) <= 1000
    assert 990 <= int(new["gh_csrf"]["max-age"]) <= 1000
    assert new["gh_access"]["max-age"] == "600"


# -- CSRF ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_cookie_authenticated_safe_request_needs_no_csrf_token(
    web: httpx.AsyncClient, user: Any
) -> None:
    """A GET authenticated by the gh_access cookie alone succeeds."""
    cookies = await cookie_login(web)
    r = await web.get(
        "/api/v1/users/profile", headers=cookie_header(gh_access=cookies["gh_access"])
    )
    assert (r.status_code, r.json()["email"]) == (200, "alice@example.com")


@pytest.mark.asyncio
async def test_unsafe_cookie_request_without_csrf_token_is_refused(
    web: httpx.AsyncClient, user: Any
) -> None:
    """A cookie-authenticated PATCH without X-CSRF-Token is 403 csrf_failed and changes nothing."""
    cookies = await cookie_login(web)
    r = await _rename(web, browser(cookies), "Mallory")
    assert (r.status_code, r.json()["code"]) == (403, "csrf_failed")
    assert r.headers["content-type"] == "application/problem+json"
    assert await _name(web, cookies) == "Alice"


@pytest.mark.asyncio
async def test_unsafe_cookie_request_with_wrong_csrf_token_is_refused(
    web: httpx.AsyncClient, user: Any
) -> None:
    """An X-CSRF-Token that differs from gh_csrf is refused, and so is a header with no gh_csrf
    cookie."""
    cookies = await cookie_login(web)
    r = await _rename(web, browser(cookies, csrf=cookies["gh_csrf"][:-2] + "xx"), "Mallory")
    assert (r.status_code, r.json()["code"]) == (403, "csrf_failed")
    no_cookie = {"gh_access": cookies["gh_access"]}
    r = await _rename(web, browser(no_cookie, csrf=cookies["gh_csrf"]), "Mallory")
    assert (r.status_code, r.json()["code"]) == (403, "csrf_failed")
    assert await _name(web, cookies) == "Alice"


@pytest.mark.asyncio
async def test_unsafe_cookie_request_with_right_csrf_token_succeeds(
    web: httpx.AsyncClient, user: Any
) -> None:
    """X-CSRF-Token equal to the session's gh_csrf cookie lets a cookie-authenticated PATCH
    through."""
    cookies = await cookie_login(web)
    r = await _rename(web, browser(cookies, csrf=cookies["gh_csrf"]), "Alice B.")
    assert (r.status_code, r.json()["name"]) == (200, "Alice B.")


@pytest.mark.asyncio
async def test_csrf_token_of_another_session_is_refused(
    web: httpx.AsyncClient, web_ctx: Context, user: Any
) -> None:
    """A well-formed CSRF token from another session (planted in cookie and header alike) is
    refused."""
    await create_user(web_ctx, "mallory@example.com", name="Mallory")
    victim = await cookie_login(web)
    attacker = await cookie_login(web, "mallory@example.com")
    other_alice = await cookie_login(web)
    for planted in (attacker["gh_csrf"], other_alice["gh_csrf"]):
        headers = browser({**victim, "gh_csrf": planted}, csrf=planted)
        r = await _rename(web, headers, "Pwned")
        assert (r.status_code, r.json()["code"]) == (403, "csrf_failed")
    assert await _name(web, victim) == "Alice"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "hostile",
    [
        {"Origin": EVIL},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": SITE, "Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://127.0.0.1:8001"},
        {"Origin": "https://127.0.0.1:8000"},
        # DNS rebinding: the page's own host, as the Host header says
        {"Origin": "http://rebound.example", "Host": "rebound.example"},
    ],
)
async def test_foreign_site_is_refused_even_with_the_right_csrf_token(
    web: httpx.AsyncClient, user: Any, hostile: dict[str, str]
) -> None:
    """A foreign Origin or Sec-Fetch-Site: cross-site makes a cookie-authenticated PATCH 403 despite
    a valid token."""
    cookies = await cookie_login(web)
    r = await _rename(web, browser(cookies, csrf=cookies["gh_csrf"], **hostile), "Mallory")
    assert (r.status_code, r.json()["code"]) == (403, "csrf_failed")
    assert await _name(web, cookies) == "Alice"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "friendly",
    [
        {"Origin": SITE},
        {"Origin": APP_ORIGIN},
        {"Origin": "HTTPS://App.Example.com:443"},
        {"Origin": SITE, "Sec-Fetch-Site": "same-origin"},
        {"Origin": APP_ORIGIN, "Sec-Fetch-Site": "same-site"},
    ],
)
async def test_own_and_cors_origins_pass_the_origin_check(
    web: httpx.AsyncClient, user: Any, friendly: dict[str, str]
) -> None:
    """The service's own origin and CORS_ORIGINS entries pass the origin check with a valid
    token."""
    cookies = await cookie_login(web)
    r = await _rename(web, browser(cookies, csrf=cookies["gh_csrf"], **friendly), "Alice C.")
    assert (r.status_code, r.json()["name"]) == (200, "Alice C.")


@pytest.mark.asyncio
async def test_bearer_request_needs_no_csrf_token_even_with_cookies(
    web: httpx.AsyncClient, user: Any
) -> None:
    """Bearer-authenticated unsafe requests pass without X-CSRF-Token, also when cookies ride
    along."""
    tokens = await login(web)
    r = await _rename(web, bearer(tokens), "Alice T.")
    assert (r.status_code, r.json()["name"]) == (200, "Alice T.")
    cookies = await cookie_login(web)
    r = await _rename(web, {**bearer(tokens), **browser(cookies)}, "Alice U.")
    assert (r.status_code, r.json()["name"]) == (200, "Alice U.")


# -- login from other sites --------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("hostile", [{"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"}])
async def test_cookie_login_from_a_foreign_site_is_refused(
    web: httpx.AsyncClient, user: Any, hostile: dict[str, str]
) -> None:
    """Cookie-mode login from a foreign origin is 403 csrf_failed and sets no cookie (no login
    CSRF)."""
    r = await web.post(
        "/api/v1/auth/login",
        json={"email": "alice@example.com", "password": PASSWORD},
        headers={**COOKIE_MODE, **hostile},
    )
    assert (r.status_code, r.json()["code"]) == (403, "csrf_failed")
    assert r.headers.get_list("set-cookie") == []


@pytest.mark.asyncio
async def test_cookie_login_from_an_allowed_cors_origin_is_accepted(
    web: httpx.AsyncClient, user: Any
) -> None:
    """Cookie-mode login from a CORS_ORIGINS origin sets cookies and answers with that exact
    ACAO."""
    r = await web.post(
        "/api/v1/auth/login",
        json={"email": "alice@example.com", "password": PASSWORD},
        headers={**COOKIE_MODE, "Origin": APP_ORIGIN},
    )
    assert r.status_code == 200, r.text
    assert set(set_cookies(r)) == {"gh_access", "gh_refresh", "gh_csrf", "gh_device"}
    assert r.headers["access-control-allow-origin"] == APP_ORIGIN
    assert r.headers["access-control-allow-credentials"] == "true"


# -- refresh -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_cookie_refresh_rotates_and_old_cookie_converges_within_grace(
    web: httpx.AsyncClient, user: Any
) -> None:
    """Refresh by cookie sets new access and refresh cookies; the old refresh cookie within grace
    gets the same new one."""
    cookies = await cookie_login(web)
    r = await web.post("/api/v1/auth/refresh", headers=browser(cookies, csrf=cookies["gh_csrf"]))
    assert r.status_code == 200, r.text
    assert TOKEN_FIELDS.isdisjoint(r.json())
    first = {name: attrs["value"] for name, attrs in set_cookies(r).items()}
    assert first["gh_refresh"] != cookies["gh_refresh"]
    assert first["gh_access"] != cookies["gh_access"]
    assert first["gh_csrf"] == cookies["gh_csrf"]  # bound to the session, which lives on
    again = await web.post(
        "/api/v1/auth/refresh", headers=browser(cookies, csrf=cookies["gh_csrf"])
    )
    assert again.status_code == 200, again.text
    assert set_cookies(again)["gh_refresh"]["value"] == first["gh_refresh"]
    r = await web.get("/api/v1/users/profile", headers=browser(first))
    assert r.status_code == 200


@pytest.mark.asyncio
async def test_cookie_refresh_needs_csrf_and_same_site(web: httpx.AsyncClient, user: Any) -> None:
    """Refresh by cookie without the CSRF token, or from a foreign origin, is 403 and does not
    rotate."""
    cookies = await cookie_login(web)
    r = await web.post("/api/v1/auth/refresh", headers=browser(cookies))
    assert (r.status_code, r.json()["code"]) == (403, "csrf_failed")
    r = await web.post(
        "/api/v1/auth/refresh", headers=browser(cookies, csrf=cookies["gh_csrf"], Origin=EVIL)
    )
    assert (r.status_code, r.json()["code"]) == (403, "csrf_failed")
    assert r.headers.get_list("set-cookie") == []
    r = await web.post("/api/v1/auth/refresh", headers=browser(cookies, csrf=cookies["gh_csrf"]))
    assert r.status_code == 200  # the refused attempts did not rotate or burn the token


@pytest.mark.asyncio
async def test_missing_access_cookie_with_refresh_cookie_asks_for_refresh(
    web: httpx.AsyncClient, user: Any
) -> None:
    """When gh_access has expired out of the jar but gh_refresh remains, the answer is 401
    token_expired."""
    cookies = await cookie_login(web)
    r = await web.get(
        "/api/v1/users/profile", headers=cookie_header(gh_refresh=cookies["gh_refresh"])
    )
    assert (r.status_code, r.json()["code"]) == (401, "token_expired")


# -- logout --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_logout_clears_all_three_cookies_with_their_paths(
    web: httpx.AsyncClient, user: Any
) -> None:
    """Logout answers 204 with expiring Set-Cookie for each cookie on the Path it was set with."""
    cookies = await cookie_login(web)
    r = await web.post("/api/v1/auth/logout", headers=browser(cookies, csrf=cookies["gh_csrf"]))
    assert r.status_code == 204
    cleared = set_cookies(r)
    assert {
        name: (attrs["value"], attrs["max-age"], attrs["path"]) for name, attrs in cleared.items()
    } == {"gh_access": ("", "0", "/"), "gh_refresh": ("", "0", "/api"), "gh_csrf": ("", "0", "/")}
    assert all(attrs.get("secure") is True for attrs in cleared.values())
    r = await web.get("/api/v1/users/profile", headers=browser(cookies))
    assert (r.status_code, r.json()["code"]) == (401, "session_revoked")
    r = await web.post("/api/v1/auth/refresh", headers=browser(cookies, csrf=cookies["gh_csrf"]))
    assert (r.status_code, r.json()["code"]) == (401, "session_revoked")


@pytest.mark.asyncio
async def test_cookie_logout_without_csrf_token_keeps_the_session(
    web: httpx.AsyncClient, user: Any
) -> None:
    """A forged logout (cookies but no CSRF token) is refused and the session keeps working."""
    cookies = await cookie_login(web)
    r = await web.post("/api/v1/auth/logout", headers=browser(cookies))
    assert (r.status_code, r.json()["code"]) == (403, "csrf_failed")
    assert r.headers.get_list("set-cookie") == []
    assert (await web.get("/api/v1/users/profile", headers=browser(cookies))).status_code == 200


# -- credential precedence -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_authorization_header_wins_over_api_key_and_cookies(
    web: httpx.AsyncClient, web_ctx: Context, user: Any
) -> None:
    """With Authorization, X-API-Key and cookies together, the Authorization header decides who
    calls."""
    await create_user(web_ctx, "root@example.com", ["admin"], name="Root")
    root = await login(web, "root@example.com")
    key = await create_api_key(web, bearer(root), ["users:read"])
    await create_user(web_ctx, "bob@example.com", name="Bob")
    bob_cookies = await cookie_login(web, "bob@example.com")
    alice = await login(web)
    headers = {**bearer(alice), "X-API-Key": key["key"], **browser(bob_cookies)}
    r = await web.get("/api/v1/users/profile", headers=headers)
    assert (r.status_code, r.json()["email"]) == (200, "alice@example.com")
    r = await web.get(
        "/api/v1/users/profile",
        headers={"Authorization": "Bearer not-a-token", **browser(bob_cookies)},
    )
    assert (r.status_code, r.json()["code"]) == (401, "token_invalid")


@pytest.mark.asyncio
async def test_api_key_header_wins_over_cookies(
    web: httpx.AsyncClient, web_ctx: Context, user: Any
) -> None:
    """X-API-Key beats cookies: a users:read key lists users next to a plain user's cookies, and is
    no user session."""
    await create_user(web_ctx, "root@example.com", ["admin"], name="Root")
    key = await create_api_key(web, bearer(await login(web, "root@example.com")), ["users:read"])
    cookies = await cookie_login(web)
    r = await web.get("/api/v1/admin/users", headers={"X-API-Key": key["key"], **browser(cookies)})
    assert r.status_code == 200, r.text
    r = await web.get(
        "/api/v1/users/profile", headers={"X-API-Key": key["key"], **browser(cookies)}
    )
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    r = await web.get("/api/v1/admin/users", headers=browser(cookies))
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")


# -- CORS ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_preflight_from_allowed_origin_allows_credentials_for_that_origin(
    web: httpx.AsyncClient,
) -> None:
    """A preflight from a CORS_ORIGINS origin gets its exact origin and Allow-Credentials: true."""
    r = await web.options(
        "/api/v1/users/profile",
        headers={
            "Origin": APP_ORIGIN,
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "content-type,x-csrf-token",
        },
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == APP_ORIGIN
    assert r.headers["access-control-allow-credentials"] == "true"
    assert "x-csrf-token" in r.headers["access-control-allow-headers"].lower()


@pytest.mark.asyncio
async def test_foreign_origin_gets_no_cors_allowance(web: httpx.AsyncClient, user: Any) -> None:
    """Neither a preflight nor a simple request from a foreign origin is answered with Access-
    Control-Allow-Origin."""
    r = await web.options(
        "/api/v1/users/profile", headers={"Origin": EVIL, "Access-Control-Request-Method": "PATCH"}
    )
    assert "access-control-allow-origin" not in r.headers
    assert r.status_code >= 400
    assert r.headers["content-type"] == "application/problem+json"
    r = await web.get("/api/v1/users/profile", headers={"Origin": EVIL, **bearer(await login(web))})
    assert "access-control-allow-origin" not in r.headers


@pytest.mark.asyncio
@pytest.mark.parametrize("value", ["*", "https://app.example.com,*", "https://*.example.com"])
async def test_wildcard_cors_origins_is_a_startup_error(make_settings: Any, value: str) -> None:
    """CORS_ORIGINS with a wildcard is refused at start-up with a line naming the variable."""
    with pytest.raises(SettingsError) as caught:
        make_settings(CORS_ORIGINS=value)
    assert any(line.startswith("CORS_ORIGINS:") for line in caught.value.lines)
