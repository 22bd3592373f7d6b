"""The TOTP second factor: setup, confirm, disable, recovery codes, reset (API.md §8).

- Secrets (the active one and a pending one awaiting its first code) are
  stored AES-GCM encrypted under a key derived from ENCRYPTION_KEY
  (`ServerKeys.encrypt`, as API keys' signing secrets).
- A TOTP code is accepted at most once: the newest accepted step is kept in
  `user_mfa.last_used_step` and only a conditional UPDATE (`... WHERE
  last_used_step < :step`) accepts a code, so of two racing requests with
  the same code exactly one wins (RFC 6238 §5.2).
- Ten recovery codes (`xxxxx-xxxxx`, 50 random bits each) are shown once and
  stored as HMAC-SHA256 under a derived key, bound to the user; each is
  spent by a conditional UPDATE, compared case-insensitively and with or
  without the hyphen. A new set replaces the old one.
- Turning MFA on or off keeps the user's sessions (API.md §8). Wrong codes on
  the account routes count as failed logins for the email and IP, like a
  wrong `current_password` (§4): a stolen session cannot guess its way to
  switching the factor off.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatehouse.audit.service import Actor, record
from gatehouse.auth import totp
from gatehouse.auth.keys import ServerKeys
from gatehouse.auth.rbac import ensure_may_act_on
from gatehouse.auth.throttle import LoginThrottle
from gatehouse.errors import Conflict, ValidationFailed
from gatehouse.notify.alerts import Alerts
from gatehouse.notify.dispatch.events import notify_after_commit
from gatehouse.store.db.models import MfaRecoveryCode, User, UserMfa
from gatehouse.users.cache import UserCache
from gatehouse.users.service import get_user, get_user_for_update

RECOVERY_CODES = 10
# Crockford's base32 alphabet: no i, l, o or u to misread.
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_RECOVERY = re.compile(f"^[{_ALPHABET}]{{10}}$")

WRONG_CODE = "The code is wrong or was already used."
log = structlog.get_logger("gatehouse.mfa")


def _wrong_code() -> ValidationFailed:
    return ValidationFailed(WRONG_CODE, [{"loc": ["body", "code"], "msg": WRONG_CODE}])


def new_recovery_code() -> str:
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


def normalize_recovery_code(code: str) -> str:
    return re.sub(r"[\s-]", "", code).lower()


class MfaService:
    def __init__(
        self, *, db: async_sessionmaker[AsyncSession], keys: ServerKeys, throttle: LoginThrottle,
        cache: UserCache, issuer: str, alerts: Alerts, clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.alerts = alerts
        self.keys = keys
        self.throttle = throttle
        self.cache = cache
        self.issuer = issuer
        self.clock = clock  # a seam: tests pin the time to compute codes deterministically

    # -- account routes -------------------------------------------------------------------

    async def setup(self, user_id: str) -> dict[str, str]:
        """A new pending secret (replacing any pending one) and its `otpauth://` URI."""
        secret = totp.new_secret()
        sealed = self.keys.encrypt(secret)
        now = datetime.now(UTC)
        try:
            async with self.db.begin() as db:
                user = await get_user_for_update(db, user_id)
                if user.mfa_enabled:
                    raise Conflict("Two-step verification is already on; turn it off first.")
                changed = await db.execute(update(UserMfa).where(UserMfa.user_id == user_id)
                                           .values(pending_secret_encrypted=sealed))
                if not changed.rowcount:  # type: ignore[attr-defined]
                    await db.execute(insert(UserMfa).values(
                        user_id=user_id, pending_secret_encrypted=sealed, last_used_step=0,
                        created_at=now))
        except IntegrityError:  # a racing setup inserted the row first
            raise Conflict("Another setup of two-step verification is in progress.") from None
        uri = totp.otpauth_uri(secret, issuer=self.issuer, account=user.email)
        return {"secret": secret, "otpauth_uri": uri}

    async def confirm(self, user_id: str, code: str, actor: Actor) -> list[str]:
        """Turn MFA on with the pending secret's first code; the recovery codes, shown once."""
        now = datetime.now(UTC)
        async with self.db.begin() as db:
            user = await get_user_for_update(db, user_id)
            if user.mfa_enabled:
                raise Conflict("Two-step verification is already on.")
            sealed = await db.scalar(
                select(UserMfa.pending_secret_encrypted).where(UserMfa.user_id == user_id))
            if sealed is None:
                detail = "No setup is pending; start with POST /auth/mfa/totp/setup."
                raise ValidationFailed(detail, [{"loc": ["body", "code"], "msg": detail}])
            secret = self._unseal(sealed, user_id)
            step = totp.matching_step(secret, code, self.clock()) if secret else None
            if step is None:
                raise _wrong_code()
            # Conditional on the secret just checked: a setup that replaced it meanwhile wins.
            done = await db.execute(
                update(UserMfa).where(UserMfa.user_id == user_id,
                                      UserMfa.pending_secret_encrypted == sealed)
                .values(totp_secret_encrypted=sealed, pending_secret_encrypted=None,
                        last_used_step=step, enabled_at=now))
            if not done.rowcount:  # type: ignore[attr-defined]
                raise Conflict("The setup changed meanwhile; scan the new code and confirm again.")
            await db.execute(update(User).where(User.id == user_id)
                             .values(mfa_enabled=True, updated_at=now))
            codes = await self._replace_recovery_codes(db, user_id, now)
            await record(db, "mfa.enabled", actor)
        self.cache.evict(user_id)
        return codes

    async def disable(self, user_id: str, code: str, actor: Actor) -> None:
        """Turn MFA off, proven by a TOTP or recovery code; sessions stay."""
        await self._require_code(user_id, code, actor, purpose="disable")
        async with self.db.begin() as db:
            await self._turn_off(db, user_id)
            await record(db, "mfa.disabled", actor)
            notify_after_commit(db, user_id, "mfa.disabled")
        self.cache.evict(user_id)

    async def regenerate(self, user_id: str, code: str, actor: Actor) -> list[str]:
        """A new set of recovery codes, proven by a TOTP or recovery code; the old set dies."""
        await self._require_code(user_id, code, actor, purpose="recovery_codes")
        async with self.db.begin() as db:
            return await self._replace_recovery_codes(db, user_id, datetime.now(UTC))

    async def reset(self, user_id: str, actor: Actor, holder: frozenset[str] | None) -> None:
        """An admin (or the CLI, `holder` None) turns off a user's MFA: the lost-phone case."""
        async with self.db.begin() as db:
            user = await get_user_for_update(db, user_id)
            ensure_may_act_on(holder, user.roles)  # before anything changes
            await self._turn_off(db, user_id)
            await record(db, "mfa.reset", actor, target_user_id=user_id)
            notify_after_commit(db, user_id, "mfa.reset")
        self.cache.evict(user_id)
        self.alerts.emit("mfa_reset", user_id=user_id, email=user.email,
                         actor=actor.user_id or "cli", ip=actor.ip)

    # -- checking codes -------------------------------------------------------------------

    async def accept(self, user_id: str, code: str) -> str | None:
        """Spend `code` if it is good: "totp" or "recovery_code", else None."""
        digits = code.strip().replace(" ", "")
        if len(digits) == totp.DIGITS and digits.isascii() and digits.isdigit():
            return "totp" if await self._accept_totp(user_id, digits) else None
        return "recovery_code" if await self._accept_recovery_code(user_id, code) else None

    async def _accept_totp(self, user_id: str, code: str) -> bool:
        async with self.db() as db:
            row = (await db.execute(
                select(UserMfa.totp_secret_encrypted, UserMfa.last_used_step)
                .where(UserMfa.user_id == user_id))).one_or_none()
        secret = self._unseal(row[0], user_id) if row is not None and row[0] else None
        if row is None or secret is None:
            return False
        step = totp.matching_step(secret, code, self.clock())
        if step is None or step <= row[1]:
            return False
        async with self.db.begin() as db:
            # Atomic replay guard: of racing requests with one code, one UPDATE matches.
            won = await db.execute(
                update(UserMfa).where(UserMfa.user_id == user_id, UserMfa.last_used_step < step,
                                      UserMfa.totp_secret_encrypted.is_not(None))
                .values(last_used_step=step))
        return bool(won.rowcount)  # type: ignore[attr-defined]

    async def _accept_recovery_code(self, user_id: str, code: str) -> bool:
        normalized = normalize_recovery_code(code)
        if not _RECOVERY.match(normalized):
            return False
        async with self.db.begin() as db:
            spent = await db.execute(
                update(MfaRecoveryCode)
                .where(MfaRecoveryCode.user_id == user_id,
                       MfaRecoveryCode.code_hash == self._hash_code(user_id, normalized),
                       MfaRecoveryCode.used_at.is_(None))
                .values(used_at=datetime.now(UTC)))
        return bool(spent.rowcount)  # type: ignore[attr-defined]

    async def _require_code(self, user_id: str, code: str, actor: Actor, *, purpose: str) -> None:
        """Throttle, then spend the code; a wrong one counts as a failed login and is 422."""
        async with self.db() as db:
            user = await get_user(db, user_id)
        if not user.mfa_enabled:
            raise Conflict("Two-step verification is not on.")
        ip = actor.rate_key or actor.ip or "unknown"
        await self.throttle.check(user.email, ip, known_device=True)
        method = await self.accept(user_id, code)
        if method is None:
            async with self.db.begin() as db:
                await record(db, "mfa.failure", actor, purpose=purpose)
            await self.throttle.failed(user.email, ip, known_device=True)
            raise _wrong_code()
        if method == "recovery_code":
            async with self.db.begin() as db:
                await record(db, "mfa.recovery_code_used", actor, purpose=purpose)

    # -- storage --------------------------------------------------------------------------

    def _unseal(self, sealed: str, user_id: str) -> str | None:
        """The secret, or None when it cannot be decrypted (ENCRYPTION_KEY changed since)."""
        from cryptography.exceptions import InvalidTag  # loaded by decrypt anyway

        try:
            return self.keys.decrypt(sealed)
        except (InvalidTag, ValueError):
            # No code can match (recovery codes neither: their key is derived from it too):
            # an operator resets the user's second factor (docs/accounts.md).
            log.warning("mfa_secret_undecryptable", user_id=user_id)
            return None

    def _hash_code(self, user_id: str, normalized: str) -> str:
        return ServerKeys.mac(self.keys.mfa_recovery, f"{user_id}:{normalized}")

    async def _replace_recovery_codes(
        self, db: AsyncSession, user_id: str, now: datetime
    ) -> list[str]:
        codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
        await db.execute(delete(MfaRecoveryCode).where(MfaRecoveryCode.user_id == user_id))
        rows: list[dict[str, Any]] = [
            {"id": str(uuid.uuid4()), "user_id": user_id, "created_at": now,
             "code_hash": self._hash_code(user_id, normalize_recovery_code(c))} for c in codes]
        await db.execute(insert(MfaRecoveryCode), rows)
        return codes

    async def _turn_off(self, db: AsyncSession, user_id: str) -> None:
        await db.execute(update(User).where(User.id == user_id)
                         .values(mfa_enabled=False, updated_at=datetime.now(UTC)))
        await db.execute(delete(UserMfa).where(UserMfa.user_id == user_id))
        await db.execute(delete(MfaRecoveryCode).where(MfaRecoveryCode.user_id == user_id))
