"""User accounts. Functions take an open transaction so callers decide what commits together."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, cast, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gatehouse.auth.rbac import ROLES
from gatehouse.errors import Conflict, NotFound, ValidationFailed
from gatehouse.store.db.models import User


def rfc3339(value: datetime) -> str:
    """`2026-12-03T10:00:00Z`: isoformat is a fifth of strftime's cost (every token answer)."""
    return value.astimezone(UTC).isoformat(timespec="seconds")[:19] + "Z"


@dataclass(frozen=True, slots=True)
class UserSnapshot:
    """What an answer shows of a user, read without the ORM: the refresh builds one per
    rotation, and an ORM `User` cost 10 % of a refresh (instrumented attribute sets)."""

    id: str
    email: str
    name: str
    roles: list[str]
    disabled: bool
    created_at: datetime
    email_verified: bool
    mfa_enabled: bool


def public_user(user: User | UserSnapshot) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "roles": list(user.roles),
        "disabled": user.disabled,
        "created_at": rfc3339(user.created_at),
        "email_verified": bool(user.email_verified),
        "mfa_enabled": bool(user.mfa_enabled),
    }


def check_roles(roles: list[str], field: str = "roles") -> list[str]:
    unknown = sorted(set(roles) - ROLES)
    if unknown:
        raise ValidationFailed(
            f"Unknown role(s); known roles are {', '.join(sorted(ROLES))}.",
            [{"loc": ["body", field], "msg": "Unknown role."}],
        )
    return sorted(set(roles), key=roles.index)


async def get_user(db: AsyncSession, user_id: str) -> User:
    user = await db.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    return user


async def get_user_for_update(db: AsyncSession, user_id: str) -> User:
    """The user as committed now, its row locked until the transaction ends (PostgreSQL)."""
    user = (await db.scalars(
        select(User).where(User.id == user_id).with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )).one_or_none()
    if user is None:
        raise NotFound("No such user.")
    return user


async def lock_admins(db: AsyncSession, user_id: str) -> list[User]:
    """Every user with the `admin` role, serialized against other callers of this function
    until the transaction ends, so two admins demoting each other at once cannot both succeed.

    PostgreSQL: the admins' rows are locked (FOR NO KEY UPDATE) in id order, so two callers
    cannot deadlock; one that waited re-reads them and no longer sees a demoted admin. SQLite:
    a no-op write to `user_id`'s row first takes the database's single write lock, so the read
    below already sees whatever an earlier caller committed.
    """
    bind = db.get_bind()
    if bind.dialect.name == "sqlite":
        await db.execute(
            update(User).where(User.id == user_id).values(updated_at=User.updated_at)
            .execution_options(synchronize_session=False)
        )
    # Roles are a JSON list of fixed names; its text form contains `"admin"` exactly for admins.
    rows = (await db.scalars(
        select(User).where(cast(User.roles, String).like('%"admin"%')).order_by(User.id)
        .with_for_update(key_share=True).execution_options(populate_existing=True)
    )).all()
    return [u for u in rows if "admin" in u.roles]


async def find_by_email(db: AsyncSession, email: str) -> User | None:
    return (await db.scalars(select(User).where(User.email == email))).one_or_none()


async def create_user(
    db: AsyncSession, *, email: str, name: str, password_hash: str, roles: list[str],
    email_verified: bool = False,
) -> User:
    now = datetime.now(UTC)
    user = User(
        id=str(uuid.uuid4()), email=email, name=name, password_hash=password_hash,
        roles=check_roles(roles), disabled=False, created_at=now, updated_at=now,
        roles_changed_at=None, email_verified=email_verified, mfa_enabled=False,
    )
    if await find_by_email(db, email) is not None:
        raise Conflict("A user with this email already exists.")
    db.add(user)
    try:
        await db.flush()
    except IntegrityError:
        raise Conflict("A user with this email already exists.") from None
    return user


async def set_password_hash(db: AsyncSession, user_id: str, password_hash: str) -> None:
    await db.execute(
        update(User).where(User.id == user_id)
        .values(password_hash=password_hash, updated_at=datetime.now(UTC))
    )


async def delete_user(db: AsyncSession, user_id: str) -> None:
    await db.execute(delete(User).where(User.id == user_id))


async def count_users(db: AsyncSession) -> int:
    return int((await db.scalar(select(func.count()).select_from(User))) or 0)


def _cursor(email: str) -> str:
    return base64.urlsafe_b64encode(email.encode()).decode().rstrip("=")


def _uncursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed(
            "cursor is not valid.", [{"loc": ["query", "cursor"], "msg": "Invalid cursor."}]
        ) from None


async def list_users(
    db: AsyncSession, *, q: str | None, limit: int, cursor: str | None
) -> tuple[list[User], str | None]:
    """Ordered by email; `q` is a case-insensitive substring of email or name."""
    stmt = select(User).order_by(User.email).limit(limit + 1)
    if q:
        escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        stmt = stmt.where(
            or_(func.lower(User.email).like(pattern, escape="\\"),
                func.lower(User.name).like(pattern, escape="\\"))
        )
    if cursor:
        stmt = stmt.where(User.email > _uncursor(cursor))
    rows = list((await db.scalars(stmt)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (_cursor(rows[-1].email) if more and rows else None)
