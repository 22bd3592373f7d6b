"""Access tokens (API.md §3): claims, EdDSA keys and JWKS, rotation, and JWT attacks (RFC 8725)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatehouse.auth import jwks as jwks_module
from gatehouse.auth.jwks import write_new_key
from gatehouse.context import Context
from gatehouse.errors import TokenInvalid
from tests.conftest import JWT_SECRET, asgi_client, bearer, create_user, login, run_cli

VALIDATE = "/api/v1/auth/validate"
ISSUER = "http://127.0.0.1:8000"
FUZZ = settings(max_examples=200, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


# -- helpers ------------------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _segments(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return (_b64(json.dumps(header, separators=(",", ":")).encode()) + "."
            + _b64(json.dumps(claims, separators=(",", ":")).encode()))


def sign_hs256(claims: dict[str, Any], header: dict[str, Any] | None = None,
               secret: bytes = JWT_SECRET.encode()) -> str:
    """A JWT signed by hand (no library guards), so any header or claim can be forged."""
    signing_input = _segments(header or {"alg": "HS256", "typ": "at+jwt"}, claims)
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def sign_eddsa(claims: dict[str, Any], key: Ed25519PrivateKey, header: dict[str, Any]) -> str:
    signing_input = _segments(header, claims)
    return f"{signing_input}.{_b64(key.sign(signing_input.encode()))}"


def claims_of(token: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(_unb64(token.split(".")[1]))
    return value


def header_of(token: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(_unb64(token.split(".")[0]))
    return value


def rfc7638_thumbprint(public_raw: bytes) -> str:
    """RFC 7638 §3.2 for an OKP key: required members crv, kty, x in order, no whitespace."""
    canonical = f'{{"crv":"Ed25519","kty":"OKP","x":"{_b64(public_raw)}"}}'
    return _b64(hashlib.sha256(canonical.encode()).digest())


def valid_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER, "aud": "gatehouse", "sub": str(uuid.uuid4()), "sid": str(uuid.uuid4()),
        "roles": ["user"], "iat": now, "exp": now + 600, "jti": str(uuid.uuid4()),
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not _DROP}


_DROP = object()


async def answer(client: httpx.AsyncClient, token: str, path: str = VALIDATE) -> tuple[int, str]:
    r = await client.get(path, headers={"Authorization": f"Bearer {token}"})
    code = r.json().get("code", "") if r.status_code >= 400 else ""
    return r.status_code, code


async def assert_invalid(client: httpx.AsyncClient, token: str) -> None:
    r = await client.get(VALIDATE, headers={"Authorization": f"Bearer {token}"})
    assert (r.status_code, r.json()["code"]) == (401, "token_invalid")
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    if len(token) > 20:
        assert token not in r.text


# -- HS256 (default) ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_access_token_header_and_claims_follow_the_contract(
    client: httpx.AsyncClient, alice: Any
) -> None:
    """The access token is an HS256 `at+jwt` with exactly iss/aud/sub/sid/roles/iat/exp/jti of the
    right types.
    """
    tokens = await login(client)
    token = tokens["access_token"]
    assert header_of(token) == {"alg": "HS256", "typ": "at+jwt"}
    claims = claims_of(token)
    assert sorted(claims) == sorted(["iss", "aud", "sub", "sid", "roles", "iat", "exp", "jti"])
    assert (claims["iss"], claims["aud"], claims["sub"], claims["sid"], claims["roles"]) == (
        ISSUER, "gatehouse", alice.id, tokens["session_id"], ["user"])
    assert [type(claims[k]) for k in ("iat", "exp", "jti")] == [int, int, str]
    assert claims["exp"] - claims["iat"] == 900
    assert abs(claims["iat"] - time.time()) < 60
    assert 890 <= tokens["expires_in"] <= 900
    assert tokens["token_type"] == "Bearer"
    # A standard library verifying with the documented settings accepts it.
    decoded = jwt.decode(token, JWT_SECRET, algorithms=["HS256"], audience="gatehouse",
                         issuer=ISSUER)
    assert decoded["sub"] == alice.id
    # Byte for byte what PyJWT writes for the same claims (the JWS is built without it).
    assert jwt.encode(claims, JWT_SECRET, algorithm="HS256", headers={"typ": "at+jwt"}) == token


@pytest.mark.asyncio
async def test_each_access_token_has_a_unique_jti(client: httpx.AsyncClient, alice: Any) -> None:
    """Two logins never share a jti or a session id."""
    first, second = await login(client), await login(client)
    assert claims_of(first["access_token"])["jti"] != claims_of(second["access_token"])["jti"]
    assert first["session_id"] != second["session_id"]


@pytest.mark.asyncio
async def test_issuer_audience_and_ttl_come_from_settings(make_app: Callable[..., Any]) -> None:
    """JWT_ISSUER, JWT_AUDIENCE and ACCESS_TOKEN_TTL shape the token; the app verifies its own
    tokens.
    """
    app = make_app(JWT_ISSUER="https://issuer.example", JWT_AUDIENCE="billing",
                   ACCESS_TOKEN_TTL=120)
    await create_user(app.state.ctx)
    async with asgi_client(app) as client:
        tokens = await login(client)
        claims = claims_of(tokens["access_token"])
        assert (claims["iss"], claims["aud"], claims["exp"] - claims["iat"]) == (
            "https://issuer.example", "billing", 120)
        assert (await answer(client, tokens["access_token"]))[0] == 200
        # A token with the default audience is not one of this deployment's tokens.
        await assert_invalid(client, sign_hs256(valid_claims(iss="https://issuer.example")))


@pytest.mark.asyncio
async def test_jwks_is_empty_under_hs256(client: httpx.AsyncClient) -> None:
    """With a shared secret there is no public key to publish."""
    r = await client.get("/.well-known/jwks.json")
    assert (r.status_code, r.json()) == (200, {"keys": []})


@pytest.mark.asyncio
async def test_hand_signed_valid_token_is_accepted(client: httpx.AsyncClient) -> None:
    """The forging helper itself makes tokens the server accepts, so rejections below are
    meaningful.
    """
    claims = valid_claims(roles=["support"])
    r = await client.get(VALIDATE, headers={"Authorization": f"Bearer {sign_hs256(claims)}"})
    assert r.status_code == 200
    assert (r.json()["user_id"], r.json()["roles"]) == (claims["sub"], ["support"])


# -- attacks, one per test ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_alg_none_token_is_invalid(client: httpx.AsyncClient) -> None:
    """An unsigned `alg: none` token is refused, with or without a trailing signature segment."""
    unsigned = _segments({"alg": "none", "typ": "at+jwt"}, valid_claims())
    await assert_invalid(client, unsigned + ".")
    await assert_invalid(client, unsigned + "." + _b64(b"x"))
    upper = _segments({"alg": "None", "typ": "at+jwt"}, valid_claims())
    await assert_invalid(client, upper + ".")


@pytest.mark.asyncio
async def test_token_signed_with_another_secret_is_invalid(client: httpx.AsyncClient) -> None:
    """A correctly shaped token whose HMAC uses a different secret is refused."""
    await assert_invalid(client, sign_hs256(valid_claims(), secret=b"another-secret-" * 4))


@pytest.mark.asyncio
async def test_forged_signature_is_invalid(client: httpx.AsyncClient, alice: Any) -> None:
    """Replacing the signature of a real token with other bytes is refused."""
    token = (await login(client))["access_token"]
    head, payload, signature = token.split(".")
    await assert_invalid(client, f"{head}.{payload}.{_b64(bytes(32))}")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    await assert_invalid(client, f"{head}.{payload}.{flipped}")


@pytest.mark.asyncio
async def test_tampered_claims_are_invalid(client: httpx.AsyncClient, alice: Any) -> None:
    """Raising one's roles in a real token's payload breaks the signature: 401, not admin access."""
    token = (await login(client))["access_token"]
    head, _, signature = token.split(".")
    claims = claims_of(token)
    claims["roles"] = ["admin"]
    tampered = f"{head}.{_b64(json.dumps(claims).encode())}.{signature}"
    await assert_invalid(client, tampered)
    r = await client.get("/api/v1/admin/users", headers={"Authorization": f"Bearer {tampered}"})
    assert (r.status_code, r.json()["code"]) == (401, "token_invalid")


@pytest.mark.asyncio
async def test_expired_token_answers_token_expired(client: httpx.AsyncClient) -> None:
    """A token past exp by more than the 30 s leeway is token_expired (refresh, then retry)."""
    now = int(time.time())
    r = await client.get(VALIDATE, headers={
        "Authorization": f"Bearer {sign_hs256(valid_claims(iat=now - 1000, exp=now - 60))}"})
    assert (r.status_code, r.json()["code"]) == (401, "token_expired")
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'


@pytest.mark.asyncio
async def test_token_expired_within_clock_skew_is_accepted(client: httpx.AsyncClient) -> None:
    """30 s of clock skew is tolerated: a token expired 10 s ago still validates."""
    now = int(time.time())
    assert (await answer(client, sign_hs256(valid_claims(iat=now - 900, exp=now - 10))))[0] == 200


@pytest.mark.asyncio
@pytest.mark.parametrize("claim", ["nbf", "iat"])
async def test_token_not_yet_valid_beyond_leeway_is_invalid(
    client: httpx.AsyncClient, claim: str
) -> None:
    """nbf or iat more than 30 s in the future is refused; 10 s in the future is within skew."""
    now = int(time.time())
    future = valid_claims(**{claim: now + 120}, exp=now + 900)
    await assert_invalid(client, sign_hs256(future))
    near = valid_claims(**{claim: now + 10}, exp=now + 900)
    assert (await answer(client, sign_hs256(near)))[0] == 200


@pytest.mark.asyncio
async def test_wrong_issuer_is_invalid(client: httpx.AsyncClient) -> None:
    """A token issued by someone else (even with our secret) is refused."""
    await assert_invalid(client, sign_hs256(valid_claims(iss="https://evil.example")))
    await assert_invalid(client, sign_hs256(valid_claims(iss=_DROP)))


@pytest.mark.asyncio
async def test_wrong_audience_is_invalid(client: httpx.AsyncClient) -> None:
    """A token for another audience is refused."""
    await assert_invalid(client, sign_hs256(valid_claims(aud="other-service")))
    await assert_invalid(client, sign_hs256(valid_claims(aud=_DROP)))


@pytest.mark.asyncio
async def test_audience_as_list_is_invalid(client: httpx.AsyncClient) -> None:
    """`aud` must be a string: a list, even one containing our audience, is refused."""
    await assert_invalid(client, sign_hs256(valid_claims(aud=["gatehouse"])))
    await assert_invalid(client, sign_hs256(valid_claims(aud=["gatehouse", "other"])))


@pytest.mark.asyncio
@pytest.mark.parametrize("token", [
    "", "abc", "a.b", "a.b.c.d", "..", "a..c", ".b.c", "a.b.",
    "!!!.???.***", "eyJ.eyJ.sig", "W10.W10.W10",  # header and payload are JSON arrays
    "e30.e30.e30",  # empty objects
    "eyJhbGciOiJIUzI1NiJ9.bm90LWpzb24.c2ln",  # payload is not JSON
    "a" * 9000,
], ids=lambda t: t[:20] or "empty")
async def test_malformed_token_is_invalid(client: httpx.AsyncClient, token: str) -> None:
    """Anything that is not three base64url JSON segments is token_invalid, never 500."""
    r = await client.get(VALIDATE, headers={"Authorization": f"Bearer {token}".strip()})
    assert (r.status_code, r.json()["code"]) == (401, "token_invalid")


@pytest.mark.asyncio
async def test_deeply_nested_json_segments_are_invalid(client: httpx.AsyncClient) -> None:
    """A header (unsigned) or payload (signed) nested thousands of levels deep is token_invalid."""
    nested = _b64(b"[" * 5000)
    await assert_invalid(client, f"{nested}.{nested}.{_b64(b'x' * 32)}")
    header = _b64(json.dumps({"alg": "HS256", "typ": "at+jwt"}).encode())
    signing_input = f"{header}.{nested}"
    mac = hmac.new(JWT_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    await assert_invalid(client, f"{signing_input}.{_b64(mac)}")


@pytest.mark.asyncio
async def test_non_bearer_authorization_scheme_is_invalid(client: httpx.AsyncClient) -> None:
    """`Authorization: Basic ...` is not a way to send an access token."""
    r = await client.get(VALIDATE, headers={"Authorization": "Basic YWxpY2U6cHc="})
    assert (r.status_code, r.json()["code"]) == (401, "token_invalid")


@pytest.mark.asyncio
async def test_token_without_exp_is_invalid(client: httpx.AsyncClient) -> None:
    """A token that never expires is not an access token."""
    await assert_invalid(client, sign_hs256(valid_claims(exp=_DROP)))


@pytest.mark.asyncio
@pytest.mark.parametrize("exp", ["future-float", "future-string", "past-string", "past-float",
                                 "true", "null", "list", "huge", "not-after-iat"])
async def test_exp_of_the_wrong_type_is_invalid(client: httpx.AsyncClient, exp: str) -> None:
    """exp must be an integer: floats, strings, booleans and absurd values are token_invalid, even
    when past.
    """
    now = int(time.time())
    value = {"future-float": now + 600.5, "future-string": str(now + 600),
             "past-string": str(now - 3600), "past-float": now - 3600.5, "true": True,
             "null": None, "list": [now + 600], "huge": 10**20, "not-after-iat": now}[exp]
    await assert_invalid(client, sign_hs256(valid_claims(exp=value)))


@pytest.mark.asyncio
@pytest.mark.parametrize(("claim", "value"), [
    ("roles", "admin"), ("roles", {"admin": True}), ("roles", [1]), ("roles", None),
    ("roles", _DROP), ("iat", "now"), ("iat", 1.5), ("iat", _DROP), ("sub", 42), ("sub", ""),
    ("sid", None), ("sid", _DROP), ("jti", 7), ("jti", _DROP), ("nbf", "0"),
], ids=lambda v: repr(v)[:16])
async def test_claim_of_the_wrong_type_is_invalid(
    client: httpx.AsyncClient, claim: str, value: Any
) -> None:
    """Every claim has a type; roles not a list (or any other mistyped claim) is token_invalid."""
    await assert_invalid(client, sign_hs256(valid_claims(**{claim: value})))


@pytest.mark.asyncio
@pytest.mark.parametrize("typ", [None, "JWT", "at+JWT ", "refresh+jwt"])
async def test_other_jwt_types_are_invalid(client: httpx.AsyncClient, typ: str | None) -> None:
    """Only `typ: at+jwt` is an access token (RFC 8725 §3.11): ID tokens and others are refused."""
    header: dict[str, Any] = {"alg": "HS256"} if typ is None else {"alg": "HS256", "typ": typ}
    await assert_invalid(client, sign_hs256(valid_claims(), header=header))


@pytest.mark.asyncio
@pytest.mark.parametrize("typ", ["application/at+jwt", "AT+JWT", "Application/AT+JWT"])
async def test_rfc9068_media_type_forms_of_typ_are_accepted(
    client: httpx.AsyncClient, typ: str
) -> None:
    """`typ` `application/at+jwt` is accepted as RFC 9068 §2.1 allows, case-insensitively."""
    header = {"alg": "HS256", "typ": typ}
    assert (await answer(client, sign_hs256(valid_claims(), header=header)))[0] == 200


@pytest.mark.asyncio
@pytest.mark.parametrize("typ", ["application/jwt", "application/at+jwt ", "text/at+jwt",
                                 "application/AT+JWT;x=1"])
async def test_other_media_types_are_invalid(client: httpx.AsyncClient, typ: str) -> None:
    """Only the two RFC 9068 spellings count; other media types and near misses are refused."""
    await assert_invalid(client, sign_hs256(valid_claims(), header={"alg": "HS256", "typ": typ}))


@pytest.mark.asyncio
@pytest.mark.parametrize("crit", [["exp"], ["b64"], ["x-custom"], [], "exp", None, [1], {}])
async def test_token_with_a_crit_header_is_invalid(client: httpx.AsyncClient, crit: Any) -> None:
    """A correctly signed token declaring critical extensions (RFC 7515 §4.1.11), well formed
    or not, is token_invalid: we understand none.
    """
    header = {"alg": "HS256", "typ": "at+jwt", "crit": crit, "exp": 1, "b64": True, "x-custom": 1}
    await assert_invalid(client, sign_hs256(valid_claims(), header=header))


@pytest.mark.asyncio
async def test_unencoded_payload_header_is_invalid(client: httpx.AsyncClient) -> None:
    """RFC 7797's `b64: false` (an unencoded payload: the same bytes mean another payload) is
    refused even without `crit`, as PyJWT refuses it; `b64: true` changes nothing."""
    await assert_invalid(client, sign_hs256(valid_claims(),
                                            header={"alg": "HS256", "typ": "at+jwt", "b64": False}))
    token = sign_hs256(valid_claims(), header={"alg": "HS256", "typ": "at+jwt", "b64": True})
    assert (await answer(client, token))[0] == 200


@pytest.mark.asyncio
async def test_null_kid_is_invalid(client: httpx.AsyncClient) -> None:
    """`"kid": null` is a malformed header, not an absent kid (PyJWT refuses it too)."""
    header = {"alg": "HS256", "typ": "at+jwt", "kid": None}
    await assert_invalid(client, sign_hs256(valid_claims(), header=header))


@pytest.mark.asyncio
async def test_non_canonical_base64url_is_invalid(client: httpx.AsyncClient) -> None:
    """A segment whose last character carries non-zero unused bits is refused: only the
    canonical encoding of the signed bytes is the token (RFC 4648 §3.5).
    """
    token = sign_hs256(valid_claims())
    h64, p64, s64 = token.split(".")
    assert len(s64) % 4 == 3  # 32 bytes: the last character has two unused bits
    twin = _B64_CHARS[_B64_CHARS.index(s64[-1]) + 1]
    assert _unb64(s64[:-1] + twin) == _unb64(s64)  # same bytes, different text
    assert (await answer(client, token))[0] == 200
    await assert_invalid(client, f"{h64}.{p64}.{s64[:-1]}{twin}")


@pytest.mark.asyncio
async def test_hs256_token_with_kid_is_invalid(client: httpx.AsyncClient) -> None:
    """Under HS256 a `kid` (such as a path) selects nothing: the token is refused."""
    header = {"alg": "HS256", "typ": "at+jwt", "kid": "../../etc/passwd"}
    await assert_invalid(client, sign_hs256(valid_claims(), header=header))


@pytest.mark.asyncio
async def test_refresh_token_presented_as_access_token_is_invalid(
    client: httpx.AsyncClient, alice: Any
) -> None:
    """A refresh token in the Authorization header or the gh_access cookie is token_invalid."""
    tokens = await login(client)
    await assert_invalid(client, tokens["refresh_token"])
    r = await client.get(VALIDATE, headers={"Cookie": f"gh_access={tokens['refresh_token']}"})
    assert (r.status_code, r.json()["code"]) == (401, "token_invalid")


@pytest.mark.asyncio
async def test_api_key_presented_as_access_token_is_invalid(
    ctx: Context, client: httpx.AsyncClient, admin: Any
) -> None:
    """An API key is never parsed as an access token: in gh_access it is token_invalid."""
    admin_tokens = await login(client, "root@example.com")
    created = await client.post("/api/v1/admin/api-keys", headers=bearer(admin_tokens),
                                json={"name": "ci", "scopes": ["users:read"]})
    assert created.status_code == 201
    key = created.json()["key"]
    with pytest.raises(TokenInvalid):
        ctx.tokens.verify(key)
    r = await client.get(VALIDATE, headers={"Cookie": f"gh_access={key}"})
    assert (r.status_code, r.json()["code"]) == (401, "token_invalid")
    assert key not in r.text


# -- EdDSA ------------------------------------------------------------------------------------


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    path = tmp_path / "jwt-keys"
    write_new_key(path)
    return path


@pytest_asyncio.fixture
async def eddsa(make_app: Callable[..., Any], keys_dir: Path) -> Any:
    # No JWT_SECRET: under EdDSA the keys directory is the only signing material.
    app = make_app(JWT_ALGORITHM="EdDSA", JWT_KEYS_DIR=str(keys_dir), JWT_SECRET="")
    assert app.state.ctx.settings.jwt_secret is None
    await create_user(app.state.ctx)
    async with asgi_client(app) as client:
        yield app, client


def _key_files(keys_dir: Path) -> list[Path]:
    return sorted(keys_dir.glob("*.pem"))


def _load_key(path: Path) -> Ed25519PrivateKey:
    key = load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def _only_key(keys_dir: Path) -> Ed25519PrivateKey:
    (path,) = _key_files(keys_dir)
    return _load_key(path)


def _raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@pytest.mark.asyncio
async def test_eddsa_token_kid_is_the_rfc7638_thumbprint(eddsa: Any, keys_dir: Path) -> None:
    """Under EdDSA the token's kid is the RFC 7638 SHA-256 thumbprint of the signing key."""
    _, client = eddsa
    token = (await login(client))["access_token"]
    expected_kid = rfc7638_thumbprint(_raw_public(_only_key(keys_dir)))
    assert header_of(token) == {"alg": "EdDSA", "typ": "at+jwt", "kid": expected_kid}
    assert (await answer(client, token))[0] == 200
    # Byte for byte what PyJWT writes (Ed25519 signatures are deterministic).
    assert jwt.encode(claims_of(token), _only_key(keys_dir), algorithm="EdDSA",
                      headers={"typ": "at+jwt", "kid": expected_kid}) == token


