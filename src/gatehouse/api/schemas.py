"""Request and response bodies. Requests refuse unknown fields (API.md §1).

Booleans in requests are JSON `true`/`false` only (`StrictBool`): pydantic's lax
mode would read `0`, `"false"` or `"off"` as false, so a typo could silently
re-enable an account.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    field_validator,
)

Timestamp = Annotated[
    datetime,
    PlainSerializer(lambda v: v.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), return_type=str),
]


T = TypeVar("T")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold U+0000: refuse it here (422), never as a database error.
        items = value if isinstance(value, list | tuple) else (value,)
        if any(isinstance(item, str) and "\x00" in item for item in items):
            raise ValueError("must not contain NUL (U+0000) characters")
        return value


Email = Annotated[str, Field(min_length=3, max_length=320)]
Password = Annotated[str, Field(min_length=1, max_length=4096)]
Name = Annotated[str, Field(max_length=200)]


class LoginIn(Strict):
    email: Email
    password: Password


class RefreshIn(Strict):
    refresh_token: Annotated[str, Field(max_length=512)] | None = None


class RegisterIn(Strict):
    email: Email
    password: Password
    name: Name = ""


class NotifyPrefs(Strict):
    """Channel switches (API.md §10); a channel left out keeps its setting."""

    push: bool | None = None
    sms: bool | None = None
    email: bool | None = None


class ProfilePatch(Strict):
    """Only the fields sent change; `phone: null` removes the phone."""

    name: Name | None = None
    notify: NotifyPrefs | None = None
    phone: Annotated[str, Field(min_length=1, max_length=32)] | None = None


class PhoneCodeIn(Strict):
    code: Annotated[str, Field(min_length=1, max_length=16)]


class PasswordChangeIn(Strict):
    current_password: Password
    new_password: Password


class AdminUserCreate(Strict):
    email: Email
    password: Password
    name: Name = ""
    roles: Annotated[list[Annotated[str, Field(max_length=32)]], Field(max_length=16)] = ["user"]
    email_verified: StrictBool = False


LinkToken = Annotated[str, Field(min_length=1, max_length=256)]


class EmailIn(Strict):
    """`/auth/password/forgot` and `/auth/email/verify-request` without a session (API.md §8)."""

    email: Email


class PasswordResetIn(Strict):
    token: LinkToken
    new_password: Password


class EmailVerifyIn(Strict):
    token: LinkToken


MfaCode = Annotated[str, Field(min_length=1, max_length=64)]


class MfaCodeIn(Strict):
    """A TOTP code (6 digits) or a recovery code (`xxxxx-xxxxx`, any case, hyphen optional)."""

    code: MfaCode


class MfaLoginIn(Strict):
    mfa_token: Annotated[str, Field(min_length=1, max_length=128)]
    code: MfaCode


class TotpSetupOut(BaseModel):
    secret: str
    otpauth_uri: str


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str]


class AdminUserPatch(Strict):
    name: Name | None = None
    roles: Annotated[list[Annotated[str, Field(max_length=32)]], Field(max_length=16)] | None = None
    disabled: StrictBool | None = None


class ApiKeyCreate(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    scopes: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=32)]
    expires_at: AwareDatetime | None = None
    require_signature: StrictBool = False


class ClientErrorIn(Strict):
    message: Annotated[str, Field(min_length=1, max_length=2000)]
    stack: Annotated[str, Field(max_length=16000)] | None = None
    url: Annotated[str, Field(max_length=2000)] | None = None
    request_id: Annotated[str, Field(max_length=64)] | None = None


class ClientErrorOut(BaseModel):
    """A recent browser error report (GET /ops/client-errors); `url` has no query or fragment."""

    at: str
    message: str
    url: str | None
    request_id: str | None


class UserOut(BaseModel):
    id: str
    email: str
    name: str
    roles: list[str]
    disabled: bool
    created_at: str
    email_verified: bool
    mfa_enabled: bool


class NotifyOut(BaseModel):
    push: bool
    sms: bool
    email: bool


class ProfileOut(UserOut):
    notify: NotifyOut
    phone: str | None
    phone_verified: bool


class TokenPairOut(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    session_id: str
    user: UserOut


class CookieLoginOut(BaseModel):
    user: UserOut
    session_id: str
    expires_in: int
    refresh_expires_in: int


class ValidateOut(BaseModel):
    active: bool
    user_id: str
    session_id: str
    roles: list[str]
    permissions: list[str]
    expires_at: str


class SessionOut(BaseModel):
    id: str
    created_at: Timestamp
    last_used_at: Timestamp
    ip: str | None
    user_agent: str | None
    current: bool


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


class AuditEventOut(BaseModel):
    id: str
    at: Timestamp
    type: str
    user_id: str | None
    ip: str | None
    request_id: str | None
    data: dict[str, Any]


class ApiKeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: Timestamp
    expires_at: Timestamp | None
    last_used_at: Timestamp | None = None
    require_signature: bool


class ApiKeyCreated(ApiKeyOut):
    key: str
    signing_secret: str | None
