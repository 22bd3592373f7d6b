"""Tables. Migrations in `migrations/versions` create them; never edit an old migration.

Secrets are never stored in the clear: refresh tokens and API keys as keyed
hashes, API-key signing secrets encrypted with ENCRYPTION_KEY.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both SQLite (which drops the zone) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NOTIFY_DEFAULT = {"push": True, "sms": True, "email": True}
NOTIFY_DEFAULT_JSON = '{"push": true, "sms": true, "email": true}'


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime, dict[str, Any]: JSON}


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(index=True)
    # When roles last changed: access tokens issued before it answer token_expired.
    roles_changed_at: Mapped[datetime | None] = mapped_column(index=True)
    email_verified: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # The TOTP second factor is on (migration 0006); its secret is in `user_mfa`.
    mfa_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Notification channels the user wants (API.md §10), an E.164 phone and whether a texted
    # code proved it (migration 0007).
    notify: Mapped[dict[str, Any]] = mapped_column(
        JSON, default=lambda: dict(NOTIFY_DEFAULT), server_default=NOTIFY_DEFAULT_JSON
    )
    phone: Mapped[str | None] = mapped_column(String(16))
    phone_verified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Session(Base):
    """One login on one device."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # NULL once the user is deleted: the revoked session stays until the janitor prunes it,
    # so its tokens keep answering session_revoked (migration 0002).
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    last_used_at: Mapped[datetime]
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    auth_mode: Mapped[str] = mapped_column(String(16), default="token")
    revoked_at: Mapped[datetime | None] = mapped_column(index=True)
    revoke_reason: Mapped[str | None] = mapped_column(String(32))
    # Hash of the replayed refresh token that triggered reuse detection.
    reuse_token_hash: Mapped[str | None] = mapped_column(String(64))


class KnownDevice(Base):
    """A (user agent, IP) pair a user signed in from, by SHA-256, and when it last did:
    `login.new_device` is one primary-key lookup however many sessions there are
    (migration 0007)."""

    __tablename__ = "known_devices"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    device_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_seen: Mapped[datetime]


class PhoneCode(Base):
    """The pending verification code of a user's phone, by keyed hash: valid for `phone`
    only, until `expires_at`, and spent by 5 wrong tries (migration 0007)."""

    __tablename__ = "phone_codes"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    phone: Mapped[str] = mapped_column(String(16))
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class TokenNotBefore(Base):
    """Keycloak-style not-before: access tokens of `subject` (a user id, or `*` for everyone)
    issued at or before `not_before` are refused, whether or not their session row still
    exists (a database restored from a backup). `keep_session` is spared (a password change
    keeps the caller's session). No foreign key: it outlives a deleted user (migration 0004).
    """

    __tablename__ = "token_not_before"

    subject: Mapped[str] = mapped_column(String(36), primary_key=True)
    not_before: Mapped[datetime] = mapped_column(index=True)
    keep_session: Mapped[str | None] = mapped_column(String(36))


class EmailLink(Base):
    """The single-use token of a password-reset (`reset`) or email-verification (`verify`)
    link, by SHA-256 hash. `password_fp` fingerprints the password hash a reset link was
    issued under: any later password change spends it (migration 0005).
    """

    __tablename__ = "email_links"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    password_fp: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]


class UserMfa(Base):
    """A user's TOTP secret and a pending one awaiting confirmation, both AES-GCM encrypted
    under a key derived from ENCRYPTION_KEY; `last_used_step` is the newest accepted 30 s
    step, so a code is accepted at most once (migration 0006)."""

    __tablename__ = "user_mfa"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    totp_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    pending_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    last_used_step: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime]
    enabled_at: Mapped[datetime | None]


class MfaRecoveryCode(Base):
    """A single-use recovery code, by keyed hash (HMAC-SHA256) of its normalised form."""

    __tablename__ = "mfa_recovery_codes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class RefreshToken(Base):
    """Every refresh token a session was given, by keyed hash; the newest has no superseded_at."""

    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    generation: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    superseded_at: Mapped[datetime | None]


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    require_signature: Mapped[bool] = mapped_column(Boolean, default=False)
    signing_secret_enc: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_type_id", "type", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    type: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(36), index=True)
    ip: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class PushSubscription(Base):
    __tablename__ = "push_subscriptions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    endpoint: Mapped[str] = mapped_column(String(2048), unique=True)
    p256dh: Mapped[str] = mapped_column(String(255))
    auth: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]
