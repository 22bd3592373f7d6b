"""Access tokens: JWTs in the RFC 9068 shape (`typ: at+jwt`), checked per RFC 8725.

RFC 8725 rules applied here:
- §3.1 the algorithm is pinned by configuration; the token's `alg` is only
  compared with it, never trusted (no `none`, no HS256/EdDSA confusion);
- §3.11 `typ` must be `at+jwt`, so no other JWT kind is accepted as an access token;
- §3.8/3.9 `iss` and `aud` are checked exactly;
- embedded key headers (`jwk`, `jku`, `x5u`, `x5c`) are ignored: keys come only
  from JWT_SECRET or JWT_KEYS_DIR, and `kid` is a lookup in an in-memory map,
  never a path.

`jti` is a UUIDv7, so it also records the issue time in milliseconds (used to
expire tokens issued before a role change without waiting a whole second).
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from gatehouse.auth.jwks import KeyRing
from gatehouse.errors import TokenExpired, TokenInvalid

LEEWAY_SECONDS = 30
MAX_TOKEN_CHARS = 8192
_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_REQUIRED = ["exp", "iat", "iss", "aud", "sub", "sid", "jti"]


def uuid7(ms: int | None = None) -> str:
    """RFC 9562 UUIDv7: 48-bit Unix milliseconds, then randomness."""
    ms = int(time.time() * 1000) if ms is None else ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | rand & ((1 << 80) - 1)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))


def uuid7_ms(value: str) -> int | None:
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return None
    return parsed.int >> 80 if parsed.version == 7 else None


@dataclass(frozen=True, slots=True)
class AccessClaims:
    sub: str
    sid: str
    roles: list[str]
    iat: int
    exp: int
    jti: str

    @property
    def issued_ms(self) -> int:
        return uuid7_ms(self.jti) or self.iat * 1000


class AccessTokens:
    """Issues and verifies access tokens with one pinned algorithm."""

    def __init__(self, *, keys: KeyRing, issuer: str, audience: str, ttl: int) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self._decoder = jwt.PyJWT(options={"require": _REQUIRED, "verify_signature": True})

    def issue(self, *, user_id: str, session_id: str, roles: list[str]) -> tuple[str, int]:
        """Return (token, exp)."""
        now_ms = int(time.time() * 1000)
        iat = now_ms // 1000
        exp = iat + self.ttl
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": user_id,
            "sid": session_id,
            "roles": list(roles),
            "iat": iat,
            "exp": exp,
            "jti": uuid7(now_ms),
        }
        kid, key = self.keys.signing_key()
        headers: dict[str, Any] = {"typ": "at+jwt"}
        if kid:
            headers["kid"] = kid
        return jwt.encode(claims, key, algorithm=self.keys.algorithm, headers=headers), exp

    def verify(self, token: str) -> AccessClaims:
        """Check signature and claims; raise TokenExpired or TokenInvalid."""
        if not _well_formed(token):
            raise TokenInvalid()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenInvalid() from None
        if header.get("alg") != self.keys.algorithm or header.get("typ") != "at+jwt":
            raise TokenInvalid()
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenInvalid()
        key = self.keys.verification_key(kid)
        if key is None:
            raise TokenInvalid()
        try:
            claims = self._decoder.decode(
                token,
                key,
                algorithms=[self.keys.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired() from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise TokenInvalid() from None
        return _typed_claims(claims)


def _well_formed(token: str) -> bool:
    if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        return False
    return all(part and set(part) <= _B64URL for part in token.split("."))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _typed_claims(claims: dict[str, Any]) -> AccessClaims:
    """A claim of the wrong type makes the whole token invalid (API.md §3)."""
    sub, sid, roles, jti = claims.get("sub"), claims.get("sid"), claims.get("roles"), claims.get("jti")
    iat, exp = claims.get("iat"), claims.get("exp")
    if not (isinstance(sub, str) and sub and isinstance(sid, str) and sid and isinstance(jti, str)):
        raise TokenInvalid()
    if not (_is_int(iat) and _is_int(exp)):
        raise TokenInvalid()
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise TokenInvalid()
    if not isinstance(claims.get("aud"), str) or "nbf" in claims and not _is_int(claims["nbf"]):
        raise TokenInvalid()
    return AccessClaims(sub=sub, sid=sid, roles=roles, iat=iat, exp=exp, jti=jti)
