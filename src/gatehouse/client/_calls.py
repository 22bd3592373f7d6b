"""The account calls (login, second factor, recovery) described once for both clients.

Each function returns a :class:`Call`: what to send and how to read the
answer. :class:`Client` and :class:`AsyncClient` only send it (``_call``), so
the paths, bodies, retry rules and result parsing live here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from ._problem import error_from_response
from ._refresh import LOGIN_PATH, read_token_pair

LOGIN_MFA_PATH = "/api/v1/auth/login/mfa"
FORGOT_PATH = "/api/v1/auth/password/forgot"
RESET_PATH = "/api/v1/auth/password/reset"
VERIFY_REQUEST_PATH = "/api/v1/auth/email/verify-request"
VERIFY_PATH = "/api/v1/auth/email/verify"
MFA_SETUP_PATH = "/api/v1/auth/mfa/totp/setup"
MFA_CONFIRM_PATH = "/api/v1/auth/mfa/totp/confirm"
MFA_PATH = "/api/v1/auth/mfa/totp"
RECOVERY_CODES_PATH = "/api/v1/auth/mfa/recovery-codes"


def no_content(response: httpx.Response) -> None:
    """Accept a 2xx answer without a body; raise the matching error otherwise."""
    if response.is_error:
        raise error_from_response(response)


def json_object(response: httpx.Response) -> dict[str, Any]:
    """Return a 2xx answer's JSON object; raise the matching error otherwise."""
    no_content(response)
    body: dict[str, Any] = response.json()
    return body


def recovery_codes(response: httpx.Response) -> list[str]:
    """Return the ``recovery_codes`` list of a 2xx answer."""
    codes: list[str] = json_object(response)["recovery_codes"]
    return codes


@dataclass(frozen=True)
class Call:
    """One request of the account API and the function that reads its answer.

    ``authenticated`` sends it with the stored session (refreshing as any
    request does); otherwise no ``Authorization`` is sent. ``idempotent``
    allows a retry after the request may have reached the server.
    """

    method: str
    path: str
    json: Any
    parse: Callable[[httpx.Response], Any]
    authenticated: bool = False
    idempotent: bool = False


def login(email: str, password: str) -> Call:
    """``POST /auth/login``; its answer is a token pair (or ``MfaRequired``)."""
    return Call("POST", LOGIN_PATH, {"email": email, "password": password}, read_token_pair)


def login_mfa(mfa_token: str, code: str) -> Call:
    """``POST /auth/login/mfa``: the second step; answers as ``login`` does."""
    return Call("POST", LOGIN_MFA_PATH, {"mfa_token": mfa_token, "code": code}, read_token_pair)


def forgot_password(email: str) -> Call:
    """``POST /auth/password/forgot``: 202 whether or not the address exists."""
    return Call("POST", FORGOT_PATH, {"email": email}, no_content)


def reset_password(token: str, new_password: str) -> Call:
    """``POST /auth/password/reset``: 204, or ``LinkInvalid``."""
    return Call("POST", RESET_PATH, {"token": token, "new_password": new_password}, no_content)


def request_email_verification(email: str | None) -> Call:
    """``POST /auth/email/verify-request``: for the session's user, or for ``email`` without one."""
    if email is None:
        return Call("POST", VERIFY_REQUEST_PATH, None, no_content, authenticated=True)
    return Call("POST", VERIFY_REQUEST_PATH, {"email": email}, no_content)


def verify_email(token: str) -> Call:
    """``POST /auth/email/verify``: 204, or ``LinkInvalid``."""
    return Call("POST", VERIFY_PATH, {"token": token}, no_content)


def mfa_setup() -> Call:
    """``POST /auth/mfa/totp/setup`` → ``{"secret", "otpauth_uri"}``."""
    return Call("POST", MFA_SETUP_PATH, None, json_object, authenticated=True)


def mfa_confirm(code: str) -> Call:
    """``POST /auth/mfa/totp/confirm`` → the recovery codes."""
    return Call("POST", MFA_CONFIRM_PATH, {"code": code}, recovery_codes, authenticated=True)


def mfa_disable(code: str) -> Call:
    """``DELETE /auth/mfa/totp`` with a TOTP or recovery code → 204."""
    return Call("DELETE", MFA_PATH, {"code": code}, no_content, authenticated=True)


def mfa_recovery_codes(code: str) -> Call:
    """``POST /auth/mfa/recovery-codes`` → a new set of recovery codes."""
    return Call("POST", RECOVERY_CODES_PATH, {"code": code}, recovery_codes, authenticated=True)
