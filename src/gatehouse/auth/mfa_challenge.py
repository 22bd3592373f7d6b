"""The `mfa_token` a correct password earns when the second factor is on (API.md §2, §8).

A token is 256 random bits, shown once in the `mfa_required` answer; the
key-value store (Redis when configured, so every instance sees it) keeps only
its SHA-256, bound to the user, for `ttl` seconds (5 minutes). It is single
use: the first right code claims it with an atomic set-if-absent, so two
racing right codes cannot open two sessions. Wrong codes are counted on it
(an atomic increment) and the fifth one deletes it: afterwards, even a right
code answers `mfa_expired`.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass

from gatehouse.errors import MfaExpired
from gatehouse.store.kv import KeyValueStore

MAX_WRONG_CODES = 5


@dataclass(frozen=True)
class Challenge:
    key: str  # hash of the token, never the token
    user_id: str
    email: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class MfaChallenges:
    def __init__(self, kv: KeyValueStore, ttl: int) -> None:
        self.kv = kv
        self.ttl = ttl

    async def issue(self, user_id: str, email: str) -> str:
        token = secrets.token_urlsafe(32)
        await self.kv.set(f"mfa:{_hash(token)}", json.dumps({"u": user_id, "e": email}), self.ttl)
        return token

    async def open(self, token: str) -> Challenge:
        """The challenge behind `token`; MfaExpired when unknown, used, expired or burned."""
        if not token or len(token) > 128:
            raise MfaExpired()
        key = _hash(token)
        raw, used, wrong = await self.kv.get_many([f"mfa:{key}", f"mfau:{key}", f"mfaf:{key}"])
        if raw is None or used is not None or int(wrong or 0) >= MAX_WRONG_CODES:
            raise MfaExpired()
        data = json.loads(raw)
        return Challenge(key, str(data["u"]), str(data["e"]))

    async def wrong_code(self, challenge: Challenge) -> None:
        """Count a wrong code; the fifth burns the token."""
        wrong = await self.kv.incr(f"mfaf:{challenge.key}", self.ttl)
        if wrong >= MAX_WRONG_CODES:
            await self.kv.delete(f"mfa:{challenge.key}")

    async def claim(self, challenge: Challenge) -> None:
        """Spend the token for good; MfaExpired if another request spent it first."""
        if not await self.kv.set_if_absent(f"mfau:{challenge.key}", "1", self.ttl):
            raise MfaExpired()
        await self.kv.delete(f"mfa:{challenge.key}", f"mfaf:{challenge.key}")
