"""The I/O-free half of the resource-server verifier: key cache, claim checks, revocation cache.

Both :class:`~gatehouse.client.resource.TokenVerifier` and its asyncio twin make
every decision here and only do the HTTP calls themselves, as the SDK's clients do.

Checks follow RFC 8725 and RFC 9068 as the Gatehouse server applies them
(API.md §3): the algorithm is pinned by configuration and the token's `alg`
is only compared with it (no `none`, no HS256 signed with a public key); `typ`
must be `at+jwt`; `iss` and `aud` must match exactly; every claim the server
issues is required; 30 s of clock skew are accepted by default.
"""

from __future__ import annotations

import collections
import hashlib
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import jwt

from ._exceptions import NotAuthenticated, ServiceUnavailable
from ._problem import read_problem

#: API.md §4, "Roles and permissions (fixed defaults)": tokens carry roles, not permissions.
ROLE_PERMISSIONS: Final[Mapping[str, frozenset[str]]] = {
    "admin": frozenset({"users:read", "users:write", "sessions:revoke", "audit:read",
                        "ops:read", "api_keys:manage"}),
    "operator": frozenset({"users:read", "users:write", "sessions:revoke", "audit:read",
                           "ops:read"}),
    "support": frozenset({"users:read", "audit:read"}),
    "user": frozenset(),
}
_REQUIRED: Final = ["exp", "iat", "iss", "aud", "sub", "sid", "jti"]
_TYPES: Final = frozenset({"at+jwt", "application/at+jwt"})
_MAX_TOKEN_CHARS: Final = 8192
_MAX_LIFETIME: Final = 86_400  # the largest ACCESS_TOKEN_TTL the server allows
_REVOCATION_ENTRIES: Final = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    """Who called your API, taken from a verified Gatehouse access token."""

    user_id: str
    session_id: str
    roles: tuple[str, ...]
    #: The union of the roles' permissions (unknown role names grant nothing).
    permissions: frozenset[str]
    expires_at: datetime
    #: The token's `jti`, for your own logs (never log the token itself).
    token_id: str

    def missing(self, permissions: Iterable[str]) -> list[str]:
        """The permissions of ``permissions`` this principal lacks, sorted."""
        return sorted(set(permissions) - self.permissions)


def token_error(code: str, detail: str) -> NotAuthenticated:
    return NotAuthenticated(detail, status=401, code=code)


def unavailable(detail: str, retry_after: float | None = None) -> ServiceUnavailable:
    return ServiceUnavailable(detail, status=503, code="service_unavailable",
                              retry_after=retry_after)


def _invalid() -> NotAuthenticated:
    # One answer for every defect, as the server gives: no oracle for forgers.
    return token_error("token_invalid", "The access token is not valid.")


def header_of(token: str, algorithm: str) -> dict[str, Any]:
    """The unverified header, after the checks that need no key (alg pinned, typ, kid type)."""
    if not token or len(token) > _MAX_TOKEN_CHARS:
        raise _invalid()
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise _invalid() from None
    typ = header.get("typ")
    if header.get("alg") != algorithm or not (isinstance(typ, str) and typ.lower() in _TYPES):
        raise _invalid()
    if "kid" in header and not isinstance(header["kid"], str):
        raise _invalid()
    return header


def principal_of(token: str, key: Any, *, algorithm: str, issuer: str, audience: str,
                 leeway: float) -> Principal:
    """Check signature and claims with PyJWT, then their types; raise token_expired/invalid."""
    try:
        claims = jwt.decode(
            token, key, algorithms=[algorithm], issuer=issuer, audience=audience, leeway=leeway,
            options={"require": _REQUIRED, "strict_aud": True},
        )
    except jwt.ExpiredSignatureError:
        raise token_error("token_expired", "The access token has expired.") from None
    except jwt.PyJWTError:
        raise _invalid() from None
    sub, sid, jti, roles = claims["sub"], claims["sid"], claims["jti"], claims.get("roles")
    if not (isinstance(sub, str) and sub and isinstance(sid, str) and sid and isinstance(jti, str)):
        raise _invalid()
    iat, exp = claims["iat"], claims["exp"]
    if not (type(iat) is int and type(exp) is int and 0 < exp - iat <= _MAX_LIFETIME):
        raise _invalid()  # as the server: no token it issues lives longer than a day
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise _invalid()
    permissions = frozenset().union(*(ROLE_PERMISSIONS.get(r, frozenset()) for r in roles))
    return Principal(user_id=sub, session_id=sid, roles=tuple(roles), permissions=permissions,
                     expires_at=datetime.fromtimestamp(exp, UTC), token_id=jti)


