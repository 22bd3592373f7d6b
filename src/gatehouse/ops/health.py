"""Readiness checks shared by `/readyz` and `gatehouse doctor`: database, migrations, cache."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gatehouse.store.kv import KeyValueStore

CHECK_TIMEOUT = 3.0


@dataclass
class Check:
    ok: bool
    detail: str


async def check_database(engine: AsyncEngine) -> tuple[Check, Check]:
    """(database reachable, migrations at head)."""
    # Alembic is imported on the first check, not at start-up: it costs ~10 MB per worker.
    from gatehouse.store.db.migrate import current_revision, head_revision

    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                current = await conn.run_sync(current_revision)
    except Exception as exc:  # any failure to talk to the database is "not ready"
        name = type(exc).__name__
        return Check(False, f"cannot reach the database ({name})"), Check(False, "unknown: database unreachable")
    head = head_revision()
    if current == head:
        migrations = Check(True, f"at head {head}")
    else:
        migrations = Check(False, f"at {current or 'nothing'}, head is {head}: run `gatehouse db upgrade`")
    return Check(True, engine.dialect.name), migrations


async def check_cache(kv: KeyValueStore) -> Check:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await kv.ping()
    except Exception as exc:  # any failure to talk to the cache is "not ready"
        return Check(False, f"cannot reach the cache ({type(exc).__name__})")
    return Check(True, kv.name)


async def readiness(engine: AsyncEngine, kv: KeyValueStore) -> dict[str, Check]:
    database, migrations = await check_database(engine)
    return {"database": database, "migrations": migrations, "cache": await check_cache(kv)}
