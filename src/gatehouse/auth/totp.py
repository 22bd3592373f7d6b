"""RFC 6238 time-based one-time passwords, as authenticator apps compute them (via pyotp).

SHA-1, 6 digits, 30 s steps (RFC 6238 §4, the defaults every app supports).
A code is accepted in the current step and one step either side (§5.2: clock
drift and typing time); which step matched is returned, so the caller can
refuse any step at or before the last one it accepted (§5.2: "the verifier
MUST NOT accept the second attempt of the same OTP").
"""

from __future__ import annotations

import hmac
from urllib.parse import quote, urlencode

import pyotp

DIGITS = 6
PERIOD = 30
WINDOW = 1  # steps accepted either side of the current one


def new_secret() -> str:
    """A fresh 160-bit secret (RFC 4226 §4 recommends 160), base32 as apps expect it."""
    return pyotp.random_base32(length=32)


def step_at(unix_time: float) -> int:
    return int(unix_time // PERIOD)


def code_for_step(secret: str, step: int) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD).generate_otp(step)


def matching_step(secret: str, code: str, unix_time: float) -> int | None:
    """The step within the window whose code is `code`, newest first; None if none is."""
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    now = step_at(unix_time)
    found = None
    for step in range(now + WINDOW, now - WINDOW - 1, -1):
        # Compare every candidate (no early exit): the time taken says nothing about which.
        if hmac.compare_digest(code_for_step(secret, step), code) and found is None:
            found = step
    return found


def otpauth_uri(secret: str, *, issuer: str, account: str) -> str:
    """`otpauth://totp/<issuer>:<account>?secret=...&issuer=...` (Key Uri Format), URL-encoded."""
    # Each part encoded on its own: a ':' inside the issuer must not read as the separator.
    label = f"{quote(issuer, safe='')}:{quote(account, safe='@')}"
    query = urlencode({"secret": secret, "issuer": issuer, "algorithm": "SHA1",
                       "digits": DIGITS, "period": PERIOD}, quote_via=quote)
    return f"otpauth://totp/{label}?{query}"
