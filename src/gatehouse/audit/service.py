"""Audit events are written in the same transaction as the change they record."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from gatehouse.errors import ValidationFailed
from gatehouse.store.db.models import AuditEvent

EVENT_TYPES = frozenset({
    "login.success", "login.failure", "login.throttled", "logout", "logout_all",
    "refresh.reuse_detected", "password.changed", "session.revoked", "sessions.revoked_all",
    "user.created", "user.updated", "user.role_changed", "user.disabled", "user.unlocked",
    "users.imported", "api_key.created", "api_key.revoked",
    "password.reset_requested", "password.reset", "email.verified",
    "mfa.enabled", "mfa.disabled", "mfa.reset", "mfa.failure", "mfa.recovery_code_used",
    "phone.verified",
})


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it and from where: user_id is None for the CLI; with an API key, user_id is the
    key's creator and api_key_id the key (recorded as `data.api_key_id`, API.md §4)."""

    user_id: str | None = None
    ip: str | None = None
    request_id: str | None = None
    user_agent: str | None = None
    api_key_id: str | None = None
    # What per-IP limits and login throttling count this client by (IPv6: its /64); not audited.
    rate_key: str | None = None


CLI = Actor()


# The insert with bound parameters, for units of work on a sync Connection:
# `conn.execute(INSERT, event_row(...))` (auth/login_units.py).
INSERT = insert(AuditEvent.__table__)


def event_row(type_: str, actor: Actor, **data: Any) -> dict[str, Any]:
    """The audit_events row recording `type_` done by `actor`."""
    assert type_ in EVENT_TYPES, type_
    if actor.api_key_id is not None:
        data["api_key_id"] = actor.api_key_id  # what was done with a key names the key
    return {"at": datetime.now(UTC), "type": type_, "user_id": actor.user_id, "ip": actor.ip,
            "request_id": actor.request_id,
            "data": {k: v for k, v in data.items() if v is not None}}


async def record(db: AsyncSession, type_: str, actor: Actor, **data: Any) -> None:
    await db.execute(INSERT, event_row(type_, actor, **data))


def _encode_cursor(value: int) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except ValueError:
        raise ValidationFailed(
            "cursor is not valid.", [{"loc": ["query", "cursor"], "msg": "Invalid cursor."}]
        ) from None


async def list_events(
    db: AsyncSession, *, type_: str | None, user_id: str | None, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first; `next_cursor` continues after the last item."""
    stmt = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit + 1)
    if type_:
        stmt = stmt.where(AuditEvent.type == type_)
    if user_id:
        stmt = stmt.where(AuditEvent.user_id == user_id)
    if cursor:
        stmt = stmt.where(AuditEvent.id < _decode_cursor(cursor))
    rows = list((await db.scalars(stmt)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    items = [
        {"id": str(e.id), "at": e.at, "type": e.type, "user_id": e.user_id, "ip": e.ip,
         "request_id": e.request_id, "data": e.data}
        for e in rows
    ]
    return items, (_encode_cursor(rows[-1].id) if more and rows else None)
