"""Revocation state that access-token checks read from the key-value store, never the database.

Two facts are kept, each only as long as an access token issued before it
can still be valid (ACCESS_TOKEN_TTL plus clock leeway):
- `rev:<session id>`: the session was revoked -> `session_revoked`;
- `roles:<user id>`: the user's roles changed at this millisecond -> tokens
  issued earlier answer `token_expired`, so clients refresh into the new roles.

The database stays the source of truth: on start-up `warm_up` reloads the
facts of that window, so a restart of an in-process store forgets nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gatehouse.auth.access_tokens import LEEWAY_SECONDS, AccessClaims
from gatehouse.auth.throttle import LoginThrottle
from gatehouse.errors import SessionRevoked, TokenExpired
from gatehouse.store.db.models import AuditEvent, Session, User
from gatehouse.store.kv import KeyValueStore

POLL_INTERVAL = 0.5
POLL_OVERLAP = 10.0  # seconds re-read each poll: tolerates clock skew between processes


class Revocations:
    def __init__(self, kv: KeyValueStore, access_ttl: int) -> None:
        self.kv = kv
        self.window = access_ttl + LEEWAY_SECONDS + 5

    async def check(self, claims: AccessClaims) -> None:
        revoked, roles_changed = await self.kv.get_many([f"rev:{claims.sid}", f"roles:{claims.sub}"])
        if revoked is not None:
            raise SessionRevoked()
        if roles_changed is not None and claims.issued_ms < int(roles_changed):
            raise TokenExpired("Your roles changed; refresh the token to get the new ones.")

    async def revoke_sessions(self, session_ids: Iterable[str], reason: str) -> None:
        for sid in session_ids:
            await self.kv.set(f"rev:{sid}", reason, self.window)

    async def roles_changed(self, user_id: str, at: datetime) -> None:
        await self.kv.set(f"roles:{user_id}", str(int(at.timestamp() * 1000)), self.window)

    async def warm_up(self, db: AsyncSession, window: float | None = None) -> int:
        """Copy the facts of the last `window` seconds from the database; returns how many.

        Run at start-up over the whole token window, then every POLL_INTERVAL over
        a short overlap: that is how revocations made by another process without a
        shared store (`gatehouse sessions revoke-all`, `users disable`) take effect
        within a second.
        """
        since = datetime.now(UTC) - timedelta(seconds=window or self.window)
        rows = (await db.execute(
            select(Session.id, Session.revoke_reason).where(Session.revoked_at >= since)
        )).all()
        for sid, reason in rows:
            await self.kv.set(f"rev:{sid}", reason or "revoked", self.window)
        users = (await db.execute(
            select(User.id, User.roles_changed_at).where(User.roles_changed_at >= since)
        )).all()
        for uid, changed in users:
            await self.roles_changed(uid, changed)
        return len(rows) + len(users)


async def apply_unlocks(db: AsyncSession, throttle: LoginThrottle, after_id: int) -> int:
    """Apply `user.unlocked` audit events newer than `after_id`; returns the newest id seen.

    The first call (after_id 0) only finds the current position: unlocks from
    before start-up concern counters this process never had.
    """
    if after_id == 0:
        newest = await db.scalar(select(func.max(AuditEvent.id)))
        return int(newest or 0) or -1
    # The high-water mark first, then the unlocks up to it: an unlock committed between
    # the two queries is then picked up by the next poll instead of being skipped.
    newest = await db.scalar(select(func.max(AuditEvent.id))) or after_id
    rows = (await db.execute(
        select(AuditEvent.id, AuditEvent.data)
        .where(AuditEvent.id > max(after_id, 0), AuditEvent.id <= newest,
               AuditEvent.type == "user.unlocked")
        .order_by(AuditEvent.id)
    )).all()
    for _, data in rows:
        target = data.get("target_user_id") if isinstance(data, dict) else None
        email = await db.scalar(select(User.email).where(User.id == target)) if target else None
        if email:
            await throttle.unlock(email)
    return int(newest)
