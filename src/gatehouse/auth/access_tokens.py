"""Access tokens: JWTs in the RFC 9068 shape (`typ: at+jwt`), checked per RFC 8725.

RFC 8725 rules applied here:
- §3.1 the algorithm is pinned by configuration; the token's `alg` is only
  compared with it, never trusted (no `none`, no HS256/EdDSA confusion);
- §3.11 `typ` must be `at+jwt` or `application/at+jwt` (RFC 9068 §2.1; media types
  compare case-insensitively, RFC 7515 §4.1.9), so no other JWT kind is accepted as an
  access token; tokens are issued with `at+jwt`;
- RFC 7515 §4.1.11: a `crit` header names extensions the recipient must understand;
  we understand none, so any `crit` makes the token invalid, and so does RFC 7797's
  `b64: false` (an unencoded payload), with or without `crit`;
- segments are strict base64url: the RFC 7515 alphabet, no padding, and canonical
  (the unused low bits of the last character are zero), as PyJWT decodes them;
- §3.8/3.9 `iss` and `aud` are checked exactly;
- embedded key headers (`jwk`, `jku`, `x5u`, `x5c`) are ignored: keys come only
  from JWT_SECRET or JWT_KEYS_DIR, and `kid` is a lookup in an in-memory map,
  never a path.

`jti` is a UUIDv7, so it also records the issue time in milliseconds (used to
expire tokens issued before a role change without waiting a whole second).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from gatehouse.auth.jwks import KeyRing, b64url
from gatehouse.errors import TokenExpired, TokenInvalid

LEEWAY_SECONDS = 30
MAX_TOKEN_CHARS = 8192
MAX_LIFETIME_SECONDS = 86_400  # the largest ACCESS_TOKEN_TTL settings allow
_JWS_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\Z")
# A UUIDv7 as `uuid7` writes it (version 7, RFC 4122 variant); any other spelling is parsed.
_UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")
_REQUIRED = ["exp", "iat", "iss", "aud", "sub", "sid", "jti"]
_TYPES = frozenset({"at+jwt", "application/at+jwt"})
# The last character of a canonical segment of length 2 or 3 (mod 4) leaves its unused
# low bits zero (RFC 4648 §3.5): one of these.
_CANONICAL_LAST = {2: frozenset("AQgw"), 3: frozenset("AEIMQUYcgkosw048")}


def _as_bytes(key: str | bytes) -> bytes:
    return key.encode() if isinstance(key, str) else key


@functools.lru_cache(maxsize=32)
def _header_segment(algorithm: str, kid: str | None) -> str:
    """The protected header, as PyJWT writes it (sorted keys, compact), encoded once per kid."""
    header = {"alg": algorithm, "typ": "at+jwt", **({"kid": kid} if kid else {})}
    return b64url(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())


def _sign(algorithm: str, key: Any, signing_input: bytes) -> bytes:
    if algorithm == "HS256":
        # The secret: KeyRing refused a PEM or SSH key as one when it was made.
        return hmac.digest(_as_bytes(key), signing_input, "sha256")
    signature: bytes = key.sign(signing_input)  # Ed25519PrivateKey (EdDSA)
    return signature


def uuid7(ms: int | None = None) -> str:
    """RFC 9562 UUIDv7: 48-bit Unix milliseconds, then randomness."""
    ms = int(time.time() * 1000) if ms is None else ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | rand & ((1 << 80) - 1)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))


def uuid7_ms(value: str) -> int | None:
    if _UUID7.match(value):  # the spelling we issue: read the 48-bit time, no UUID object
        return int(value[:8] + value[9:13], 16)
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
        # What jwt.encode writes, without its per-token header encoding and key checks: the
        # header segment is cached per kid and the HMAC secret is checked once (_PreparedHMAC).
        algorithm = self.keys.algorithm
        signing_input = f"{_header_segment(algorithm, kid)}.{b64url(orjson.dumps(claims))}"
        signature = _sign(algorithm, key, signing_input.encode())
        return f"{signing_input}.{b64url(signature)}", exp

    def verify(self, token: str) -> AccessClaims:
        """Check signature and claims; raise TokenExpired or TokenInvalid.

        Verification is done here with the standard library (HMAC-SHA256) and
        `cryptography` (Ed25519) rather than PyJWT's decoder, which spends about
        0.4 ms per token in per-character Python checks: this runs on every
        authenticated request.
        """
        if not _well_formed(token):
            raise TokenInvalid()
        h64, p64, s64 = token.split(".")
        header = _json_segment(h64)
        if header.get("alg") != self.keys.algorithm or not _is_access_token_type(header.get("typ")):
            raise TokenInvalid()
        if "crit" in header or header.get("b64") is False:
            # RFC 7515 §4.1.11: we implement no extension; RFC 7797's unencoded payload
            # (`b64: false`) would make the same bytes mean another payload.
            raise TokenInvalid()
        kid = header.get("kid")
        if "kid" in header and not isinstance(kid, str):
            raise TokenInvalid()  # including `"kid": null`
        key = self.keys.verification_key(kid)
        if key is None or not _signature_ok(self.keys.algorithm, key, f"{h64}.{p64}", s64):
            raise TokenInvalid()
        claims = _json_segment(p64)
        if claims.get("iss") != self.issuer or claims.get("aud") != self.audience:
            raise TokenInvalid()
        if any(name not in claims for name in _REQUIRED):
            raise TokenInvalid()
        typed = _typed_claims(claims)
        now = time.time()
        nbf = claims.get("nbf", typed.iat)
        if typed.iat > now + LEEWAY_SECONDS or nbf > now + LEEWAY_SECONDS:
            raise TokenInvalid()  # not yet valid
        if typed.exp <= now - LEEWAY_SECONDS:
            raise TokenExpired()
        return typed


def _is_access_token_type(typ: Any) -> bool:
    return isinstance(typ, str) and typ.isascii() and typ.lower() in _TYPES


def _unb64(segment: str) -> bytes:
    """Strict base64url (the alphabet is checked by _JWS_COMPACT): canonical, unpadded."""
    rem = len(segment) % 4
    if rem == 1 or (rem and segment[-1] not in _CANONICAL_LAST[rem]):
        raise TokenInvalid()
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise TokenInvalid() from None


def _json_segment(segment: str) -> dict[str, Any]:
    try:
        raw = _unb64(segment)
        try:
            value = orjson.loads(raw)  # every token we issue: 3x the standard library's speed
        except orjson.JSONDecodeError:
            # What orjson refuses and PyJWT (json.loads) reads: UTF-16 or UTF-32 JSON, numbers
            # past 64 bits. The answer must not depend on the parser.
            value = json.loads(raw)
    except (ValueError, RecursionError):
        # RecursionError: `[[[[...` nested thousands deep, in a header nobody has verified yet.
        raise TokenInvalid() from None
    if not isinstance(value, dict):
        raise TokenInvalid()
    return value


def _signature_ok(algorithm: str, key: Any, signing_input: str, s64: str) -> bool:
    signature = _unb64(s64)
    if algorithm == "HS256":
        expected = hmac.digest(_as_bytes(key), signing_input.encode(), "sha256")
        return hmac.compare_digest(expected, signature)
    try:
        key.verify(signature, signing_input.encode())  # Ed25519PublicKey (EdDSA)
    except (_invalid_signature(), ValueError):  # called only when verify raised
        return False
    return True


@functools.cache
def _invalid_signature() -> type[Exception]:
    """cryptography's InvalidSignature, looked up on a refusal only: not on every verified
    token, and not at import (an HS256 worker never loads cryptography)."""
    from cryptography.exceptions import InvalidSignature

    return InvalidSignature


def _well_formed(token: str) -> bool:
    return bool(token) and len(token) <= MAX_TOKEN_CHARS and _JWS_COMPACT.match(token) is not None


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
    if not 0 < exp - iat <= MAX_LIFETIME_SECONDS:
        # No token we issue lives longer than the largest ACCESS_TOKEN_TTL; an absurd exp
        # (one no datetime can hold) must be refused here, not crash a route later.
        raise TokenInvalid()
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise TokenInvalid()
    if not isinstance(claims.get("aud"), str) or "nbf" in claims and not _is_int(claims["nbf"]):
        raise TokenInvalid()
    return AccessClaims(sub=sub, sid=sid, roles=roles, iat=iat, exp=exp, jti=jti)