@pytest.mark.asyncio
async def test_jwks_publishes_the_public_key_that_verifies_tokens(
    eddsa: Any, keys_dir: Path
) -> None:
    """/.well-known/jwks.json lists the OKP key, and a third party can verify a token with it alone.
    """
    _, client = eddsa
    token = (await login(client))["access_token"]
    r = await client.get("/.well-known/jwks.json")
    assert r.status_code == 200
    (jwk,) = r.json()["keys"]
    public_raw = _raw_public(_only_key(keys_dir))
    assert jwk == {"kty": "OKP", "crv": "Ed25519", "x": _b64(public_raw),
                   "kid": rfc7638_thumbprint(public_raw), "alg": "EdDSA", "use": "sig"}
    assert "d" not in jwk
    verifier = jwt.PyJWK(jwk)
    decoded = jwt.decode(token, verifier.key, algorithms=["EdDSA"], audience="gatehouse",
                         issuer=ISSUER)
    assert decoded["sid"] == claims_of(token)["sid"]


@pytest.mark.asyncio
async def test_keys_rotate_adds_a_key_and_old_tokens_keep_verifying(
    eddsa: Any, keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`gatehouse keys rotate` adds a key that signs new tokens; tokens of the old key still verify.
    """
    _, client = eddsa
    old_token = (await login(client))["access_token"]
    old_kid = header_of(old_token)["kid"]

    result = run_cli("keys", "rotate",
                     env={"JWT_ALGORITHM": "EdDSA", "JWT_KEYS_DIR": str(keys_dir)})
    assert result.returncode == 0, result.stderr
    assert len(_key_files(keys_dir)) == 2
    # The running app re-reads the directory after its reload interval; skip the wait.
    monkeypatch.setattr(jwks_module, "RELOAD_INTERVAL", 0.0)

    kids = [k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]]
    assert len(kids) == 2
    assert old_kid in kids
    new_token = (await login(client))["access_token"]
    new_kid = header_of(new_token)["kid"]
    newest = _load_key(_key_files(keys_dir)[-1])
    assert new_kid == rfc7638_thumbprint(_raw_public(newest))  # the last file by name signs
    assert new_kid != old_kid
    old_status, _ = await answer(client, old_token)
    new_status, _ = await answer(client, new_token)
    assert (old_status, new_status) == (200, 200)


@pytest.mark.asyncio
async def test_hs256_token_signed_with_the_eddsa_public_key_is_invalid(
    eddsa: Any, keys_dir: Path
) -> None:
    """Algorithm confusion: HMAC over the published public key (raw or PEM) does not pass as EdDSA.
    """
    _, client = eddsa
    public = _only_key(keys_dir).public_key()
    kid = rfc7638_thumbprint(_raw_public(_only_key(keys_dir)))
    for secret in (public.public_bytes(Encoding.Raw, PublicFormat.Raw),
                   public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)):
        for header in ({"alg": "HS256", "typ": "at+jwt", "kid": kid},
                       {"alg": "HS256", "typ": "at+jwt"}):
            await assert_invalid(client, sign_hs256(valid_claims(), header=header, secret=secret))


@pytest.mark.asyncio
async def test_hs256_token_with_jwt_secret_is_invalid_under_eddsa(eddsa: Any) -> None:
    """When EdDSA is configured, HS256 tokens (even signed with JWT_SECRET) are refused."""
    _, client = eddsa
    await assert_invalid(client, sign_hs256(valid_claims()))


@pytest.mark.asyncio
async def test_kid_path_traversal_is_invalid(eddsa: Any, keys_dir: Path) -> None:
    """A kid like `../../etc/passwd` is a lookup miss, never a file path: token_invalid."""
    _, client = eddsa
    key = _only_key(keys_dir)
    for kid in ("../../etc/passwd", "/etc/passwd", f"../{keys_dir.name}/x.pem", ""):
        header = {"alg": "EdDSA", "typ": "at+jwt", "kid": kid}
        await assert_invalid(client, sign_eddsa(valid_claims(), key, header))


@pytest.mark.asyncio
async def test_eddsa_token_without_kid_is_invalid(eddsa: Any, keys_dir: Path) -> None:
    """Under EdDSA a token must name its key."""
    _, client = eddsa
    await assert_invalid(client, sign_eddsa(valid_claims(), _only_key(keys_dir),
                                            {"alg": "EdDSA", "typ": "at+jwt"}))


@pytest.mark.asyncio
async def test_embedded_jwk_header_is_ignored(eddsa: Any) -> None:
    """A token signed by an attacker's key that carries that key in `jwk` is refused."""
    _, client = eddsa
    attacker = Ed25519PrivateKey.generate()
    raw = _raw_public(attacker)
    header = {"alg": "EdDSA", "typ": "at+jwt", "kid": rfc7638_thumbprint(raw),
              "jwk": {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw)}}
    await assert_invalid(client, sign_eddsa(valid_claims(roles=["admin"]), attacker, header))


