"""Domain errors: one root, one class per failure, each with a stable `code`.

These know nothing of HTTP. `gatehouse.api.problem` is the one module that
maps them to a status and an RFC 9457 body; the CLI prints `detail`.

    GatehouseError
    ├── AuthenticationError              (the caller is not who they claim)
    │   ├── TokenMissing                 token_missing
    │   ├── TokenExpired                 token_expired
    │   ├── TokenInvalid                 token_invalid
    │   ├── SessionRevoked               session_revoked
    │   ├── InvalidCredentials           invalid_credentials
    │   ├── RefreshInvalid               refresh_invalid
    │   ├── RefreshExpired               refresh_expired
    │   ├── RefreshReused                refresh_reused
    │   ├── ApiKeyInvalid                api_key_invalid
    │   ├── SignatureInvalid             signature_invalid
    │   ├── MfaRequired                  mfa_required  (carries `mfa_token`, `methods`)
    │   ├── MfaInvalid                   mfa_invalid
    │   └── MfaExpired                   mfa_expired
    ├── PermissionDenied                 forbidden
    │   ├── CsrfFailed                   csrf_failed
    │   ├── AccountDisabled              account_disabled
    │   └── EmailUnverified              email_unverified
    ├── LinkInvalid                      link_invalid
    ├── NotFound                         not_found
    ├── MethodNotAllowed                 method_not_allowed
    ├── Conflict                         conflict
    ├── PayloadTooLarge                  payload_too_large
    ├── HeadersTooLarge                  headers_too_large
    ├── BadRequest                       bad_request (not HTTP the server can parse)
    ├── UnsupportedMediaType             unsupported_media_type
    ├── ValidationFailed                 validation_failed  (carries `errors`)
    │   └── WeakPassword                 validation_failed
    ├── TooManyRequests                  (carries `retry_after`)
    │   ├── RateLimited                  rate_limited
    │   └── LoginThrottled               login_throttled
    ├── ServiceUnavailable               service_unavailable (carries `retry_after`)
    └── InternalError                    internal_error

`detail` must be safe to show to anyone: never a secret, token, password,
SQL statement or submitted value.
"""

from __future__ import annotations

from typing import Any, ClassVar


class GatehouseError(Exception):
    """Root of every failure a caller may see."""

    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal error"
    default_detail: ClassVar[str] = "Something went wrong on our side."

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.default_detail
        super().__init__(self.detail)


class AuthenticationError(GatehouseError):
    code = "token_invalid"
    title = "Not authenticated"


class TokenMissing(AuthenticationError):
    code = "token_missing"
    title = "Authentication required"
    default_detail = "No credentials were sent."


class TokenExpired(AuthenticationError):
    code = "token_expired"
    title = "Access token expired"
    default_detail = "The access token has expired; refresh it and retry."


class TokenInvalid(AuthenticationError):
    code = "token_invalid"
    title = "Invalid access token"
    default_detail = "The access token is malformed or its signature or claims are invalid."


class SessionRevoked(AuthenticationError):
    code = "session_revoked"
    title = "Session revoked"
    default_detail = "This session was logged out or revoked; log in again."


class InvalidCredentials(AuthenticationError):
    code = "invalid_credentials"
    title = "Invalid credentials"
    default_detail = "The email or password is incorrect."


class RefreshInvalid(AuthenticationError):
    code = "refresh_invalid"
    title = "Invalid refresh token"
    default_detail = "The refresh token is unknown or malformed; log in again."


class RefreshExpired(AuthenticationError):
    code = "refresh_expired"
    title = "Session expired"
    default_detail = "The session has reached its lifetime; log in again."


class RefreshReused(AuthenticationError):
    code = "refresh_reused"
    title = "Refresh token reused"
    default_detail = (
        "A refresh token was replayed after it had been rotated; the session has been revoked."
    )


class ApiKeyInvalid(AuthenticationError):
    code = "api_key_invalid"
    title = "Invalid API key"
    default_detail = "The API key is unknown, revoked or expired."


class SignatureInvalid(AuthenticationError):
    code = "signature_invalid"
    title = "Invalid request signature"
    default_detail = "The request signature is missing, wrong, stale or replayed."


