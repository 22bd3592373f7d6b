"""Account operations that combine users, sessions, audit and passwords.

Used by the HTTP routes and the CLI alike, so both apply the same rules:
every change and its audit event commit together, and revocations are
published to the key-value store after the commit (fail closed).

Admin operations take `holder`, the caller's permissions (None for the CLI,
which may do everything): no one grants more than they hold, nor acts on a
user holding more than they do (`gatehouse.auth.rbac`), and the last enabled
admin cannot be demoted, disabled or deleted (API.md §4).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatehouse.audit.service import Actor, record
from gatehouse.auth.passwords import PasswordHasher, check_password_policy
from gatehouse.auth.rbac import ensure_may_act_on, ensure_may_grant
from gatehouse.auth.sessions import SessionService
from gatehouse.auth.throttle import LoginThrottle
from gatehouse.errors import Conflict, ValidationFailed
from gatehouse.notify.dispatch.events import notify_after_commit
from gatehouse.store.db.models import PhoneCode, Session, User
from gatehouse.users import service as users
from gatehouse.users.cache import UserCache
from gatehouse.users.emails import checked_email
from gatehouse.users.profile import normalize_phone, notify_prefs, own_profile

LAST_ADMIN = (
    "The last enabled admin cannot be demoted, disabled or deleted; make another admin first."
)


def _ensure_an_admin_remains(admins: list[User], user: User) -> None:
    """409 when `user` is the only enabled admin among `admins` (locked by lock_admins)."""
    if user.disabled or "admin" not in user.roles:
        return
    if not any(a.id != user.id and not a.disabled for a in admins):
        raise Conflict(LAST_ADMIN)


class AccountService:
    def __init__(
        self,
        *,
        db: async_sessionmaker[AsyncSession],
        hasher: PasswordHasher,
        sessions: SessionService,
        throttle: LoginThrottle,
        password_min_length: int,
    ) -> None:
        self.db = db
        self.hasher = hasher
        self.sessions = sessions
        self.throttle = throttle
        self.min_length = password_min_length
        self.cache = UserCache()

    def check_password(self, password: str, *, email: str, name: str = "", field: str = "password") -> None:
        check_password_policy(password, min_length=self.min_length, email=email, name=name, field=field)

    async def create(
        self, *, email: str, password: str, name: str, roles: list[str], actor: Actor,
        self_service: bool = False, holder: frozenset[str] | None = None,
        email_verified: bool = False,
    ) -> User:
        """Create an account; on self-service sign-up the new user is its own actor."""
        email = checked_email(email)
        users.check_roles(roles)
        ensure_may_grant(holder, roles)
        self.check_password(password, email=email, name=name)
        password_hash = await self.hasher.hash(password)
        async with self.db.begin() as db:
            user = await users.create_user(
                db, email=email, name=name, password_hash=password_hash, roles=roles,
                email_verified=email_verified,
            )
            if self_service:
                actor = dataclasses.replace(actor, user_id=user.id)
            await record(db, "user.created", actor, target_user_id=user.id, roles=user.roles)
        return user

    async def public_profile(self, user_id: str) -> dict[str, Any]:
        """The user's own profile (`own_profile`), from the per-process cache when fresh."""
        cached = self.cache.get(user_id)
        if cached is None:
            cached = own_profile(await self.get(user_id))
            self.cache.put(user_id, cached)
        return cached

    async def get(self, user_id: str) -> User:
        async with self.db() as db:
            return await users.get_user(db, user_id)

    async def update_profile(self, user_id: str, changes: dict[str, Any], actor: Actor) -> User:
        """PATCH /users/profile: `name`, `notify` (some channels) and/or `phone` (None removes
        it). A different phone is unverified, and a code texted to the old one is void."""
        if changes.get("phone") is not None:
            changes = {**changes, "phone": normalize_phone(changes["phone"])}
        async with self.db.begin() as db:
            user = await users.get_user(db, user_id)
            if "name" in changes:
                user.name = changes["name"]
            if "notify" in changes:
                user.notify = {**notify_prefs(user), **changes["notify"]}
            if "phone" in changes and changes["phone"] != user.phone:
                user.phone, user.phone_verified = changes["phone"], False
                await db.execute(delete(PhoneCode).where(PhoneCode.user_id == user_id))
            user.updated_at = datetime.now(UTC)
            await record(db, "user.updated", actor, target_user_id=user_id, fields=sorted(changes))
        self.cache.evict(user_id)
        return user

    async def change_password(
        self, user: User, session_id: str | None, current: str, new: str, actor: Actor
    ) -> None:
        ip = actor.rate_key or actor.ip or "unknown"  # an IPv6 client counts by its /64
        await self.throttle.check(user.email, ip)
        verification = await self.hasher.verify(user.password_hash, current)
        if not verification.ok:
            # A wrong current password is a failed login for this email and IP (API.md §4).
            await self.throttle.failed(user.email, ip)
            raise ValidationFailed(
                "current_password is not correct.",
                [{"loc": ["body", "current_password"], "msg": "Incorrect password."}],
            )
        self.check_password(new, email=user.email, name=user.name, field="new_password")
        if new == current:
            raise ValidationFailed(
                "new_password must differ from the current password.",
                [{"loc": ["body", "new_password"], "msg": "Same as the current password."}],
            )
        new_hash = await self.hasher.hash(new)
        async with self.db.begin() as db:
            await users.set_password_hash(db, user.id, new_hash)
            ids = await self.sessions.revoke(
                db, user_id=user.id, reason="password_change", keep_session=session_id
            )
            await record(db, "password.changed", actor, revoked_sessions=len(ids))
            notify_after_commit(db, user.id, "password.changed")
        self.cache.evict(user.id)
        await self.sessions.publish_revocation(ids, "password_change")

    async def admin_update(
        self, user_id: str, changes: dict[str, Any], actor: Actor,
        holder: frozenset[str] | None = None,
    ) -> User:
        """PATCH /admin/users/{id}: name, roles and/or disabled; all or nothing."""
        revoked: list[str] = []
        roles_changed_at = None
        if "roles" in changes:
            changes = {**changes, "roles": users.check_roles(changes["roles"])}
        async with self.db.begin() as db:
            # The CLI may leave no admin (it can always make one again); callers over HTTP not.
            guard = holder is not None and (
                ("roles" in changes and "admin" not in changes["roles"])
                or changes.get("disabled") is True
            )
            admins = await users.lock_admins(db, user_id) if guard else []
            user = await users.get_user_for_update(db, user_id)
            ensure_may_act_on(holder, user.roles)
            if "roles" in changes:
                ensure_may_grant(holder, changes["roles"])
            if guard:
                _ensure_an_admin_remains(admins, user)
            now = datetime.now(UTC)
            if "name" in changes and changes["name"] != user.name:
                user.name = changes["name"]
                await record(db, "user.updated", actor, target_user_id=user_id, fields=["name"])
            if "roles" in changes:
                roles = changes["roles"]
                if roles != list(user.roles):
                    old_roles = list(user.roles)
                    await record(db, "user.role_changed", actor, target_user_id=user_id,
                                 old_roles=list(user.roles), roles=roles)
                    user.roles = roles
                    user.roles_changed_at = roles_changed_at = now
            if "disabled" in changes and changes["disabled"] != user.disabled:
                user.disabled = bool(changes["disabled"])
                if user.disabled:
                    revoked = await self.sessions.revoke(db, user_id=user_id, reason="disabled")
                    await record(db, "user.disabled", actor, target_user_id=user_id,
                                 revoked_sessions=len(revoked))
                else:
                    await record(db, "user.updated", actor, target_user_id=user_id,
                                 fields=["disabled"], disabled=False)
            user.updated_at = now
        self.cache.evict(user_id)
        if roles_changed_at is not None:
            await self.sessions.revocations.roles_changed(user_id, roles_changed_at)
            self.sessions.alerts.emit(
                "role_change", user_id=user_id, email=user.email, actor=actor.user_id or "cli",
                ip=actor.ip, change=f"{' '.join(old_roles)} → {' '.join(user.roles)}")
        await self.sessions.publish_revocation(revoked, "disabled")
        return user

    async def set_roles(self, user_id: str, roles: list[str], actor: Actor) -> User:
        return await self.admin_update(user_id, {"roles": roles}, actor)

    async def delete(
        self, user_id: str, actor: Actor, holder: frozenset[str] | None = None
    ) -> None:
        """Delete the account; its sessions stay revoked and detached (no IP or user agent)
        so their tokens keep answering session_revoked, across restarts and instances."""
        async with self.db.begin() as db:
            admins = await users.lock_admins(db, user_id) if holder is not None else []
            user = await users.get_user_for_update(db, user_id)
            ensure_may_act_on(holder, user.roles)
            if holder is not None:
                _ensure_an_admin_remains(admins, user)
            ids = await self.sessions.revoke(db, user_id=user_id, reason="admin")
            await db.execute(update(Session).where(Session.user_id == user_id)
                             .values(ip=None, user_agent=None))
            await record(db, "sessions.revoked_all", actor, target_user_id=user_id,
                         count=len(ids), reason="user_deleted")
            await record(db, "user.updated", actor, target_user_id=user_id, deleted=True)
            await users.delete_user(db, user_id)  # sessions.user_id -> NULL (migration 0002)
        await self.sessions.publish_revocation(ids, "admin")
        self.cache.evict(user_id)

    async def revoke_all(
        self, user_id: str, actor: Actor, holder: frozenset[str] | None = None
    ) -> int:
        async with self.db.begin() as db:
            user = await users.get_user_for_update(db, user_id)
            ensure_may_act_on(holder, user.roles)
            ids = await self.sessions.revoke(db, user_id=user_id, reason="admin")
            await record(db, "sessions.revoked_all", actor, target_user_id=user_id, count=len(ids))
        await self.sessions.publish_revocation(ids, "admin")
        self.sessions.alerts.emit("revoke_all", user_id=user_id, email=user.email,
                                  actor=actor.user_id or "cli", ip=actor.ip, sessions=len(ids))
        return len(ids)

    async def unlock(
        self, user_id: str, actor: Actor, holder: frozenset[str] | None = None
    ) -> None:
        async with self.db.begin() as db:
            user = await users.get_user(db, user_id)
            ensure_may_act_on(holder, user.roles)
            await record(db, "user.unlocked", actor, target_user_id=user_id)
        await self.throttle.unlock(user.email)

    async def user_by_email(self, email: str) -> User | None:
        async with self.db() as db:
            return await users.find_by_email(db, checked_email(email))

    async def ensure_unique(self, email: str) -> None:
        if await self.user_by_email(email) is not None:
            raise Conflict("A user with this email already exists.")