@pytest.mark.asyncio
async def test_jku_and_x5u_headers_are_ignored(eddsa: Any, keys_dir: Path) -> None:
    """jku/x5u never choose the key: with an attacker's key they fail, with ours they change
    nothing.
    """
    _, client = eddsa
    attacker = Ed25519PrivateKey.generate()
    ours = _only_key(keys_dir)
    our_kid = rfc7638_thumbprint(_raw_public(ours))
    remote = {"jku": "https://evil.example/jwks.json", "x5u": "https://evil.example/cert.pem"}
    forged = {"alg": "EdDSA", "typ": "at+jwt", "kid": our_kid, **remote}
    await assert_invalid(client, sign_eddsa(valid_claims(), attacker, forged))
    genuine = sign_eddsa(valid_claims(), ours, forged)
    assert (await answer(client, genuine))[0] == 200


# -- fuzzing ----------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def fuzz_client(make_app: Callable[..., Any]) -> Any:
    app = make_app(GATEHOUSE_RATE_LIMITS="off")
    async with asgi_client(app) as client:
        yield client


_PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
_B64_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# Built at import: it must outlive a long test session, so it gets the longest allowed lifetime.
_NOW = int(time.time())
_REAL = sign_hs256(valid_claims(sub="00000000-0000-4000-8000-000000000001", iat=_NOW,
                                exp=_NOW + 86_400))


