"""The `gh_device` cookie (API.md §4, 2026-12-02): strangers cannot lock a user out of a browser
that signed in before, and the cookie lifts nothing but the per-email ceiling."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from gatehouse.auth.devices import DeviceCookies
from gatehouse.context import Context
from tests._abuse_helpers import COOKIE_MODE, cookie_header, set_cookies
from tests.conftest import PASSWORD, asgi_client, create_user

WRONG = "not-the-password-at-all"
VICTIM = "victim@example.com"
ONE_YEAR = 365 * 24 * 3600


async def _login(
    client: httpx.AsyncClient, email: str = VICTIM, password: str = PASSWORD, **headers: str
) -> httpx.Response:
    r = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": password}, headers=headers
    )
    client.cookies.clear()  # every test sends its cookies explicitly
    return r


def _device(r: httpx.Response) -> str:
    assert r.status_code == 200, r.text
    value: str = set_cookies(r)["gh_device"]["value"]
    return value


def _throttled(r: httpx.Response) -> None:
    assert (r.status_code, r.json()["code"]) == (429, "login_throttled"), r.text


async def _flood(app: Any, email: str, failures: int, ips: list[str]) -> None:
    """`failures` wrong passwords for `email`, spread round-robin over `ips`."""
    clients = [asgi_client(app, client_ip=ip) for ip in ips]
    try:
        for i in range(failures):
            r = await _login(clients[i % len(clients)], email, WRONG)
            assert r.status_code == 401, r.text
    finally:
        for client in clients:
            await client.aclose()


@pytest.mark.asyncio
async def test_per_email_flood_does_not_lock_the_owner_out_of_a_known_browser(
    make_app: Any,
) -> None:
    """After 101 wrong passwords from several IPs the owner's browser, showing its gh_device
    cookie, still signs in (token and cookie mode), while a client without it gets 429."""
    # Pair locks off, so the flood reaches the per-email ceiling (default 100 an hour).
    app = make_app(LOGIN_MAX_FAILURES="1000")
    await create_user(app.state.ctx, VICTIM, name="Victim")
    async with asgi_client(app, client_ip="10.20.0.5") as home:
        device = _device(await _login(home))  # an earlier, ordinary sign-in
        await _flood(app, VICTIM, 101, [f"10.66.0.{i}" for i in range(4)])
        _throttled(await _login(home))  # the same browser without its cookie is locked out
        r = await _login(home, **cookie_header(gh_device=device))
        assert r.status_code == 200, r.text
        r = await _login(home, **COOKIE_MODE, **cookie_header(gh_device=device))
        assert r.status_code == 200, r.text
        assert "gh_access" in set_cookies(r)
    async with asgi_client(app, client_ip="10.21.0.9") as other_network:
        # The cookie travels with the browser, not the address.
        r = await _login(other_network, **cookie_header(gh_device=device))
        assert r.status_code == 200, r.text


@pytest.mark.asyncio
async def test_tampered_or_foreign_device_cookies_give_no_exemption(make_app: Any) -> None:
    """A gh_device cookie that was altered, made for another account or by another server is
    ignored: the per-email ceiling still throttles its holder, and the login is not an error."""
    app = make_app(LOGIN_MAX_FAILURES="1000", GATEHOUSE_LOGIN_EMAIL_CEILING="3")
    ctx: Context = app.state.ctx
    victim = await create_user(ctx, VICTIM, name="Victim")
    await create_user(ctx, "mallory@example.com", name="Mallory")
    # Another deployment (another ENCRYPTION_KEY) on the same database.
    other_server = make_app(ENCRYPTION_KEY="another-encryption-key-012345678")
    async with asgi_client(other_server) as elsewhere:
        forged_elsewhere = _device(await _login(elsewhere))
    async with asgi_client(app, client_ip="10.30.0.1") as client:
        own = _device(await _login(client))
        mallory = _device(await _login(client, "mallory@example.com"))
        await _flood(app, VICTIM, 4, ["10.66.1.1", "10.66.1.2"])
        version, user_id, issued, mac = own.split(".")
        assert user_id == victim.id  # bound to the account's id, not its email
        swapped = ".".join([version, victim.id, *mallory.split(".")[2:]])
        forged = [
            ".".join([version, user_id, str(int(issued) + 1), mac]),  # altered issue time
            own[:-2] + ("AA" if not own.endswith("AA") else "BB"),  # altered MAC
            mallory,  # a valid cookie, but another account's
            swapped,  # another account's MAC on the victim's id
            forged_elsewhere,  # same user id, another server's key
            "v1.garbage",
            "v1...",
        ]
        for value in forged:
            _throttled(await _login(client, **cookie_header(gh_device=value)))
        assert (await _login(client, **cookie_header(gh_device=own))).status_code == 200


@pytest.mark.asyncio
async def test_device_cookie_holder_still_meets_the_email_ip_throttle(make_app: Any) -> None:
    """A gh_device cookie does not lift the email+IP throttle, and its holder's failures count
    towards the per-email ceiling like anyone's."""
    app = make_app(LOGIN_MAX_FAILURES="2", GATEHOUSE_LOGIN_EMAIL_CEILING="3")
    await create_user(app.state.ctx, VICTIM, name="Victim")
    async with (
        asgi_client(app, client_ip="10.40.0.1") as holder,
        asgi_client(app, client_ip="10.40.0.2") as holder_elsewhere,
        asgi_client(app, client_ip="10.40.0.3") as stranger,
    ):
        device = cookie_header(gh_device=_device(await _login(holder)))
        for _ in range(2):
            assert (await _login(holder, password=WRONG, **device)).status_code == 401
        _throttled(await _login(holder, **device))  # email+IP lock, even with the cookie
        for _ in range(2):
            r = await _login(holder_elsewhere, password=WRONG, **device)
            assert r.status_code == 401
        _throttled(await _login(stranger))  # 4 failures > ceiling 3, all by the cookie holder


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", [{}, COOKIE_MODE], ids=["token-mode", "cookie-mode"])
async def test_login_sets_a_signed_strict_httponly_device_cookie(
    make_app: Any, mode: dict[str, str]
) -> None:
    """Every successful login sets gh_device: HttpOnly, Secure, SameSite=Strict, Path=/api (both
    login paths), one year; a failed login sets none."""
    app = make_app()
    await create_user(app.state.ctx, VICTIM, name="Victim")
    async with asgi_client(app) as client:
        failed = await _login(client, password=WRONG, **mode)
        assert "gh_device" not in set_cookies(failed)
        for path in ("/api/v1/auth/login", "/api/auth/login"):
            r = await client.post(path, json={"email": VICTIM, "password": PASSWORD}, headers=mode)
            client.cookies.clear()
            cookie = set_cookies(r)["gh_device"]
            flags = ("httponly", "secure", "samesite", "path", "max-age")
            assert {k: cookie.get(k) for k in flags} == {
                "httponly": True, "secure": True, "samesite": "strict", "path": "/api",
                "max-age": str(ONE_YEAR),
            }
            assert PASSWORD not in cookie["value"] and VICTIM not in cookie["value"]


