"""The second step of signing in: `mfa_token` + a TOTP or recovery code -> a session (API.md §8).

Order of checks: the token (unknown, used, expired or burned: `mfa_expired`,
without touching any counter, since it names no account), then the login
throttle for the account's email and the client's IP (429 `login_throttled`,
not checked against the code and not counted), then the code. A wrong code
counts on the token (the fifth burns it) and as a failed login for the email
and IP, and is audited `mfa.failure`. A right code resets the email+IP
counter, spends the token (only one of racing right codes gets a session) and
opens the session exactly as a password-only login does.
"""

from __future__ import annotations

import hmac

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatehouse.audit.service import Actor, record
from gatehouse.auth.mfa import MfaService
from gatehouse.auth.mfa_challenge import Challenge, MfaChallenges
from gatehouse.auth.sessions import IssuedTokens, SessionService
from gatehouse.errors import AccountDisabled, LoginThrottled, MfaExpired, MfaInvalid
from gatehouse.store.db.models import User
from gatehouse.users.emails import audit_email


class MfaLogin:
    def __init__(
        self, *, db: async_sessionmaker[AsyncSession], mfa: MfaService, sessions: SessionService,
        challenges: MfaChallenges,
    ) -> None:
        self.db = db
        self.mfa = mfa
        self.sessions = sessions
        self.challenges = challenges
        self.throttle = sessions.throttle
        self.metrics = sessions.metrics

    async def complete(
        self, mfa_token: str, code: str, actor: Actor, *, auth_mode: str,
        device_user_id: str | None = None,
    ) -> IssuedTokens:
        try:
            challenge = await self.challenges.open(mfa_token)
        except MfaExpired:
            self.metrics.mfa.labels("expired").inc()
            raise
        ip = actor.rate_key or actor.ip or "unknown"
        known = device_user_id is not None and hmac.compare_digest(
            challenge.user_id.encode(), device_user_id.encode())
        try:
            await self.throttle.check(challenge.email, ip, known_device=known)
            user, method = await self._check_code(challenge, code)
            if method is None:
                await self.challenges.wrong_code(challenge)
                await self.throttle.failed(challenge.email, ip, known_device=known)
            else:
                await self.throttle.succeeded(challenge.email, ip, known_device=known)
        except LoginThrottled:
            self.metrics.logins.labels("throttled").inc()
            async with self.db.begin() as db:
                await record(db, "login.throttled", actor, **audit_email(challenge.email))
            self.sessions.alerts.throttled(challenge.email, ip=actor.ip, user_id=challenge.user_id)
            raise
        if method is None:
            self.metrics.mfa.labels("invalid").inc()
            async with self.db.begin() as db:
                await record(db, "mfa.failure", actor, **audit_email(challenge.email),
                             target_user_id=user.id, purpose="login")
            raise MfaInvalid()
        await self.challenges.claim(challenge)
        if method == "recovery_code":
            async with self.db.begin() as db:
                await record(db, "mfa.recovery_code_used",
                             Actor(user.id, actor.ip, actor.request_id), purpose="login")
        self.metrics.mfa.labels("success" if method == "totp" else "recovery_code").inc()
        issued = await self.sessions.open_session(user, actor, auth_mode)
        self.metrics.logins.labels("success").inc()
        return issued

    async def _check_code(self, challenge: Challenge, code: str) -> tuple[User, str | None]:
        """The user, and how the code proved them ("totp", "recovery_code") or None."""
        async with self.db() as db:
            user = await db.get(User, challenge.user_id)
        if user is None or not user.mfa_enabled:
            # Deleted, or the factor was reset since the password step: sign in again.
            self.metrics.mfa.labels("expired").inc()
            raise MfaExpired()
        if user.disabled:
            raise AccountDisabled()
        return user, await self.mfa.accept(user.id, code)
