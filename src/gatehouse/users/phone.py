"""Proving a phone number (API.md §10): a 6-digit code texted to it, typed back.

The code is stored only as HMAC(phone-code key, user, phone, code), valid CODE_TTL
seconds, for the phone it was sent to (changing `phone` voids it). Every try first spends
one of MAX_TRIES in a single conditional UPDATE, so parallel guesses cannot share a try:
after five wrong ones even the right code is refused. At most MAX_TEXTS codes per user per hour (a
counter in the key-value store), then 429 `rate_limited`. A new code replaces the old.
Wrong, spent and expired codes all answer the same 422 `validation_failed`, like the
second factor's codes (API.md §8).
"""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatehouse.audit.service import Actor, record
from gatehouse.auth.keys import ServerKeys
from gatehouse.errors import RateLimited, ValidationFailed
from gatehouse.notify.sms import SmsSender
from gatehouse.ops.metrics import Metrics
from gatehouse.store.db.models import PhoneCode, User
from gatehouse.store.kv import KeyValueStore
from gatehouse.users import service as users
from gatehouse.users.cache import UserCache

CODE_TTL = 600
MAX_TRIES = 5
MAX_TEXTS = 3
TEXT_WINDOW = 3600.0
WRONG_CODE = "The code is wrong or expired; ask for a new one if it keeps failing."
NO_PHONE = "Set a phone number on the profile first."
NO_SMS = "This server cannot send text messages (OPENPHONE_API_KEY is not set)."


def _wrong_code() -> ValidationFailed:
    return ValidationFailed(WRONG_CODE, [{"loc": ["body", "code"], "msg": WRONG_CODE}])


class PhoneVerification:
    def __init__(self, *, db: async_sessionmaker[AsyncSession], kv: KeyValueStore,
                 keys: ServerKeys, sms: SmsSender, cache: UserCache, metrics: Metrics) -> None:
        self.db = db
        self.kv = kv
        self.key = keys.phone_code
        self.sms = sms
        self.cache = cache
        self.metrics = metrics

    def _hash(self, user_id: str, phone: str, code: str) -> str:
        return ServerKeys.mac(self.key, f"{user_id}\n{phone}\n{code}")

    async def request(self, user_id: str) -> None:
        """Text a new code to the profile's phone (off the request path); a verified phone
        gets nothing, as a verified address gets no verification email."""
        async with self.db() as db:
            user = await users.get_user(db, user_id)
        if not user.phone:
            raise ValidationFailed(NO_PHONE, [{"loc": ["body", "phone"], "msg": NO_PHONE}])
        if user.phone_verified:
            return
        if not self.sms.configured:
            raise ValidationFailed(NO_SMS, [{"loc": ["body"], "msg": NO_SMS}])
        key = f"phone_code:{user_id}"
        if await self.kv.incr(key, TEXT_WINDOW) > MAX_TEXTS:
            self.metrics.rate_limited.labels("phone_code").inc()
            raise RateLimited(int(await self.kv.ttl(key) or TEXT_WINDOW),
                              "At most 3 codes an hour; wait before asking again.")
        code = f"{secrets.randbelow(10**6):06d}"
        now = datetime.now(UTC)
        async with self.db.begin() as db:
            await db.execute(delete(PhoneCode).where(PhoneCode.user_id == user_id))
            await db.execute(insert(PhoneCode).values(
                user_id=user_id, phone=user.phone, code_hash=self._hash(user_id, user.phone, code),
                attempts=0, created_at=now, expires_at=now + timedelta(seconds=CODE_TTL)))
        self.sms.submit(user.phone, f"Your Gatehouse verification code is {code}. "
                                    f"It expires in {CODE_TTL // 60} minutes.")

    async def verify(self, user_id: str, code: str, actor: Actor) -> None:
        """Mark the phone verified if `code` is its live code; 422 otherwise."""
        code = code.strip()
        now = datetime.now(UTC)
        async with self.db.begin() as db:
            spent = await db.execute(
                update(PhoneCode)
                .where(PhoneCode.user_id == user_id, PhoneCode.attempts < MAX_TRIES,
                       PhoneCode.expires_at > now)
                .values(attempts=PhoneCode.attempts + 1))
            row = await db.scalar(select(PhoneCode).where(PhoneCode.user_id == user_id))
            user = await db.get(User, user_id)
            if not spent.rowcount or row is None or user is None:  # type: ignore[attr-defined]
                raise _wrong_code()
            right = hmac.compare_digest(row.code_hash, self._hash(user_id, row.phone, code))
            right = right and user.phone == row.phone
            if right:
                await db.execute(delete(PhoneCode).where(PhoneCode.user_id == user_id))
                user.phone_verified = True
                user.updated_at = now
                await record(db, "phone.verified", actor, target_user_id=user_id)
        if not right:
            raise _wrong_code()  # after the commit: the spent try stays spent
        self.cache.evict(user_id)
