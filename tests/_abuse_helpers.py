"""Helpers shared by the browser-session and abuse-resistance tests (issue 4).

Kept out of conftest.py on purpose: only these modules use them.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.conftest import PASSWORD

SITE = "http://127.0.0.1:8000"  # the test clients' base URL and the default PUBLIC_API_URL
COOKIE_MODE = {"X-Auth-Mode": "cookie"}


def set_cookies(response: httpx.Response) -> dict[str, dict[str, Any]]:
    """Parse every `Set-Cookie` header: name -> {"value": ..., lower-cased attribute: value or
    True}."""
    out: dict[str, dict[str, Any]] = {}
    for header in response.headers.get_list("set-cookie"):
        first, *attributes = (part.strip() for part in header.split(";"))
        name, _, value = first.partition("=")
        cookie: dict[str, Any] = {"value": value.strip('"')}
        for attribute in attributes:
            if not attribute:
                continue
            key, sep, attr_value = attribute.partition("=")
            cookie[key.strip().lower()] = attr_value.strip() if sep else True
        out[name.strip()] = cookie
    return out


def cookie_header(**cookies: str) -> dict[str, str]:
    """An explicit `Cookie` header (httpx's jar never sends Secure cookies to http:// URLs)."""
    return {"Cookie": "; ".join(f"{name}={value}" for name, value in cookies.items())}


async def cookie_login(
    client: httpx.AsyncClient,
    email: str = "alice@example.com",
    password: str = PASSWORD,
    **headers: str,
) -> dict[str, str]:
    """Log in in cookie mode and return the three cookie values by name."""
    r = await client.post(
        "/api/v1/auth/login",
        json={"email": email, "password": password},
        headers={**COOKIE_MODE, **headers},
    )
    assert r.status_code == 200, r.text
    client.cookies.clear()  # tests send cookies explicitly
    return {name: attrs["value"] for name, attrs in set_cookies(r).items()}


def browser(cookies: dict[str, str], *, csrf: str | None = None, **extra: str) -> dict[str, str]:
    """Headers a browser would send: the cookies of a session, plus X-CSRF-Token when given."""
    headers = cookie_header(**cookies)
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    return {**headers, **extra}


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample in exposition text (0.0 when absent)."""
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return 0.0


async def metrics_text(client: httpx.AsyncClient, token: str) -> str:
    r = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.text


async def create_api_key(
    client: httpx.AsyncClient, admin_headers: dict[str, str], scopes: list[str], **fields: Any
) -> dict[str, Any]:
    r = await client.post(
        "/api/v1/admin/api-keys",
        json={"name": "ci", "scopes": scopes, **fields},
        headers=admin_headers,
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body
