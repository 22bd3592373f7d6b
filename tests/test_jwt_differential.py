"""Differential test of the hand-written access-token verifier against PyJWT (issue 9, item 6).

Hypothesis builds tokens from generated headers, claims, encodings and signatures, valid and
mangled. The oracle is PyJWT configured as our contract says (pinned algorithm and key, audience,
issuer, 30 s leeway, required claims) followed by the rules where API.md §3 is stricter than
PyJWT, each written out below; our verifier must accept exactly the tokens the oracle accepts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gatehouse.auth.access_tokens import AccessTokens, uuid7
from gatehouse.auth.jwks import KeyRing, write_new_key
from gatehouse.errors import TokenExpired, TokenInvalid
from tests.conftest import JWT_SECRET

ISSUER = "https://auth.example"
AUDIENCE = "gatehouse"
REQUIRED = ["exp", "iat", "iss", "aud", "sub", "sid", "jti"]
DIFFERENTIAL = settings(max_examples=2000, derandomize=True, deadline=None, database=None,
                        suppress_health_check=[HealthCheck.too_slow,
                                               HealthCheck.function_scoped_fixture])
_ABSENT = object()


class Raw(str):
    """A JSON value written verbatim (numbers no Python value prints the same way)."""


# -- the oracle: PyJWT, then our stricter contract, rule by rule ------------------------------


_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\Z")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def contract_accepts(token: str, algorithm: str, key: Any, kid: str | None = None) -> bool:
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, key, algorithms=[algorithm], audience=AUDIENCE, issuer=ISSUER,
                            leeway=30, options={"require": REQUIRED})
    except jwt.PyJWTError:
        return False
    typ = header.get("typ")
    sub, sid, jti, roles = (claims.get(k) for k in ("sub", "sid", "jti", "roles"))
    iat, exp = claims["iat"], claims["exp"]
    return all([
        # RFC 7515 compact form: three unpadded base64url segments (PyJWT also takes "=").
        _COMPACT.match(token) is not None, len(token) <= 8192,
        # RFC 9068 §2.1 / RFC 8725 §3.11: only access tokens; media types are case-insensitive.
        isinstance(typ, str) and typ.isascii() and typ.lower() in {"at+jwt", "application/at+jwt"},
        # RFC 7515 §4.1.11: we implement no extension (PyJWT understands `b64`).
        "crit" not in header,
        # Under HS256 the one secret has no id; under EdDSA the kid names the key (PyJWT is
        # given that one key, so any kid would do for it).
        ("kid" not in header) if algorithm == "HS256" else header.get("kid") == kid,
        # API.md §3: every claim has its type (PyJWT takes int(1.5) and int(True)).
        isinstance(sub, str) and sub != "", isinstance(sid, str) and sid != "",
        isinstance(jti, str), isinstance(roles, list) and all(isinstance(r, str) for r in roles),
        isinstance(claims["aud"], str), _int(iat), _int(exp),
        "nbf" not in claims or _int(claims["nbf"]),
        # No token we issue lives longer than the largest ACCESS_TOKEN_TTL (a day).
        _int(iat) and _int(exp) and 0 < exp - iat <= 86_400,
    ])


def ours_accepts(verifier: AccessTokens, token: str) -> bool:
    try:
        verifier.verify(token)
    except (TokenInvalid, TokenExpired):
        return False
    return True


# -- generated tokens ---------------------------------------------------------------------------

_OFFSETS = st.sampled_from([-100_000, -86_401, -931, -901, -31, -30, -29, -1, 0, 1, 29, 30, 31,
                            899, 900, 901, 86_400, 86_401])
_ODD = st.sampled_from([None, True, False, "1", 1.5, -0.0, [], {}, 10**20, -(10**20),
                        Raw("1e400"), Raw("-Infinity"), Raw("NaN"), Raw("1" * 5000),
                        Raw("1.0"), Raw("17e2")])


def _time_claim(base: str) -> st.SearchStrategy[Any]:
    """("now"|"iat", offset) resolved when the token is built, or an odd value, or absent."""
    return st.one_of(st.tuples(st.just(base), _OFFSETS), _ODD, st.just(_ABSENT))


_TEXT = st.text(max_size=8)
_STRINGY = st.one_of(st.just("valid"), _TEXT, _ODD, st.just(_ABSENT))

HEADER_FIELDS = {
    "alg": st.sampled_from(["HS256", "EdDSA", "HS384", "hs256", "HS256 ", "none", "None", "",
                            None, 1, ["HS256"], _ABSENT]),
    "typ": st.sampled_from(["at+jwt", "application/at+jwt", "AT+JWT", "Application/At+Jwt",
                            "JWT", "jwt", "at+jwt ", "application/jwt", "at+jwt;q=1", "",
                            "\u0430t+jwt", None, 1, ["at+jwt"], _ABSENT]),
    "kid": st.sampled_from(["valid", "k1", "", "../../etc/passwd", None, 1, _ABSENT]),
    "crit": st.sampled_from([["b64"], ["exp"], ["kid"], [], "b64", [1], None, _ABSENT]),
    "b64": st.sampled_from([True, False, _ABSENT]),
    "cty": st.sampled_from(["JWT", 1, _ABSENT]),
    "jku": st.sampled_from(["https://evil.example/jwks", _ABSENT]),
}
CLAIM_FIELDS = {
    "iss": st.sampled_from([ISSUER, ISSUER + "/", "https://other.example", "", None, 1,
                            [ISSUER], _ABSENT]),
    "aud": st.sampled_from([AUDIENCE, [AUDIENCE], ["x", AUDIENCE], [], "other", "", None, 1,
                            [1], _ABSENT]),
    "sub": _STRINGY,
    "sid": _STRINGY,
    "jti": st.one_of(st.just("valid"), st.just("not-a-uuid"), _ODD, st.just(_ABSENT)),
    "roles": st.sampled_from([["user"], [], ["admin", "support"], ["a", 1], "admin", None,
                              {"admin": True}, _ABSENT]),
    "iat": _time_claim("now"),
    "exp": _time_claim("iat"),
    "nbf": st.one_of(st.just(_ABSENT), st.just(_ABSENT), _time_claim("now")),
}


def _defaults(algorithm: str, kid: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    header = {"alg": algorithm, "typ": "at+jwt", "kid": kid if kid else _ABSENT,
              "crit": _ABSENT, "b64": _ABSENT, "cty": _ABSENT, "jku": _ABSENT}
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "valid", "sid": "valid", "jti": "valid",
              "roles": ["user"], "iat": ("now", 0), "exp": ("iat", 900), "nbf": _ABSENT}
    return header, claims


def _resolve(name: str, value: Any, now: int, iat: Any, kid: str | None) -> Any:
    if value == "valid" and name in ("sub", "sid"):
        return str(uuid.uuid4())
    if value == "valid" and name == "jti":
        return uuid7()
    if value == "valid" and name == "kid":
        return kid or "k1"
    if isinstance(value, tuple):
        base, offset = value
        return (now if base == "now" or not _int(iat) else iat) + offset
    return value


def _json(pairs: list[tuple[str, Any]], spaced: bool) -> str:
    def dump(v: Any) -> str:
        return str(v) if isinstance(v, Raw) else json.dumps(v)

    sep = ", " if spaced else ","
    colon = ": " if spaced else ":"
    return "{" + sep.join(f"{json.dumps(k)}{colon}{dump(v)}" for k, v in pairs) + "}"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _encode(raw: bytes, how: str) -> str:
    text = _b64(raw)
    if how == "padded":
        return base64.urlsafe_b64encode(raw).decode()
    if how == "standard":
        return base64.b64encode(raw).rstrip(b"=").decode()
    if how == "space":
        return text[: len(text) // 2] + " " + text[len(text) // 2:]
    if how == "junk":
        return text + "!"
    if how == "noncanonical" and len(text) % 4 in (2, 3):
        return text[:-1] + _B64[_B64.index(text[-1]) + 1]
    return text


_ENCODINGS = st.sampled_from(["plain", "padded", "standard", "space", "junk", "noncanonical"])
_BODIES = st.sampled_from(["json", "spaced", "utf16", "latin1-junk", "not-json", "array",
                           "null", "empty", "duplicate"])


def _body(pairs: list[tuple[str, Any]], how: str, dup: tuple[str, Any]) -> bytes:
    if how == "spaced":
        return _json(pairs, spaced=True).encode()
    if how == "utf16":
        return _json(pairs, spaced=False).encode("utf-16")
    if how == "latin1-junk":
        return _json(pairs, spaced=False).encode()[:-1] + b',"x":"\xff"}'
    if how == "not-json":
        return b"not json"
    if how == "array":
        return json.dumps([dict(pairs)]).encode()
    if how == "null":
        return b"null"
    if how == "empty":
        return b""
    if how == "duplicate":
        return _json([*pairs, dup], spaced=False).encode()
    return _json(pairs, spaced=False).encode()


SLOTS = [*HEADER_FIELDS, *(f"claim:{n}" for n in CLAIM_FIELDS), "extra-claim",
         "header-body", "header-encoding", "payload-body", "payload-encoding", "signature",
         "signature-encoding"]


@st.composite
def tokens(draw: st.DrawFn, algorithm: str, sign: Callable[[bytes, str], bytes],
           kid: str | None) -> str:
    """A valid token with up to four things about it changed (none: a valid token)."""
    changed = set(draw(st.lists(st.sampled_from(SLOTS), max_size=4, unique=True)))
    header, claims = _defaults(algorithm, kid)
    for name, strategy in HEADER_FIELDS.items():
        if name in changed:
            header[name] = draw(strategy)
    for name, strategy in CLAIM_FIELDS.items():
        if f"claim:{name}" in changed:
            claims[name] = draw(strategy)
    now = int(time.time())
    iat = _resolve("iat", claims["iat"], now, None, kid)
    header_pairs = [(k, _resolve(k, v, now, iat, kid)) for k, v in header.items() if v is not _ABSENT]
    claim_pairs = [(k, iat if k == "iat" else _resolve(k, v, now, iat, kid))
                   for k, v in claims.items() if v is not _ABSENT]
    if "extra-claim" in changed:
        claim_pairs.append((draw(st.sampled_from(["zz", "x-custom", "nested"])),
                            draw(st.sampled_from([1, "a", None, {"a": [1]}, "x" * 6200]))))
    dup_header = draw(st.sampled_from([("alg", "none"), ("typ", "JWT"), ("alg", algorithm),
                                       ("crit", ["exp"])]))
    dup_claim = draw(st.sampled_from([("aud", "other"), ("exp", now - 3600), ("sub", 1),
                                      ("iss", ISSUER)]))

    def pick(slot: str, strategy: st.SearchStrategy[str], default: str) -> str:
        return draw(strategy) if slot in changed else default

    h64 = _encode(_body(header_pairs, pick("header-body", _BODIES, "json"), dup_header),
                  pick("header-encoding", _ENCODINGS, "plain"))
    p64 = _encode(_body(claim_pairs, pick("payload-body", _BODIES, "json"), dup_claim),
                  pick("payload-encoding", _ENCODINGS, "plain"))
    signing_input = f"{h64}.{p64}"
    signature = sign(signing_input.encode(), pick("signature", st.sampled_from(
        ["valid", "wrong-key", "flipped", "truncated", "extended"]), "valid"))
    return f"{signing_input}.{_encode(signature, pick('signature-encoding', _ENCODINGS, 'plain'))}"


def _mangle(good: bytes, how: str, wrong: bytes) -> bytes:
    if how == "wrong-key":
        return wrong
    if how == "flipped":
        return bytes([good[0] ^ 1]) + good[1:]
    if how == "truncated":
        return good[:-1]
    if how == "extended":
        return good + b"\0"
    return good


def hs256_signer(data: bytes, how: str) -> bytes:
    good = hmac.digest(JWT_SECRET.encode(), data, hashlib.sha256)
    return _mangle(good, how, hmac.digest(b"another-secret-of-thirty-two-bytes!", data, "sha256"))


def agree(verifier: AccessTokens, token: str, algorithm: str, key: Any,
          kid: str | None = None) -> bool:
    """Both verdicts inside one wall-clock second (time claims are whole seconds), then equal;
    returns the verdict."""
    while True:
        second = int(time.time())
        ours = ours_accepts(verifier, token)
        oracle = contract_accepts(token, algorithm, key, kid)
        if int(time.time()) == second:
            break
    assert ours == oracle, (f"ours {'accepts' if ours else 'refuses'}, the contract "
                            f"{'accepts' if oracle else 'refuses'}: {token!r}")
    return ours


# -- the tests --------------------------------------------------------------------------------

HS256 = AccessTokens(keys=KeyRing("HS256", secret=JWT_SECRET), issuer=ISSUER, audience=AUDIENCE,
                     ttl=900)


def test_hs256_verifier_accepts_exactly_what_pyjwt_and_the_contract_accept() -> None:
    """Every generated HS256 token, valid or mangled, gets the same verdict from our verifier as
    from PyJWT plus the contract's stricter rules; a good share of them are accepted."""
    verdicts: list[bool] = []

    @DIFFERENTIAL
    @given(token=tokens("HS256", hs256_signer, None))
    @example(token="e30.e30.e30")
    def compare(token: str) -> None:
        verdicts.append(agree(HS256, token, "HS256", JWT_SECRET))

    compare()
    assert 0.1 < sum(verdicts) / len(verdicts) < 0.9, sum(verdicts) / len(verdicts)