class MfaRequired(AuthenticationError):
    """The password was right; the second factor is next (`POST /auth/login/mfa`)."""

    code = "mfa_required"
    title = "Second factor required"
    default_detail = (
        "Enter a code from your authenticator app or a recovery code to finish signing in."
    )
    METHODS: ClassVar[tuple[str, ...]] = ("totp", "recovery_code")

    def __init__(self, mfa_token: str) -> None:
        super().__init__()
        # Shown to the caller who just proved the password (single use, 5 minutes); never logged.
        self.mfa_token = mfa_token
        self.methods = list(self.METHODS)

    def __str__(self) -> str:
        return self.detail  # the token stays out of tracebacks and log lines


class MfaInvalid(AuthenticationError):
    code = "mfa_invalid"
    title = "Invalid code"
    default_detail = "The code is wrong or was already used; enter another code."


class MfaExpired(AuthenticationError):
    code = "mfa_expired"
    title = "Sign-in step expired"
    default_detail = (
        "This sign-in step is unknown, used, older than 5 minutes or blocked after too many "
        "wrong codes; sign in again."
    )


class PermissionDenied(GatehouseError):
    code = "forbidden"
    title = "Forbidden"
    default_detail = "You do not have permission to do this."


class CsrfFailed(PermissionDenied):
    code = "csrf_failed"
    title = "CSRF check failed"
    default_detail = "A cookie-authenticated request needs a valid X-CSRF-Token from this site."


class AccountDisabled(PermissionDenied):
    code = "account_disabled"
    title = "Account disabled"
    default_detail = "This account has been disabled by an administrator."


class EmailUnverified(PermissionDenied):
    code = "email_unverified"
    title = "Email address not verified"
    default_detail = (
        "Verify your email address first; POST /auth/email/verify-request sends a new link."
    )


class LinkInvalid(GatehouseError):
    code = "link_invalid"
    title = "Link invalid"
    default_detail = (
        "This link is unknown, already used, superseded by a newer one, or expired; "
        "ask for a new email."
    )


class NotFound(GatehouseError):
    code = "not_found"
    title = "Not found"
    default_detail = "The requested resource does not exist."


class MethodNotAllowed(GatehouseError):
    code = "method_not_allowed"
    title = "Method not allowed"
    default_detail = "This method is not allowed on this resource."


class Conflict(GatehouseError):
    code = "conflict"
    title = "Conflict"
    default_detail = "The resource already exists."


class PayloadTooLarge(GatehouseError):
    code = "payload_too_large"
    title = "Payload too large"
    default_detail = "The request body exceeds the size limit."


class HeadersTooLarge(GatehouseError):
    code = "headers_too_large"
    title = "Request header fields too large"
    default_detail = "The request headers exceed the size limit."


class BadRequest(GatehouseError):
    code = "bad_request"
    title = "Bad request"
    default_detail = "The request is not valid HTTP."


class UnsupportedMediaType(GatehouseError):
    code = "unsupported_media_type"
    title = "Unsupported media type"
    default_detail = "Send the request body as application/json."


class ValidationFailed(GatehouseError):
    code = "validation_failed"
    title = "Validation failed"
    default_detail = "The request is not valid."

    def __init__(self, detail: str | None = None, errors: list[dict[str, Any]] | None = None):
        super().__init__(detail)
        self.errors = errors or [{"loc": ["body"], "msg": self.detail}]


class WeakPassword(ValidationFailed):
    """A password refused by the policy; `detail` says why."""

    def __init__(self, detail: str, field: str = "password") -> None:
        super().__init__(detail, [{"loc": ["body", field], "msg": detail}])


class TooManyRequests(GatehouseError):
    code = "rate_limited"
    title = "Too many requests"
    default_detail = "Too many requests; retry later."

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail)
        self.retry_after = max(1, int(retry_after))


class RateLimited(TooManyRequests):
    code = "rate_limited"


class LoginThrottled(TooManyRequests):
    code = "login_throttled"
    title = "Login throttled"
    default_detail = "Too many failed logins; wait before trying again."


class ServiceUnavailable(GatehouseError):
    code = "service_unavailable"
    title = "Service unavailable"
    default_detail = "A dependency is unavailable; retry shortly."

    def __init__(self, retry_after: int = 5, detail: str | None = None) -> None:
        super().__init__(detail)
        self.retry_after = max(1, int(retry_after))


class InternalError(GatehouseError):
    code = "internal_error"
    title = "Internal error"
