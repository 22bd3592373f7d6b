"""The profile cache never serves a stale record for long: local writes evict at once, others within ~1 s."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, update

from gatehouse.context import Context
from gatehouse.settings import Settings
from gatehouse.store.db import migrate
from gatehouse.store.db.models import User
from tests.conftest import PASSWORD, Server, bearer, create_user, login


@pytest.mark.asyncio
async def test_profile_patch_is_visible_on_the_next_read(client: httpx.AsyncClient, alice: Any) -> None:
    """After PATCH /users/profile the next GET shows the new name, not the cached one."""
    tokens = await login(client)
    assert (await client.get("/api/v1/users/profile", headers=bearer(tokens))).json()["name"] == "Alice"
    await client.patch("/api/v1/users/profile", headers=bearer(tokens), json={"name": "Alice B."})
    assert (await client.get("/api/v1/users/profile", headers=bearer(tokens))).json()["name"] == "Alice B."


def test_change_by_another_process_reaches_a_running_server_within_a_second(
    make_server: Callable[..., Server], make_settings: Callable[..., Settings], database_url: str
) -> None:
    """A name changed in the database by another process shows in a running server's profile within ~1 s."""
    settings = make_settings()

    async def seed() -> None:
        ctx = Context.build(settings)
        try:
            await create_user(ctx, "carol@example.com", name="Carol")
        finally:
            await ctx.close()

    asyncio.run(seed())
    server = make_server()
    token = httpx.post(f"{server.url}/api/v1/auth/login",
                       json={"email": "carol@example.com", "password": PASSWORD}).json()
    profile = f"{server.url}/api/v1/users/profile"
    assert httpx.get(profile, headers=bearer(token)).json()["name"] == "Carol"  # now cached
    engine = create_engine(migrate.sync_url(database_url))
    with engine.begin() as conn:
        conn.execute(update(User).where(User.email == "carol@example.com")
                     .values(name="Carol Two", updated_at=datetime.now(UTC)))
    engine.dispose()
    changed_at = time.monotonic()
    while httpx.get(profile, headers=bearer(token)).json()["name"] != "Carol Two":
        assert time.monotonic() - changed_at < 2.0, "stale profile served for over 2 s"
        time.sleep(0.1)