@pytest.fixture(scope="module")
def eddsa(tmp_path_factory: pytest.TempPathFactory) -> tuple[AccessTokens, Ed25519PrivateKey, str]:
    keys_dir: Path = tmp_path_factory.mktemp("keys")
    write_new_key(keys_dir)
    ring = KeyRing("EdDSA", keys_dir=keys_dir)
    kid, private = ring.signing_key()
    assert kid is not None
    return AccessTokens(keys=ring, issuer=ISSUER, audience=AUDIENCE, ttl=900), private, kid


_OTHER_ED25519 = Ed25519PrivateKey.generate()


@settings(DIFFERENTIAL, max_examples=500)
@given(data=st.data())
def test_eddsa_verifier_accepts_exactly_what_pyjwt_and_the_contract_accept(
    eddsa: tuple[AccessTokens, Ed25519PrivateKey, str], data: st.DataObject
) -> None:
    """The same comparison under EdDSA with a kid-selected Ed25519 key."""
    verifier, private, kid = eddsa

    def sign(signing_input: bytes, how: str) -> bytes:
        return _mangle(private.sign(signing_input), how, _OTHER_ED25519.sign(signing_input))

    token = data.draw(tokens("EdDSA", sign, kid))
    agree(verifier, token, "EdDSA", private.public_key(), kid)
