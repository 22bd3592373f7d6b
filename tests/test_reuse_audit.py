"""Refresh-token reuse (API.md §3) in the audit log, as an administrator looks for it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gatehouse.context import Context
from tests.conftest import asgi_client, bearer, create_user, login


@pytest.mark.asyncio
async def test_reuse_detected_is_found_by_the_sessions_user_id(make_app: Any) -> None:
    """`refresh.reuse_detected` carries the session's user as `user_id`, so
    `GET /admin/audit?user_id=` lists it among that user's events."""
    app = make_app(REFRESH_GRACE_SECONDS=0)
    ctx: Context = app.state.ctx
    alice = await create_user(ctx)
    await create_user(ctx, "root@example.com", ["admin"], name="Root")
    async with asgi_client(app) as client:
        tokens = await login(client)
        refresh = {"refresh_token": tokens["refresh_token"]}
        assert (await client.post("/api/v1/auth/refresh", json=refresh)).status_code == 200
        await asyncio.sleep(0.05)
        replay = await client.post("/api/v1/auth/refresh", json=refresh)
        assert (replay.status_code, replay.json()["code"]) == (401, "refresh_reused")
        root = bearer(await login(client, "root@example.com"))
        r = await client.get("/api/v1/admin/audit", headers=root,
                             params={"user_id": alice.id, "type": "refresh.reuse_detected"})
    assert r.status_code == 200, r.text
    assert [(e["user_id"], e["data"]["session_id"]) for e in r.json()["items"]] == [
        (alice.id, tokens["session_id"])
    ]
