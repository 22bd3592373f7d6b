"""Ended sessions are pruned with their refresh-token history; live ones are kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from gatehouse.auth.janitor import prune_ended_sessions
from gatehouse.context import Context
from gatehouse.store.db.models import RefreshToken, Session
from tests.conftest import login

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)


@pytest.mark.asyncio
async def test_prune_removes_long_ended_sessions_and_their_tokens(
    client: httpx.AsyncClient, ctx: Context, alice: Any
) -> None:
    """Sessions expired, revoked or idle for over a day are deleted with their tokens; a live one stays."""
    sessions = [await login(client) for _ in range(4)]
    for tokens in sessions:
        r = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert r.status_code == 200
    long_ago = datetime.now(UTC) - timedelta(days=30)
    expired, revoked, idle, live = (s["session_id"] for s in sessions)
    async with ctx.db.begin() as db:
        await db.execute(update(Session).where(Session.id == expired).values(expires_at=long_ago))
        await db.execute(update(Session).where(Session.id == revoked).values(revoked_at=long_ago))
        await db.execute(update(Session).where(Session.id == idle).values(last_used_at=long_ago))
    async with ctx.db.begin() as db:
        assert await prune_ended_sessions(db, idle_ttl=ctx.settings.session_idle_ttl) == 3
    async with ctx.db() as db:
        assert list((await db.scalars(select(Session.id))).all()) == [live]
        tokens_left = await db.scalar(select(func.count()).select_from(RefreshToken))
    assert tokens_left == 2  # the live session's original and rotated tokens
