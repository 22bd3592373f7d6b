"""Session revocation and listing: logout, logout-all, revoking one, and the session list.

Revocations are written to the database first and published to the key-value
store after the commit (fail closed); `Revocations` (auth/revocation.py) is
what access-token checks read.

Revoking all of a user's sessions also records the user's not-before time (and
`revoke_everyone`, the global one): their access tokens are refused even when
their session row is missing, as after a database restore.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatehouse.audit.service import Actor, record
from gatehouse.auth.revocation import EVERYONE, NotBefore, Revocations, RevokedSessions, ms_of
from gatehouse.errors import NotFound
from gatehouse.ops.metrics import Metrics
from gatehouse.store.db.models import Session, TokenNotBefore
from gatehouse.store.db.units import dialect_module


async def record_not_before(
    db: AsyncSession, subject: str, at: datetime, keep_session: str | None = None
) -> NotBefore:
    """Store `subject`'s not-before (a user id, or EVERYONE) inside `db`'s transaction."""
    insert = dialect_module(db.get_bind().dialect.name).insert
    values = {"subject": subject, "not_before": at, "keep_session": keep_session}
    await db.execute(insert(TokenNotBefore).values(**values).on_conflict_do_update(
        index_elements=[TokenNotBefore.subject], set_=values))
    return NotBefore(subject, ms_of(at), keep_session)


class SessionAdmin:
    """Mixed into SessionService, which provides these attributes."""

    db: async_sessionmaker[AsyncSession]
    revocations: Revocations
    metrics: Metrics
    idle_ttl: int

    async def revoke(
        self, db: AsyncSession, *, user_id: str, reason: str, session_id: str | None = None,
        keep_session: str | None = None,
    ) -> RevokedSessions:
        """Revoke one session or all of a user's live sessions inside `db`'s transaction.

        All of them (no `session_id`) also records the user's not-before, sparing
        `keep_session`. Call `publish_revocation` after the commit (database first:
        fail closed).
        """
        now = datetime.now(UTC)
        stmt = update(Session).where(Session.user_id == user_id, Session.revoked_at.is_(None))
        if session_id is not None:
            stmt = stmt.where(Session.id == session_id)
        if keep_session is not None:
            stmt = stmt.where(Session.id != keep_session)
        result = await db.execute(
            stmt.values(revoked_at=now, revoke_reason=reason).returning(Session.id)
        )
        not_before = None
        if session_id is None:
            not_before = await record_not_before(db, user_id, now, keep_session)
        return RevokedSessions((r[0] for r in result.all()), not_before)

    async def revoke_everyone(self, db: AsyncSession, *, reason: str) -> RevokedSessions:
        """Revoke every live session and record the global not-before (`sessions revoke-all`)."""
        now = datetime.now(UTC)
        result = await db.execute(
            update(Session).where(Session.revoked_at.is_(None))
            .values(revoked_at=now, revoke_reason=reason).returning(Session.id)
        )
        not_before = await record_not_before(db, EVERYONE, now)
        return RevokedSessions((r[0] for r in result.all()), not_before)

    async def publish_revocation(self, session_ids: list[str], reason: str) -> None:
        """Publish revoked sessions, and the not-before a RevokedSessions carries."""
        await self.revocations.revoke_sessions(session_ids, reason)
        if session_ids:
            self.metrics.sessions_revoked.labels(reason).inc(len(session_ids))

    async def logout(self, user_id: str, session_id: str, actor: Actor) -> None:
        async with self.db.begin() as db:
            ids = await self.revoke(db, user_id=user_id, session_id=session_id, reason="logout")
            await record(db, "logout", actor, session_id=session_id)
        await self.publish_revocation(ids or [session_id], "logout")

    async def logout_all(self, user_id: str, actor: Actor) -> int:
        async with self.db.begin() as db:
            ids = await self.revoke(db, user_id=user_id, reason="logout_all")
            await record(db, "logout_all", actor, count=len(ids))
            await record(db, "sessions.revoked_all", actor, target_user_id=user_id,
                         count=len(ids), reason="logout_all")
        await self.publish_revocation(ids, "logout_all")
        return len(ids)

    async def revoke_one(self, user_id: str, session_id: str, actor: Actor) -> None:
        """DELETE /auth/sessions/{id}: own sessions only, 404 otherwise."""
        async with self.db.begin() as db:
            ids = await self.revoke(db, user_id=user_id, session_id=session_id, reason="logout")
            if not ids:
                raise NotFound("No such session.")
            await record(db, "session.revoked", actor, session_id=session_id)
        await self.publish_revocation(ids, "logout")

    async def list_sessions(
        self, user_id: str, current_sid: str | None, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        now = datetime.now(UTC)
        idle_cut = now - timedelta(seconds=self.idle_ttl)
        stmt = (
            select(Session)
            .where(Session.user_id == user_id, Session.revoked_at.is_(None),
                   Session.expires_at > now, Session.last_used_at > idle_cut)
            .order_by(Session.id.desc())
            .limit(limit + 1)
        )
        if cursor:
            stmt = stmt.where(Session.id < cursor)
        async with self.db() as db:
            rows = list((await db.scalars(stmt)).all())
        more = len(rows) > limit
        rows = rows[:limit]
        items = [
            {"id": s.id, "created_at": s.created_at, "last_used_at": s.last_used_at, "ip": s.ip,
             "user_agent": s.user_agent, "current": s.id == current_sid}
            for s in rows
        ]
        return items, (rows[-1].id if more and rows else None)
