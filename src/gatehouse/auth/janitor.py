"""Pruning of ended sessions, so refresh-token history does not grow without bound.

Every refresh adds a row (the superseded hashes are what tells a replayed
token, `refresh_reused`, from garbage, `refresh_invalid`). A session's rows are
needed only while the session lives and shortly after; once a session has
been over for `retention` seconds its row and its refresh tokens are deleted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, or_
from sqlalchemy.ext.asyncio import AsyncSession

from gatehouse.store.db.models import Session

PRUNE_INTERVAL = 600.0
RETENTION_SECONDS = 86_400


async def prune_ended_sessions(
    db: AsyncSession, *, idle_ttl: int, retention: int = RETENTION_SECONDS
) -> int:
    """Delete sessions ended more than `retention` seconds ago (tokens go by cascade)."""
    cutoff = datetime.now(UTC) - timedelta(seconds=retention)
    result = await db.execute(
        delete(Session).where(or_(
            Session.expires_at < cutoff,
            Session.revoked_at < cutoff,
            Session.last_used_at < cutoff - timedelta(seconds=idle_ttl),
        ))
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
