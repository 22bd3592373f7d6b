"""API keys (`gh_<prefix>_<secret>`) and HMAC request signing (API.md §4).

The key is looked up by its non-secret prefix and checked with a keyed
SHA-256 (HMAC under a key derived from ENCRYPTION_KEY) and a constant-time
compare: 256-bit random secrets need no slow password hash, so API-key
traffic stays fast. Signing secrets must be recoverable to check HMACs, so
they are stored encrypted (AES-GCM), never in the clear.

A key acts with its scopes that its creator still holds (API.md §4): the
creator's roles and `disabled` flag come in the same query as the key (an
outer join, no extra round trip), so a demotion takes effect on the next
request, and a disabled or deleted creator's keys answer `api_key_invalid`.
Keys with no recorded creator (`created_by` NULL: made by the CLI, or by
another key before 2026-12-02, when keys did not record whom they act for)
act with their own scopes.

Signature: `X-Signature: t=<unix>,v1=<hex HMAC-SHA256(signing_secret,
"<t>.<METHOD>.<target>.<sha256hex(body)>")>`; more than `skew` seconds off,
or a v1 already accepted for this key within the window, is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatehouse.audit.service import Actor, record
from gatehouse.auth.keys import ServerKeys
from gatehouse.auth.rbac import ALL_PERMISSIONS, ensure_holds, permissions_for
from gatehouse.errors import (
    ApiKeyInvalid,
    NotFound,
    SignatureInvalid,
    ValidationFailed,
)
from gatehouse.store.db.models import ApiKey, User
from gatehouse.store.kv import KeyValueStore

_KEY = re.compile(r"^gh_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$")
_SIGNATURE = re.compile(r"^t=(\d{1,12}),v1=([0-9a-f]{64})$")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
LAST_USED_RESOLUTION = timedelta(seconds=60)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def sign(signing_secret: str, timestamp: int, method: str, target: str, body: bytes) -> str:
    """The `X-Signature` header value a client sends (also used by tests and the SDK docs)."""
    message = f"{timestamp}.{method.upper()}.{target}.{hashlib.sha256(body).hexdigest()}"
    mac = hmac.new(signing_secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


@dataclass(frozen=True)
class ApiKeyPrincipal:
    id: str
    name: str
    scopes: frozenset[str]  # effective: the key's scopes its creator still holds
    created_by: str | None = None


class ApiKeyService:
    def __init__(
        self, *, db: async_sessionmaker[AsyncSession], kv: KeyValueStore, keys: ServerKeys, skew: int
    ) -> None:
        self.db = db
        self.kv = kv
        self.keys = keys
        self.skew = skew

    def _hash(self, key: str) -> str:
        return ServerKeys.mac(self.keys.api_key_hash, key)

    async def create(
        self, *, name: str, scopes: list[str], expires_at: datetime | None,
        require_signature: bool, actor: Actor, grantable: frozenset[str] = ALL_PERMISSIONS,
    ) -> dict[str, Any]:
        """Create a key; `grantable` is what the creator holds now (no one mints a key stronger
        than themselves, and a key-made key acts for the same user: `actor.user_id`)."""
        unknown = sorted(set(scopes) - ALL_PERMISSIONS)
        if unknown:
            raise ValidationFailed(
                f"Unknown scope(s); scopes are permissions: {', '.join(sorted(ALL_PERMISSIONS))}.",
                [{"loc": ["body", "scopes"], "msg": "Unknown scope."}],
            )
        ensure_holds(grantable, scopes, "Creating a key with these scopes")
        now = datetime.now(UTC)
        if expires_at is not None and expires_at <= now:
            raise ValidationFailed(
                "expires_at must be in the future.",
                [{"loc": ["body", "expires_at"], "msg": "Must be in the future."}],
            )
        prefix_id = "".join(secrets.choice(_ALPHABET) for _ in range(12))
        key = f"gh_{prefix_id}_{_b64(secrets.token_bytes(32))}"
        signing_secret = f"ghs_{_b64(secrets.token_bytes(32))}" if require_signature else None
        row = ApiKey(
            id=str(uuid.uuid4()), name=name, prefix=f"gh_{prefix_id}", key_hash=self._hash(key),
            scopes=sorted(set(scopes)), require_signature=require_signature,
            signing_secret_enc=self.keys.encrypt(signing_secret) if signing_secret else None,
            created_by=actor.user_id, created_at=now, expires_at=expires_at,
        )
        async with self.db.begin() as db:
            db.add(row)
            await record(db, "api_key.created", actor, target_api_key_id=row.id, name=name,
                         scopes=row.scopes, require_signature=require_signature)
        return {**self.public(row), "key": key, "signing_secret": signing_secret}

    @staticmethod
    def public(row: ApiKey) -> dict[str, Any]:
        return {
            "id": row.id, "name": row.name, "prefix": row.prefix, "scopes": list(row.scopes),
            "created_at": row.created_at, "expires_at": row.expires_at,
            "last_used_at": row.last_used_at, "require_signature": row.require_signature,
        }

    async def list(self, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        stmt = select(ApiKey).where(ApiKey.revoked_at.is_(None)).order_by(ApiKey.id).limit(limit + 1)
        if cursor:
            stmt = stmt.where(ApiKey.id > cursor)
        async with self.db() as db:
            rows = list((await db.scalars(stmt)).all())
        more = len(rows) > limit
        rows = rows[:limit]
        return [self.public(r) for r in rows], (rows[-1].id if more and rows else None)

    async def revoke(self, key_id: str, actor: Actor) -> None:
        async with self.db.begin() as db:
            result = await db.execute(
                update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                raise NotFound("No such API key.")
            await record(db, "api_key.revoked", actor, target_api_key_id=key_id)

    async def authenticate(
        self, key: str, *, method: str, target: str, body: bytes, signature: str | None
    ) -> ApiKeyPrincipal:
        match = _KEY.match(key)
        if match is None:
            raise ApiKeyInvalid()
        async with self.db() as db:
            found = (await db.execute(
                select(ApiKey, User.roles, User.disabled)
                .outerjoin(User, User.id == ApiKey.created_by)
                .where(ApiKey.prefix == f"gh_{match.group(1)}")
            )).one_or_none()
        now = datetime.now(UTC)
        row, creator_roles, creator_disabled = found if found is not None else (None, None, None)
        if (
            row is None
            or not hmac.compare_digest(row.key_hash, self._hash(key))
            or row.revoked_at is not None
            or (row.expires_at is not None and row.expires_at <= now)
            # The creator was deleted (no row) or disabled: the key acts for no one.
            or (row.created_by is not None and (creator_roles is None or creator_disabled))
        ):
            raise ApiKeyInvalid()
        if row.require_signature:
            assert row.signing_secret_enc is not None
            await self._check_signature(
                row.id, self.keys.decrypt(row.signing_secret_enc), method, target, body, signature
            )
        if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
            # At most one write a minute per key keeps API-key traffic read-only.
            async with self.db.begin() as db:
                await db.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
        scopes = frozenset(row.scopes)
        if row.created_by is not None:
            scopes &= permissions_for(creator_roles or ())
        return ApiKeyPrincipal(row.id, row.name, scopes, row.created_by)

    async def _check_signature(
        self, key_id: str, secret: str, method: str, target: str, body: bytes, header: str | None
    ) -> None:
        match = _SIGNATURE.match((header or "").strip())
        if match is None:
            raise SignatureInvalid()
        timestamp, presented = int(match.group(1)), match.group(2)
        if abs(time.time() - timestamp) > self.skew:
            raise SignatureInvalid("The request signature is too old or from the future.")
        expected = sign(secret, timestamp, method, target, body).split("v1=", 1)[1]
        if not hmac.compare_digest(expected, presented):
            raise SignatureInvalid()
        # Remember accepted signatures for the whole window in which they could be replayed.
        if not await self.kv.set_if_absent(f"sig:{key_id}:{presented}", "1", 2 * self.skew + 1):
            raise SignatureInvalid("This request signature was already used.")