@pytest.mark.asyncio
@FUZZ
@given(raw=st.one_of(
    st.text(_PRINTABLE, max_size=300),
    st.lists(st.text(st.sampled_from(_B64_CHARS), max_size=80), min_size=1, max_size=5)
    .map(".".join),
))
async def test_random_bearer_strings_never_cause_a_server_error(
    fuzz_client: httpx.AsyncClient, raw: str
) -> None:
    """Random text as a Bearer credential is answered with 401, never a 500."""
    r = await fuzz_client.get(VALIDATE, headers={"Authorization": f"Bearer {raw}".strip()})
    assert r.status_code == 401
    assert r.json()["code"] in {"token_invalid", "token_expired", "api_key_invalid"}


@pytest.mark.asyncio
@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, len(_REAL) - 1), st.sampled_from(_B64_CHARS + ".")),
                      min_size=1, max_size=6),
       cut=st.integers(0, 8))
async def test_mutated_real_tokens_never_cause_a_server_error(
    fuzz_client: httpx.AsyncClient, edits: list[tuple[int, str]], cut: int
) -> None:
    """A real token with characters replaced or truncated is refused (401), never 500, and only
    accepted when it still decodes to exactly the signed bytes.
    """
    chars = list(_REAL)
    for index, char in edits:
        chars[index] = char
    mutated = "".join(chars)[: len(_REAL) - cut]
    status, _ = await answer(fuzz_client, mutated)
    assert status in {200, 401}
    if status == 200:
        # Segments must be canonical base64url, so only the unchanged token passes.
        assert mutated == _REAL


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                               max_size=3),
    max_leaves=6,
)


