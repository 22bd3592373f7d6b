"""Refresh races and revocation against real `gatehouse serve` processes, on SQLite and PostgreSQL.

These are the failures that only show with real sockets and a real server:
parallel refreshes of one token from separate connections, the grace window
measured by the server's clock, and revocations written by another process
(the CLI) reaching a running server through its database poll.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from gatehouse.context import Context
from tests.conftest import PASSWORD, Server, create_user, run_cli

pytestmark = [
    pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True),
    pytest.mark.slow,
]

P = "/api/v1"
RACERS = 50


def code_of(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, (r.json().get("code", "") if r.status_code >= 400 else "")


async def login(server: Server, email: str = "alice@example.com") -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        r = await client.post(f"{P}/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def refresh(server: Server, token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        return await client.post(f"{P}/auth/refresh", json={"refresh_token": token})


async def validate(server: Server, tokens: dict[str, Any]) -> tuple[int, str]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        r = await client.get(f"{P}/auth/validate",
                             headers={"Authorization": f"Bearer {tokens['access_token']}"})
    return code_of(r)


async def wait_for(server: Server, tokens: dict[str, Any], expected: tuple[int, str],
                   within: float) -> float:
    """Poll validate until it answers `expected`; return how long that took."""
    started = time.monotonic()
    while True:
        answer = await validate(server, tokens)
        elapsed = time.monotonic() - started
        if answer == expected:
            return elapsed
        assert elapsed < within, f"still {answer} after {elapsed:.2f}s"
        await asyncio.sleep(0.05)


@pytest.mark.asyncio
async def test_fifty_concurrent_refreshes_converge_then_logout_ends_the_session_at_once(
    make_server: Callable[..., Server], alice: Any
) -> None:
    """50 refreshes of one token over 50 connections, fired together, all answer 200 with one
    successor; the session lives on, and logout ends it on the very next request.
    """
    server = make_server()
    tokens = await login(server)
    ready = asyncio.Barrier(RACERS)

    async def racer() -> httpx.Response:
        async with httpx.AsyncClient(base_url=server.url, timeout=30,
                                     limits=httpx.Limits(max_connections=1)) as client:
            assert (await client.get("/healthz")).status_code == 200  # connection is open
            await ready.wait()
            return await client.post(f"{P}/auth/refresh",
                                     json={"refresh_token": tokens["refresh_token"]})

    answers = await asyncio.gather(*(racer() for _ in range(RACERS)))
    assert [r.status_code for r in answers] == [200] * RACERS, {r.text for r in answers}
    successors = {r.json()["refresh_token"] for r in answers}
    assert len(successors) == 1
    assert {r.json()["session_id"] for r in answers} == {tokens["session_id"]}
    (successor,) = successors
    assert successor != tokens["refresh_token"]
    # No fork: the one successor rotates normally and the session is alive.
    nxt = (await refresh(server, successor)).json()
    assert await validate(server, nxt) == (200, "")

    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        headers = {"Authorization": f"Bearer {nxt['access_token']}"}
        assert (await client.post(f"{P}/auth/logout", headers=headers)).status_code == 204
        r = await client.get(f"{P}/users/profile", headers=headers)
    assert code_of(r) == (401, "session_revoked")
    assert code_of(await refresh(server, nxt["refresh_token"])) == (401, "session_revoked")


@pytest.mark.asyncio
async def test_replay_after_grace_window_revokes_the_session(
    make_server: Callable[..., Server], alice: Any
) -> None:
    """With a 1 s grace window, replaying a rotated token 2 s later is refresh_reused and ends the
    session.
    """
    server = make_server(REFRESH_GRACE_SECONDS=1)
    tokens = await login(server)
    current = (await refresh(server, tokens["refresh_token"])).json()
    again = await refresh(server, tokens["refresh_token"])  # inside the window: same answer
    assert (again.status_code, again.json()["refresh_token"]) == (200, current["refresh_token"])
    await asyncio.sleep(2)
    assert code_of(await refresh(server, tokens["refresh_token"])) == (401, "refresh_reused")
    assert await validate(server, current) == (401, "session_revoked")
    assert code_of(await refresh(server, current["refresh_token"])) == (401, "session_revoked")


@pytest.mark.asyncio
async def test_cli_role_change_and_revocation_reach_the_running_server_within_seconds(
    make_server: Callable[..., Server], ctx: Context, alice: Any, database_url: str
) -> None:
    """`gatehouse users set-role` then `sessions revoke-all`, run in another process, reach a
    running server within ~1.5 s each.
    """
    await create_user(ctx, "bob@example.com", name="Bob")
    server = make_server()
    tokens = await login(server)
    bob = await login(server, "bob@example.com")

    result = run_cli("users", "set-role", "alice@example.com", "support",
                     env={"DATABASE_URL": database_url})
    assert result.returncode == 0, result.stderr
    # Older tokens answer token_expired (refresh, not log out) and a refresh brings the new roles.
    assert await wait_for(server, tokens, (401, "token_expired"), within=1.5) < 1.5
    fresh = (await refresh(server, tokens["refresh_token"])).json()
    assert fresh["user"]["roles"] == ["support"]
    assert await validate(server, fresh) == (200, "")
    assert await validate(server, bob) == (200, "")

    result = run_cli("sessions", "revoke-all", env={"DATABASE_URL": database_url})
    assert (result.returncode, result.stdout.strip()) == (0, "revoked 2 session(s)"), result.stderr
    assert await wait_for(server, fresh, (401, "session_revoked"), within=1.5) < 1.5
    assert await wait_for(server, bob, (401, "session_revoked"), within=1.5) < 1.5
    assert code_of(await refresh(server, fresh["refresh_token"])) == (401, "session_revoked")
