"""Password reset and email verification (API.md §8); no HTTP here.

A link's token is 256 random bits (base64url, 43 characters); the database keeps
only its SHA-256 (`email_links.token_hash`). It is single use: spending it is one
`UPDATE ... WHERE used_at IS NULL`, so two racers cannot both succeed. A reset
link also remembers a fingerprint of the password hash it was issued under; any
later password change (reset, change, admin or CLI) changes the hash and so
spends every older link. A newer email of the same kind supersedes the older
links (marked used when it is created).

Enumeration safety. `forgot` and the session-less `verify-request` do nothing on
the request path but queue a job (`Mailer.defer`) and answer 202: looking the
address up, the per-account cap (3 emails per hour), writing the link and the
audit event all happen on a mail worker after the answer, so neither the answer
nor its timing depends on whether the account exists.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatehouse.audit.service import Actor, record
from gatehouse.errors import LinkInvalid
from gatehouse.notify.dispatch.events import notify_after_commit
from gatehouse.notify.mail import Mailer, render
from gatehouse.settings import Settings
from gatehouse.store.db.models import EmailLink, User
from gatehouse.users import service as users
from gatehouse.users.accounts import AccountService
from gatehouse.users.emails import normalize_email

RESET, VERIFY = "reset", "verify"
MAX_EMAILS_PER_HOUR = 3
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def password_fingerprint(password_hash: str) -> str:
    return hashlib.sha256(b"gatehouse-reset-link:" + password_hash.encode()).hexdigest()


def _well_formed(token: str) -> bool:
    return 40 <= len(token) <= 128 and set(token) <= _TOKEN_CHARS


class Recovery:
    def __init__(self, *, db: async_sessionmaker[AsyncSession], accounts: AccountService,
                 mailer: Mailer, settings: Settings) -> None:
        self.db = db
        self.accounts = accounts
        self.sessions = accounts.sessions
        self.mailer = mailer
        self.reset_ttl = settings.password_reset_ttl
        self.verify_ttl = settings.email_verify_ttl
        self.app_url = settings.app_url

    # -- asking for an email ----------------------------------------------------------

    def request_reset(self, email: str, actor: Actor) -> None:
        """`forgot`: queue the work and return; the same for every address."""
        address = normalize_email(email)
        self.mailer.defer(lambda: self._send_reset(address, actor), "password_reset")

    def request_verification(self, email: str, actor: Actor) -> None:
        """`verify-request` without a session: like `forgot`."""
        address = normalize_email(email)
        self.mailer.defer(lambda: self._send_verification(address, None, actor), "email_verify")

    def request_verification_of(self, user_id: str, actor: Actor) -> None:
        """`verify-request` with a session, and registration."""
        self.mailer.defer(lambda: self._send_verification(None, user_id, actor), "email_verify")

    async def _send_reset(self, email: str, actor: Actor) -> None:
        async with self.db.begin() as db:
            user = await users.find_by_email(db, email)
            if user is None or user.disabled:
                return
            token = await self._issue(db, user, RESET, self.reset_ttl)
            await record(db, "password.reset_requested", actor, target_user_id=user.id,
                         email_sent=token is not None)
        if token is not None:
            self.mailer.submit(render(
                "password_reset", user.email, link=f"{self.app_url}/reset-password#token={token}",
                ttl_minutes=max(1, self.reset_ttl // 60),
            ))

    async def _send_verification(self, email: str | None, user_id: str | None, actor: Actor) -> None:
        async with self.db.begin() as db:
            if user_id is not None:
                user = await db.get(User, user_id)
            else:
                assert email is not None
                user = await users.find_by_email(db, email)
            if user is None or user.disabled or user.email_verified:
                return
            token = await self._issue(db, user, VERIFY, self.verify_ttl)
        if token is not None:
            self.mailer.submit(render(
                "email_verify", user.email, link=f"{self.app_url}/verify-email#token={token}",
                ttl_hours=max(1, self.verify_ttl // 3600),
            ))

    async def _issue(self, db: AsyncSession, user: User, kind: str, ttl: int) -> str | None:
        """A new link of `kind` for `user`, superseding older ones; None past the hourly cap."""
        now = datetime.now(UTC)
        recent = await db.scalar(
            select(func.count()).select_from(EmailLink).where(
                EmailLink.user_id == user.id, EmailLink.kind == kind,
                EmailLink.created_at > now - timedelta(hours=1),
            )
        )
        if (recent or 0) >= MAX_EMAILS_PER_HOUR:
            return None
        await db.execute(
            update(EmailLink)
            .where(EmailLink.user_id == user.id, EmailLink.kind == kind, EmailLink.used_at.is_(None))
            .values(used_at=now)
        )
        token = secrets.token_urlsafe(32)
        db.add(EmailLink(
            id=str(uuid.uuid4()), user_id=user.id, kind=kind, token_hash=token_hash(token),
            password_fp=password_fingerprint(user.password_hash) if kind == RESET else None,
            created_at=now, expires_at=now + timedelta(seconds=ttl), used_at=None,
        ))
        return token

    # -- following a link ---------------------------------------------------------------

    async def _live_link(self, db: AsyncSession, token: str, kind: str) -> tuple[EmailLink, User]:
        if not _well_formed(token):
            raise LinkInvalid()
        link = (await db.scalars(
            select(EmailLink).where(EmailLink.token_hash == token_hash(token))
        )).one_or_none()
        if link is None or link.kind != kind or link.used_at is not None:
            raise LinkInvalid()
        if datetime.now(UTC) >= link.expires_at:
            raise LinkInvalid()
        user = await db.get(User, link.user_id, populate_existing=True)
        if user is None or user.disabled:
            raise LinkInvalid()
        if kind == RESET and link.password_fp != password_fingerprint(user.password_hash):
            raise LinkInvalid()  # the password changed since the email was sent
        return link, user

    async def _spend(self, db: AsyncSession, link: EmailLink, now: datetime) -> None:
        spent = await db.execute(
            update(EmailLink).where(EmailLink.id == link.id, EmailLink.used_at.is_(None))
            .values(used_at=now)
        )
        if spent.rowcount != 1:  # type: ignore[attr-defined]
            raise LinkInvalid()  # another request spent it first

    async def reset(self, token: str, new_password: str, actor: Actor) -> None:
        """Set the password through a reset link; every session of the user ends."""
        async with self.db() as db:
            _, user = await self._live_link(db, token, RESET)
        self.accounts.check_password(new_password, email=user.email, name=user.name,
                                     field="new_password")
        new_hash = await self.accounts.hasher.hash(new_password)
        now = datetime.now(UTC)
        async with self.db.begin() as db:
            link, user = await self._live_link(db, token, RESET)  # again: it may have changed
            await self._spend(db, link, now)
            await users.set_password_hash(db, user.id, new_hash)
            await db.execute(update(User).where(User.id == user.id).values(email_verified=True))
            await db.execute(
                update(EmailLink)
                .where(EmailLink.user_id == user.id, EmailLink.kind == RESET,
                       EmailLink.used_at.is_(None))
                .values(used_at=now)
            )
            ids = await self.sessions.revoke(db, user_id=user.id, reason="password_reset")
            await record(db, "password.reset", _as(actor, user.id), target_user_id=user.id,
                         revoked_sessions=len(ids))
            notify_after_commit(db, user.id, "password.reset")
        self.accounts.cache.evict(user.id)
        await self.sessions.publish_revocation(ids, "password_reset")
        await self.accounts.throttle.unlock(user.email)

    async def verify(self, token: str, actor: Actor) -> None:
        """Mark the address of a verification link verified."""
        now = datetime.now(UTC)
        async with self.db.begin() as db:
            link, user = await self._live_link(db, token, VERIFY)
            await self._spend(db, link, now)
            await db.execute(update(User).where(User.id == user.id)
                             .values(email_verified=True, updated_at=now))
            await record(db, "email.verified", _as(actor, user.id), target_user_id=user.id)
        self.accounts.cache.evict(user.id)


async def prune_links(db: AsyncSession, now: datetime | None = None) -> int:
    """Delete links that expired over an hour ago (the hourly cap no longer counts them)."""
    cutoff = (now or datetime.now(UTC)) - timedelta(hours=1)
    result = await db.execute(delete(EmailLink).where(EmailLink.expires_at < cutoff))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _as(actor: Actor, user_id: str) -> Actor:
    """A link's follower is its user (they proved they read the mailbox)."""
    return Actor(user_id=user_id, ip=actor.ip, request_id=actor.request_id,
                 user_agent=actor.user_agent, rate_key=actor.rate_key)