@pytest.mark.asyncio
async def test_device_cookie_is_not_secure_with_insecure_cookies(make_app: Any) -> None:
    """With GATEHOUSE_INSECURE_COOKIES=1 (plain-http localhost) gh_device drops Secure, like the
    session cookies."""
    app = make_app(GATEHOUSE_INSECURE_COOKIES="1")
    await create_user(app.state.ctx, VICTIM, name="Victim")
    async with asgi_client(app) as client:
        cookie = set_cookies(await _login(client))["gh_device"]
    assert ("secure" in cookie, cookie["httponly"], cookie["samesite"]) == (False, True, "strict")


@pytest.mark.asyncio
async def test_device_cookie_does_not_lift_the_per_ip_ceiling(make_app: Any) -> None:
    """A client spraying many emails from one IP stays throttled by the per-IP ceiling, whatever
    device cookie it shows."""
    app = make_app(LOGIN_MAX_FAILURES="1000", GATEHOUSE_LOGIN_IP_CEILING="3")
    await create_user(app.state.ctx, VICTIM, name="Victim")
    async with asgi_client(app, client_ip="10.50.0.1") as sprayer:
        device = cookie_header(gh_device=_device(await _login(sprayer)))
        for i in range(4):
            r = await _login(sprayer, f"user{i}@example.com", WRONG, **device)
            assert r.status_code == 401
        _throttled(await _login(sprayer, **device))


@pytest.mark.asyncio
async def test_a_device_cookie_older_than_a_year_vouches_for_nobody(make_app: Any) -> None:
    """A genuine gh_device cookie issued more than a year ago (browsers drop it then; a copy kept
    elsewhere may not) gives no exemption, while one issued yesterday does."""
    app = make_app(LOGIN_MAX_FAILURES="1000", GATEHOUSE_LOGIN_EMAIL_CEILING="2")
    ctx: Context = app.state.ctx
    victim = await create_user(ctx, VICTIM, name="Victim")
    cookies = DeviceCookies(ctx.server_keys.device)
    stale = cookies.issue(victim.id, now=time.time() - ONE_YEAR - 60)
    fresh = cookies.issue(victim.id, now=time.time() - 86_400)
    await _flood(app, VICTIM, 3, ["10.60.0.1"])
    async with asgi_client(app, client_ip="10.60.0.2") as client:
        _throttled(await _login(client, **cookie_header(gh_device=stale)))
        assert (await _login(client, **cookie_header(gh_device=fresh))).status_code == 200
