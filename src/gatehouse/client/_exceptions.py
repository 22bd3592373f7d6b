"""Exceptions raised by the Gatehouse SDK; their tree is drawn in ``gatehouse.client``'s docstring.

Which class a response becomes is decided in ``_problem.py``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ApiError",
    "EmailUnverified",
    "Forbidden",
    "InvalidCredentials",
    "LinkInvalid",
    "MfaExpired",
    "MfaInvalid",
    "MfaRequired",
    "NotAuthenticated",
    "RateLimited",
    "ServiceUnavailable",
    "SessionExpired",
    "TransportError",
]


class ApiError(Exception):
    """A Gatehouse call failed; ``code`` is the stable machine-readable reason.

    ``status`` is the HTTP status (``None`` when no answer arrived), ``code``
    the problem ``code`` from the server (or a client-side code such as
    ``transport_error``), ``detail`` a human-readable text that is safe to
    show, ``request_id`` the server's ``X-Request-ID`` for support, and
    ``retry_after`` the seconds the server asked us to wait (429/503 only).
    """

    def __init__(
        self,
        detail: str,
        *,
        status: int | None,
        code: str,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.request_id = request_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        status = "no response" if self.status is None else str(self.status)
        text = f"{status} {self.code}: {self.detail}"
        if self.request_id:
            text += f" (request_id={self.request_id})"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"detail={self.detail!r}, request_id={self.request_id!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments do not survive the default Exception pickling,
        # and errors do cross process boundaries (multiprocessing, task queues).
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[ApiError], state: dict[str, Any]) -> ApiError:
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("detail", ""))
    error.__dict__.update(state)
    return error


class TransportError(ApiError):
    """No HTTP answer arrived (connection refused, DNS failure, timeout) after retries."""


class InvalidCredentials(ApiError):
    """Login failed: wrong email or password (the server does not say which)."""


class NotAuthenticated(ApiError):
    """The server answered 401 for a reason that does not end the session.

    Raised for ``token_missing`` (no login yet), ``api_key_invalid``,
    ``signature_invalid``, or an access token still refused after one refresh
    and one retry. The token store is left as it was.
    """


class SessionExpired(NotAuthenticated):
    """The session is over and the token store was cleared: log in again.

    Raised only for ``refresh_invalid``, ``refresh_expired``, ``refresh_reused``
    and ``session_revoked`` (or ``session_ended`` when another thread or process
    already cleared the shared store).
    """


class MfaRequired(NotAuthenticated):
    """Login: the password was right and a second factor is needed; no session was opened.

    Call ``login_mfa(error.mfa_token, code)`` with a code of one of ``methods``
    (``"totp"``, ``"recovery_code"``). The ``mfa_token`` is single use and lives
    5 minutes; it is never part of ``str()`` or ``repr()``.
    """

    #: The single-use token for ``login_mfa`` (set from the problem body).
    mfa_token: str = ""
    #: The accepted second factors, e.g. ``("totp", "recovery_code")``.
    methods: tuple[str, ...] = ()


class MfaInvalid(NotAuthenticated):
    """``login_mfa``: wrong or already-used code; ask for another one, same ``mfa_token``."""


class MfaExpired(NotAuthenticated):
    """``login_mfa``: the ``mfa_token`` is unknown, used, too old or burned: log in again."""


class LinkInvalid(ApiError):
    """400: a reset or verification token that is unknown, used, superseded or expired."""


class Forbidden(ApiError):
    """403: authenticated but not allowed. Never a reason to log out."""


class EmailUnverified(Forbidden):
    """Login: right password, but the server requires a verified address first.

    Ask for a link with ``request_email_verification(email)`` (no session needed).
    """


class RateLimited(ApiError):
    """429 after the retry budget was spent; ``retry_after`` says how long to wait."""


class ServiceUnavailable(ApiError):
    """502/503/504 after the retry budget was spent; the session is kept."""
