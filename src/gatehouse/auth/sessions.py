"""Sessions: login, refresh-token rotation with idempotent grace, revocation.

Refresh tokens are `<session id>.<secret>` with a 256-bit secret; the database
keeps only HMAC(refresh-hash key, secret). Rotation is deterministic: the
successor of secret S is HMAC(successor key, S). So every racer holding S
computes the same successor, the insert of its hash is idempotent (a primary
key with ON CONFLICT DO NOTHING), and all of them answer with the same token
(DESIGN.md "The token lifecycle" §3).

A superseded token presented within REFRESH_GRACE_SECONDS of being superseded
walks the chain S -> S' -> S'' ... to the session's current token and answers
with it (same value every time, no new rotation); later, it is theft: the
session is revoked and `refresh.reuse_detected` recorded.

The refresh's statements are in `refresh_units`; logout, revocation and the
session list in `session_admin`.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatehouse.audit.service import Actor, event_row, record
from gatehouse.auth import login_units, refresh_units
from gatehouse.auth.access_tokens import AccessTokens, uuid7, uuid7_ms
from gatehouse.auth.keys import ServerKeys
from gatehouse.auth.mfa_challenge import MfaChallenges
from gatehouse.auth.passwords import PasswordHasher
from gatehouse.auth.revocation import EVERYONE, Revocations, ms_of
from gatehouse.auth.session_admin import SessionAdmin
from gatehouse.auth.throttle import LoginThrottle
from gatehouse.errors import (
    AccountDisabled,
    EmailUnverified,
    InvalidCredentials,
    LoginThrottled,
    MfaRequired,
    RefreshExpired,
    RefreshInvalid,
    RefreshReused,
    SessionRevoked,
)
from gatehouse.notify.alerts import Alerts
from gatehouse.notify.dispatch.events import notify_after_commit, notify_committed
from gatehouse.ops.metrics import Metrics
from gatehouse.store.db.models import Session, TokenNotBefore, User
from gatehouse.store.db.units import UnitRunner
from gatehouse.users.emails import audit_email, normalize_email
from gatehouse.users.service import UserSnapshot, set_password_hash

_TOKEN = re.compile(r"^([0-9a-f-]{36})\.([A-Za-z0-9_-]{43})$")

MAX_GRACE_CHAIN = 64


@dataclass(frozen=True)
class SessionPolicy:
    refresh_ttl: int
    idle_ttl: int
    grace_seconds: int
    # GATEHOUSE_REQUIRE_VERIFIED_EMAIL: a correct password of an unverified address is 403.
    require_verified_email: bool = False


@dataclass
class IssuedTokens:
    access_token: str
    access_exp: int
    refresh_token: str
    session_id: str
    session_expires_at: datetime
    user: User | UserSnapshot
    result: str = "success"  # "success" or "grace" for refreshes

    def expires_in(self) -> int:
        return max(0, self.access_exp - int(time.time()))

    def refresh_expires_in(self) -> int:
        return max(0, int((self.session_expires_at - datetime.now(UTC)).total_seconds()))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class SessionService(SessionAdmin):
    def __init__(
        self,
        *,
        db: async_sessionmaker[AsyncSession],
        keys: ServerKeys,
        tokens: AccessTokens,
        hasher: PasswordHasher,
        revocations: Revocations,
        throttle: LoginThrottle,
        metrics: Metrics,
        policy: SessionPolicy,
        units: UnitRunner,
        challenges: MfaChallenges,
        alerts: Alerts,
    ) -> None:
        self.db = db
        self.alerts = alerts
        self.units = units
        self.keys = keys
        self.tokens = tokens
        self.hasher = hasher
        self.revocations = revocations
        self.throttle = throttle
        self.metrics = metrics
        self.policy = policy
        self.idle_ttl = policy.idle_ttl
        self.challenges = challenges

    # -- secrets --------------------------------------------------------------------

    def hash_secret(self, secret: str) -> str:
        return ServerKeys.mac(self.keys.refresh_hash, secret)

    def successor(self, secret: str) -> str:
        return _b64(hmac.digest(self.keys.refresh_successor, secret.encode(), "sha256"))

    def csrf_token(self, session_id: str) -> str:
        """The CSRF token bound to a session (no storage: recomputed to check)."""
        return _b64(hmac.digest(self.keys.csrf, session_id.encode(), "sha256"))

    def csrf_valid(self, session_id: str, presented: str) -> bool:
        return hmac.compare_digest(self.csrf_token(session_id), presented)

    # -- login ----------------------------------------------------------------------

    async def login(
        self, email: str, password: str, actor: Actor, *, auth_mode: str = "token",
        device_user_id: str | None = None,
    ) -> IssuedTokens:
        """`device_user_id`: whom the client's `gh_device` cookie vouches for (auth/devices.py)."""
        email = normalize_email(email)
        ip = actor.rate_key or actor.ip or "unknown"
        try:
            user = await self.units.run(login_units.user_by_email, email)
            # A device cookie of this very account lifts the per-email ceiling (API.md §4).
            known = user is not None and device_user_id is not None and hmac.compare_digest(
                user.id.encode(), device_user_id.encode())
            await self.throttle.check(email, ip, known_device=known)
            verification = await self.hasher.verify(user.password_hash if user else None, password)
            # Settle with the throttle before answering: if parallel attempts locked the
            # pair while this one was being verified, it answers 429 too (no verdict).
            if user is None or not verification.ok:
                await self.throttle.failed(email, ip, known_device=known)
            elif user.disabled or user.mfa_enabled:
                # No verdict yet, so no reset of the counter. With MFA on only the second step
                # resets it: else password, 4 wrong codes, password, ... would never lock.
                await self.throttle.check(email, ip, known_device=known)
            else:
                await self.throttle.succeeded(email, ip, known_device=known)
        except LoginThrottled:
            self.metrics.logins.labels("throttled").inc()
            await self.units.run_in_transaction(
                login_units.record, event_row("login.throttled", actor, **audit_email(email)))
            self.alerts.throttled(email, ip=actor.ip, user_id=user.id if user else None)
            raise
        if user is None or not verification.ok:
            self.metrics.logins.labels("invalid_credentials").inc()
            await self.units.run_in_transaction(login_units.record, event_row(
                "login.failure", actor, **audit_email(email),
                target_user_id=user.id if user else None))
            raise InvalidCredentials()
        if user.disabled:
            self.metrics.logins.labels("disabled").inc()
            raise AccountDisabled()
        if self.policy.require_verified_email and not user.email_verified:
            self.metrics.logins.labels("unverified").inc()
            raise EmailUnverified()
        if verification.needs_rehash:
            new_hash = await self.hasher.hash(password)
            async with self.db.begin() as db:
                await set_password_hash(db, user.id, new_hash)
        if user.mfa_enabled:
            # The password is right but opens no session: the second step (auth/mfa_login.py)
            # does, given the single-use mfa_token and a code (API.md §8).
            self.metrics.logins.labels("mfa_required").inc()
            raise MfaRequired(await self.challenges.issue(user.id, email))
        issued = await self._open_session(user, actor, auth_mode)
        self.metrics.logins.labels("success").inc()
        return issued

    async def open_session(self, user: User, actor: Actor, auth_mode: str) -> IssuedTokens:
        """A new session for `user`, whose every check (password, second factor) has passed."""
        return await self._open_session(user, actor, auth_mode)

    async def _open_session(self, user: User, actor: Actor, auth_mode: str) -> IssuedTokens:
        now = datetime.now(UTC)
        sid = uuid7()
        secret = _b64(secrets.token_bytes(32))
        expires = now + timedelta(seconds=self.policy.refresh_ttl)
        agent = (actor.user_agent or "")[:512] or None
        new = login_units.NewSession(
            session={"id": sid, "user_id": user.id, "created_at": now, "expires_at": expires,
                     "last_used_at": now, "ip": actor.ip, "user_agent": agent,
                     "auth_mode": auth_mode},
            refresh_token={"token_hash": self.hash_secret(secret), "session_id": sid,
                           "generation": 0, "created_at": now, "superseded_at": None},
            audit_event=event_row("login.success", Actor(user.id, actor.ip, actor.request_id),
                                  session_id=sid, auth_mode=auth_mode),
        )
        if await self.units.run_in_transaction(login_units.open_session, new, now):
            notify_committed(self.db, user.id, "login.new_device", ip=actor.ip,
                             device=(agent or "unknown browser")[:80])
        access, exp = self.tokens.issue(user_id=user.id, session_id=sid, roles=list(user.roles))
        return IssuedTokens(access, exp, f"{sid}.{secret}", sid, expires, user)

    # -- refresh --------------------------------------------------------------------

    async def refresh(self, refresh_token: str, actor: Actor) -> IssuedTokens:
        started = time.perf_counter()
        try:
            issued = await self._refresh(refresh_token, actor)
        except (RefreshInvalid, RefreshExpired, RefreshReused, SessionRevoked) as exc:
            label = {RefreshInvalid: "invalid", RefreshExpired: "expired",
                     RefreshReused: "reused", SessionRevoked: "revoked"}[type(exc)]
            self.metrics.refreshes.labels(label).inc()
            raise
        self.metrics.refreshes.labels(issued.result).inc()
        self.metrics.refresh_duration.observe(time.perf_counter() - started)
        return issued

    async def _refresh(self, refresh_token: str, actor: Actor) -> IssuedTokens:
        match = _TOKEN.match(refresh_token or "")
        if match is None:
            raise RefreshInvalid()
        sid, secret = match.groups()
        token_hash = self.hash_secret(secret)
        now = datetime.now(UTC)
        new_secret = self.successor(secret)

        def rotation(row: Any) -> tuple[Any, ...] | None:
            """Refuse a dead session (raises); the rotation's writes when the token is the
            session's current one. Runs on the unit's thread, between lookup and write."""
            if row is None:
                return None
            self._check_alive(row, sid, token_hash, now)
            if row.superseded_at is not None:
                return None
            successor = {
                "token_hash": self.hash_secret(new_secret), "session_id": sid,
                "generation": row.generation + 1, "created_at": now, "superseded_at": None,
            }
            touch = {"sid": sid, "at": now, "client_ip": actor.ip,
                     "agent": (actor.user_agent or "")[:512] or None}
            return token_hash, now, successor, touch

        # One trip: the lookup, the checks, and the rotation when the token is current.
        row, rotated = await self.units.read_then_write(
            refresh_units.lookup, (token_hash, sid), rotation, refresh_units.rotate)
        if row is None:
            if await self._predates_global_not_before(sid):
                raise SessionRevoked()  # its row is gone (restored database), revoke-all came after
            raise RefreshInvalid()
        (generation, superseded_at, expires_at, _, _, _, user_id, email, name, roles, disabled,
         created_at, email_verified, mfa_enabled) = row
        user = UserSnapshot(id=user_id, email=email, name=name, roles=roles, disabled=disabled,
                            created_at=created_at, email_verified=bool(email_verified),
                            mfa_enabled=bool(mfa_enabled))
        if superseded_at is None:
            # False: another racer rotated it between our read and our write (maybe more than
            # once since), so answer the session's current token, exactly like the grace path.
            if not rotated:
                new_secret = await self._current_in_chain(sid, secret, generation)
            result = "success" if rotated else "grace"
        elif (now - superseded_at).total_seconds() <= self.policy.grace_seconds:
            new_secret = await self._current_in_chain(sid, secret, generation)
            result = "grace"
        else:
            await self._reuse_detected(sid, user_id, token_hash, actor)
            raise RefreshReused()
        access, exp = self.tokens.issue(user_id=user_id, session_id=sid, roles=list(roles))
        return IssuedTokens(access, exp, f"{sid}.{new_secret}", sid, expires_at, user, result)

    def _check_alive(self, row: Any, sid: str, token_hash: str, now: datetime) -> None:
        """Raise unless the looked-up session may still refresh: not revoked (a revoked
        session's rotated-away token is reuse), its user neither deleted nor disabled, not
        older than a logout-all, within its absolute and idle lifetimes."""
        if row.revoked_at is not None or row.disabled or row.id is None:
            if row.reuse_token_hash is not None and hmac.compare_digest(
                    row.reuse_token_hash, token_hash):
                raise RefreshReused()
            raise SessionRevoked()
        if self.revocations.session_predates_not_before(row.id, sid):
            raise SessionRevoked()  # a session that raced a logout-all or revoke-all
        idle_end = row.last_used_at + timedelta(seconds=self.policy.idle_ttl)
        if now >= row.expires_at or now >= idle_end:
            raise RefreshExpired()

    async def _predates_global_not_before(self, sid: str) -> bool:
        """A refresh token naming no known session: was its session (created at the
        millisecond in its UUIDv7 id) opened before `sessions revoke-all`? Only this rare
        path reads the database; whose session it was is unknown, so per-user not-befores
        cannot tell."""
        created = uuid7_ms(sid)
        if created is None:
            return False
        async with self.db() as db:
            at = await db.scalar(
                select(TokenNotBefore.not_before).where(TokenNotBefore.subject == EVERYONE))
        return at is not None and created <= ms_of(at)

    async def _current_in_chain(self, sid: str, secret: str, generation: int) -> str:
        current = await self.units.run(refresh_units.current, sid)
        if current is None:
            raise SessionRevoked()
        cur_hash, cur_gen = current
        steps = cur_gen - generation
        if not 0 < steps <= MAX_GRACE_CHAIN:
            raise RefreshInvalid()
        candidate = secret
        for _ in range(steps):
            candidate = self.successor(candidate)
        if not hmac.compare_digest(self.hash_secret(candidate), cur_hash):
            raise RefreshInvalid()
        return candidate

    async def _reuse_detected(self, sid: str, user_id: str, token_hash: str, actor: Actor) -> None:
        now = datetime.now(UTC)
        async with self.db.begin() as db:
            result = await db.execute(
                update(Session).where(Session.id == sid, Session.revoked_at.is_(None))
                .values(revoked_at=now, revoke_reason="reuse", reuse_token_hash=token_hash)
            )
            if result.rowcount:  # type: ignore[attr-defined]
                # Whoever presents the token acts as the session's user, so the event is theirs
                # (found by `GET /admin/audit?user_id=`).
                await record(db, "refresh.reuse_detected",
                             Actor(user_id, actor.ip, actor.request_id, actor.user_agent),
                             session_id=sid, target_user_id=user_id)
                notify_after_commit(db, user_id, "refresh.reuse_detected")
                owner = await db.get(User, user_id)
                # Possible token theft: who, from where, which session (never the token).
                self.alerts.emit("reuse", user_id=user_id, email=owner.email if owner else None,
                                 ip=actor.ip, session=sid[:8], request_id=actor.request_id)
        await self.revocations.revoke_sessions([sid], "reuse")
        self.metrics.sessions_revoked.labels("reuse").inc()
