"""Token sets and the rules for when to refresh them (no I/O).

Expiry is never read from the JWT: a client whose clock is off by an hour
would otherwise refresh on every request (or never). Instead it is the local
time the login/refresh request was *sent* plus the server's ``expires_in``.
The send time is never later than the moment the server issued the token,
so the estimate can only err towards refreshing a little early.

Two clocks meet here. ``obtained_at`` is wall-clock time, because a token
file is read by other processes. In-process decisions use a monotonic anchor
(``_mono``): exact for tokens this process obtained, and derived from the
wall clock (clamped, so a clock set backwards cannot make a token look
younger than zero) for tokens read from a store.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from . import _clock

#: Refresh when less than this much of the access token's life is left ...
MAX_REFRESH_MARGIN = 30.0
#: ... or this fraction of its lifetime, whichever is smaller, so that a
#: 2-second token is refreshed once per lifetime and not on every request.
REFRESH_MARGIN_FRACTION = 0.2
#: Consider a token unusable this close to its expiry (network latency).
MAX_EXPIRY_MARGIN = 1.0
EXPIRY_MARGIN_FRACTION = 0.05


def refresh_margin(lifetime: float) -> float:
    """Seconds before expiry at which a proactive refresh starts."""
    return min(MAX_REFRESH_MARGIN, lifetime * REFRESH_MARGIN_FRACTION)


def expiry_margin(lifetime: float) -> float:
    """Seconds before expiry after which the token is no longer sent."""
    return min(MAX_EXPIRY_MARGIN, lifetime * EXPIRY_MARGIN_FRACTION)


@dataclass(frozen=True)
class TokenSet:
    """One session's tokens, as stored by a :class:`TokenStore`.

    ``expires_in`` and ``refresh_expires_in`` are the lifetimes the server
    sent; ``obtained_at`` is the local wall-clock time (``time.time()``) at
    which the request that produced them was sent. The token values are
    secret and left out of ``repr``.
    """

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: float
    obtained_at: float
    refresh_expires_in: float | None = None
    session_id: str | None = None
    user: Mapping[str, Any] | None = field(default=None, compare=False)
    token_type: str = "Bearer"  # noqa: S105  # a scheme name, not a secret
    _mono: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.access_token or not self.refresh_token:
            raise ValueError("access_token and refresh_token must be non-empty")
        if not (math.isfinite(self.expires_in) and self.expires_in > 0):
            raise ValueError("expires_in must be a positive number")
        age = min(max(0.0, _clock.wall() - self.obtained_at), self.expires_in)
        object.__setattr__(self, "_mono", _clock.monotonic() - age)

    @classmethod
    def from_token_pair(
        cls, body: Mapping[str, Any], *, sent_wall: float, sent_mono: float
    ) -> TokenSet:
        """Build a token set from a login/refresh answer (API.md ``TokenPair``)."""
        tokens = cls._from_fields(body, obtained_at=sent_wall)
        object.__setattr__(tokens, "_mono", sent_mono)
        return tokens

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenSet:
        """Rebuild a token set saved with :meth:`to_dict`; raises ``ValueError`` if malformed."""
        obtained_at = data.get("obtained_at")
        if not isinstance(obtained_at, (int, float)) or isinstance(obtained_at, bool):
            raise ValueError("obtained_at must be a number")
        return cls._from_fields(data, obtained_at=float(obtained_at))

    @classmethod
    def _from_fields(cls, data: Mapping[str, Any], *, obtained_at: float) -> TokenSet:
        access, refresh = data.get("access_token"), data.get("refresh_token")
        expires_in, refresh_expires_in = data.get("expires_in"), data.get("refresh_expires_in")
        session_id, user = data.get("session_id"), data.get("user")
        if not isinstance(access, str) or not isinstance(refresh, str):
            raise ValueError("access_token and refresh_token must be strings")
        if not _is_number(expires_in):
            raise ValueError("expires_in must be a number")
        return cls(
            access_token=access,
            refresh_token=refresh,
            expires_in=float(expires_in),
            obtained_at=obtained_at,
            refresh_expires_in=float(refresh_expires_in)
            if _is_number(refresh_expires_in)
            else None,
            session_id=session_id if isinstance(session_id, str) else None,
            user=dict(user) if isinstance(user, Mapping) else None,
            token_type=str(data.get("token_type") or "Bearer"),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict that :meth:`from_dict` reads back."""
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
            "refresh_expires_in": self.refresh_expires_in,
            "obtained_at": self.obtained_at,
            "session_id": self.session_id,
            "user": dict(self.user) if self.user is not None else None,
        }

    def remaining(self, now: float | None = None) -> float:
        """Seconds of access-token life left, by the local monotonic clock."""
        now = _clock.monotonic() if now is None else now
        return self.expires_in - (now - self._mono)

    def refresh_due(self, now: float | None = None) -> bool:
        """Whether the access token is close enough to expiry to refresh it now."""
        return self.remaining(now) <= refresh_margin(self.expires_in)

    def expired(self, now: float | None = None) -> bool:
        """Whether the access token should no longer be sent at all."""
        return self.remaining(now) <= expiry_margin(self.expires_in)

    def same_session(self, other: TokenSet | None) -> bool:
        """Whether ``other`` belongs to the same login session as this token set."""
        if other is None:
            return False
        if self.session_id is not None and other.session_id is not None:
            return self.session_id == other.session_id
        return self.refresh_token == other.refresh_token


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
