"""End-to-end happy path through the ASGI app, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import bearer, login

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)


@pytest.mark.asyncio
async def test_login_profile_logout_round_trip(client: httpx.AsyncClient, alice: Any) -> None:
    """A user logs in, reads the profile with the access token, logs out, and the token stops working."""
    tokens = await login(client)
    r = await client.get("/api/v1/users/profile", headers=bearer(tokens))
    assert r.status_code == 200
    assert r.json()["email"] == "alice@example.com"
    assert (await client.post("/api/v1/auth/logout", headers=bearer(tokens))).status_code == 204
    r = await client.get("/api/v1/users/profile", headers=bearer(tokens))
    assert (r.status_code, r.json()["code"]) == (401, "session_revoked")
