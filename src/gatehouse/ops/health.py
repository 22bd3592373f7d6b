"""Readiness checks shared by `/readyz` and `gatehouse doctor`: database (for a serving
process, including its copy of the live revocations), migrations, cache."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gatehouse.errors import ServiceUnavailable
from gatehouse.store.kv import KeyValueStore

if TYPE_CHECKING:
    from gatehouse.auth.revocation import Revocations

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


async def readiness(
    engine: AsyncEngine, kv: KeyValueStore, revocations: Revocations | None = None
) -> dict[str, Check]:
    """The checks of /readyz (`revocations` given) and `gatehouse doctor`.

    A serving process is not ready until it knows every live revocation (API.md §3):
    with a reachable, migrated database the probe loads them if the poller has not yet,
    else the database check says they are missing.
    """
    database, migrations = await check_database(engine)
    if revocations is not None and not revocations.ready and migrations.ok is database.ok:
        # (An unmigrated database: the migrations check already says why.)
        try:
            if not database.ok:
                raise ServiceUnavailable()
            await revocations.ensure_ready()
        except ServiceUnavailable:
            database = Check(False, f"{database.detail}; live revocations not loaded yet, "
                                    "so protected routes answer 503")
    return {"database": database, "migrations": migrations, "cache": await check_cache(kv)}