@pytest.mark.asyncio
@FUZZ
@given(overrides=st.dictionaries(
    st.sampled_from(["iss", "aud", "sub", "sid", "roles", "iat", "exp", "jti", "nbf"]),
    _JSON | st.integers(-(2**70), 2**70), max_size=4),
    header_extra=st.dictionaries(st.sampled_from(["kid", "typ", "crit", "jku", "cty"]), _JSON,
                                 max_size=2))
async def test_correctly_signed_odd_claims_never_cause_a_server_error(
    fuzz_client: httpx.AsyncClient, overrides: dict[str, Any], header_extra: dict[str, Any]
) -> None:
    """Even with a valid signature, any claim or header values are 200 or 401, never 500."""
    header = {"alg": "HS256", "typ": "at+jwt", **header_extra}
    status, code = await answer(fuzz_client, sign_hs256(valid_claims(**overrides), header=header))
    assert status in {200, 401}
    if status == 401:
        assert code in {"token_invalid", "token_expired"}


# -- issuing: PyJWT's serialisation with a key prepared once ------------------------------


@pytest.mark.parametrize("algorithm", ["HS256", "EdDSA"])
def test_issued_tokens_are_the_bytes_jwt_encode_gives(algorithm: str, tmp_path: Path) -> None:
    """The signing key is prepared once (auth/access_tokens._PreparedHMAC); the tokens are
    exactly what PyJWT's `jwt.encode` makes of the same claims, header and key, also after
    the secret changes."""
    from gatehouse.auth.access_tokens import AccessTokens
    from gatehouse.auth.jwks import KeyRing

    if algorithm == "HS256":
        rings = [KeyRing("HS256", secret=JWT_SECRET), KeyRing("HS256", secret=JWT_SECRET[::-1])]
    else:
        write_new_key(tmp_path)
        rings = [KeyRing("EdDSA", keys_dir=tmp_path)]
    for ring in rings:
        tokens = AccessTokens(keys=ring, issuer=ISSUER, audience="gatehouse", ttl=900)
        for roles in (["user"], ["admin", "support"]):
            token, _ = tokens.issue(user_id="u-1", session_id="s-1", roles=roles)
            kid, key = ring.signing_key()
            assert token == jwt.encode(claims_of(token), key, algorithm=algorithm,
                                       headers=header_of(token))
            assert tokens.verify(token).roles == roles
