"""The `gh_device` cookie: proof that this browser signed in to an account before (API.md §4).

Login throttling has a per-email ceiling (more than 100 failures an hour from
all IPs throttles the account everywhere). On its own that lets a stranger
lock anyone out with a hundred wrong guesses. A client that shows a valid
device cookie for the account it logs in to is exempt from that ceiling only;
the email+IP throttle and the per-IP ceiling still apply to it, and its own
failures still count, so the cookie buys an attacker who steals one nothing
but what the owner's browser already had.

Value: `v1.<user id>.<issued at>.<mac>`, the MAC an HMAC-SHA256 (key derived
from ENCRYPTION_KEY for this purpose only, `ServerKeys.device`) over the
version, user id and issue time. Bound to the user id, not the email: a cookie
made for one account vouches for no other, whatever its email becomes. Anything
malformed, forged, expired or from the future is ignored, never an error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

COOKIE = "gh_device"
MAX_AGE = 365 * 24 * 3600  # one year (API.md §4)
_VERSION = "v1"
_SKEW = 300  # an issue time this far in the future is still believed (clock drift between hosts)


def _mac(key: bytes, payload: str) -> str:
    digest = hmac.digest(key, payload.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class DeviceCookies:
    """Issue and check device cookies with one server key."""

    def __init__(self, key: bytes, max_age: int = MAX_AGE) -> None:
        self._key = key
        self.max_age = max_age

    def issue(self, user_id: str, now: float | None = None) -> str:
        """A fresh cookie value for a browser that just signed in as `user_id`."""
        payload = f"{_VERSION}.{user_id}.{int(time.time() if now is None else now)}"
        return f"{payload}.{_mac(self._key, payload)}"

    def user_of(self, value: str | None, now: float | None = None) -> str | None:
        """The user id a cookie vouches for, or None for anything not made here, or expired."""
        if not value or len(value) > 200:
            return None
        parts = value.split(".")
        if len(parts) != 4 or parts[0] != _VERSION or not parts[2].isdigit():
            return None
        payload, presented = value.rsplit(".", 1)
        # Bytes, not str: compare_digest refuses non-ASCII str, and a cookie may hold anything.
        if not hmac.compare_digest(_mac(self._key, payload).encode(), presented.encode()):
            return None
        age = int(time.time() if now is None else now) - int(parts[2])
        if not -_SKEW <= age <= self.max_age:
            return None
        return parts[1]