class KeyCache:
    """The issuer's JWKS, by `kid`: when to fetch it, and the key a token names.

    Fetched when older than ``ttl``, or when a token names a `kid` we do not
    know (a rotation), but never more often than ``min_interval``: a flood of
    tokens with made-up `kid`s costs the issuer one request per interval. When
    a fetch fails, the keys we have keep working.
    """

    def __init__(self, algorithm: str, ttl: float, min_interval: float) -> None:
        self.algorithm = algorithm
        self.ttl = ttl
        self.min_interval = min_interval
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._failing = False

    def should_fetch(self, kid: str | None, now: float) -> bool:
        if now - self._attempted_at < self.min_interval:
            return False
        return now - self._fetched_at >= self.ttl or kid not in self._keys

    def store(self, response: httpx.Response | None, now: float) -> None:
        """Take a fetch's answer (``None``: no answer); keep the old keys if it is unusable."""
        self._attempted_at = now
        keys = self._parse(response) if response is not None and response.is_success else None
        self._failing = keys is None
        if keys is not None:
            self._keys, self._fetched_at = keys, now

    def _parse(self, response: httpx.Response) -> dict[str, Any] | None:
        try:
            entries = response.json()["keys"]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(entries, list):
            return None
        keys: dict[str, Any] = {}
        for jwk in entries:
            if not (isinstance(jwk, dict) and isinstance(jwk.get("kid"), str)
                    and jwk.get("use", "sig") == "sig"
                    and jwk.get("alg", self.algorithm) == self.algorithm):
                continue
            try:  # PyJWK checks that the key type fits the pinned algorithm
                keys[jwk["kid"]] = jwt.PyJWK(jwk, algorithm=self.algorithm).key
            except (jwt.PyJWTError, ValueError, TypeError, KeyError):
                continue
        return keys

    def key(self, kid: str | None, now: float) -> Any:
        key = self._keys.get(kid) if kid is not None else None
        if key is not None:
            return key
        if self._failing:
            # We cannot tell a forged kid from a new key: say so instead of "invalid".
            raise unavailable("The token issuer's keys cannot be fetched.",
                              max(0.0, self._attempted_at + self.min_interval - now))
        raise _invalid()


class RevocationCache:
    """`/auth/validate` answers for ``ttl`` seconds, keyed by the token's SHA-256 (never the token).

    An answer is (code, detail) of a dead session, or ``None`` for a live one; each
    lookup raises a fresh exception, since threads must not share one traceback.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._answers: collections.OrderedDict[str, tuple[float, tuple[str, str] | None]] = (
            collections.OrderedDict())
        self._lock = threading.Lock()  # TokenVerifier serves many threads

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def known_live(self, token: str, now: float) -> bool:
        """True if the session was live moments ago; raises if it was over; False: ask."""
        with self._lock:
            entry = self._answers.get(self._key(token))
        if entry is None or now - entry[0] >= self.ttl:
            return False
        if entry[1] is not None:
            raise token_error(*entry[1])
        return True

    def store(self, token: str, response: httpx.Response | None, now: float) -> None:
        """Take the issuer's answer: cache it, and raise unless the session is live."""
        if response is not None and response.status_code == 401:
            problem = read_problem(response)  # session_revoked; token_expired after a role change
            answer: tuple[str, str] | None = (problem.code, problem.detail)
        elif response is not None and response.status_code == 200 and _active(response):
            answer = None
        else:  # no answer, 429 or 5xx: fail closed, and ask again next time
            raise unavailable("The token issuer cannot confirm the session.")
        key = self._key(token)
        with self._lock:
            self._answers[key] = (now, answer)
            self._answers.move_to_end(key)  # keep the oldest first, for the trim below
            while len(self._answers) > _REVOCATION_ENTRIES or (
                    now - next(iter(self._answers.values()))[0] >= self.ttl):
                self._answers.popitem(last=False)
        if answer is not None:
            raise token_error(*answer)


def _active(response: httpx.Response) -> bool:
    try:
        return response.json().get("active") is True
    except (ValueError, AttributeError):
        return False
