"""A public key is never an HMAC secret (the JWT algorithm-confusion attack).

PyJWT refuses a PEM block or an SSH key as an HS256 secret at every signature. Gatehouse
refuses it once, when the key ring is made and when `serve` and `doctor` judge the secrets
(secrets_policy.is_asymmetric_key), so that signing needs neither PyJWT's algorithms nor the
cryptography package they import. Its rule must refuse at least what PyJWT refuses.
"""

from __future__ import annotations

import secrets

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st
from jwt.algorithms import HMACAlgorithm
from jwt.exceptions import InvalidKeyError

from gatehouse.auth.jwks import KeyRing, KeyRingError
from gatehouse.secrets_policy import is_asymmetric_key, weakness

PYJWT_HS256 = HMACAlgorithm(HMACAlgorithm.SHA256)


def pyjwt_refuses(secret: str | bytes) -> bool:
    try:
        PYJWT_HS256.prepare_key(secret)
    except InvalidKeyError:
        return True
    return False


def refused_here(secret: str) -> bool:
    try:
        KeyRing("HS256", secret=secret)
    except KeyRingError:
        return True
    return False


PRIVATE_KEYS = {
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "ec-p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "rsa-2048": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
}
FORMATS = {
    "pem": (Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
    "ssh": (Encoding.OpenSSH, PublicFormat.OpenSSH),
    "der": (Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
}


# The keys are made in the test, not at collection: each xdist worker must collect the same ids.
@pytest.mark.parametrize("kind", sorted(PRIVATE_KEYS))
@pytest.mark.parametrize("form", sorted(FORMATS))
def test_a_public_key_is_refused_as_jwt_secret_by_pyjwt_the_key_ring_and_serve(
    kind: str, form: str,
) -> None:
    encoded = PRIVATE_KEYS[kind]().public_key().public_bytes(*FORMATS[form])
    key: str | bytes = encoded if form == "der" else encoded.decode()
    assert pyjwt_refuses(key)
    assert is_asymmetric_key(key)
    text = key.decode("latin-1") if isinstance(key, bytes) else key  # DER as an env var holds it
    with pytest.raises(KeyRingError, match="PEM or SSH key"):
        KeyRing("HS256", secret=text)
    assert weakness(text) == "a PEM or SSH key, not a random secret"


FRAGMENTS = ["-----BEGIN PUBLIC KEY-----", "-----END PUBLIC KEY-----", "---- BEGIN SSH2 PUBLIC KEY ----",
             "---- END SSH2 PUBLIC KEY ----", "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----",
             "-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----", "BEGIN", "END",
             "ssh-rsa ", "ssh-ed25519 ", "ecdsa-sha2-nistp384 ", "----", "-", " ", "\n", "MCowBQYDK2VwAyEA",
             "0*0\x05\x06\x03+ep\x03!\x00", "A" * 32]  # the last two: an Ed25519 key in DER


@given(st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=8))
def test_every_secret_pyjwt_refuses_is_refused_here(parts: list[str]) -> None:
    secret = "".join(parts)
    if pyjwt_refuses(secret):
        assert refused_here(secret), repr(secret)


@given(st.integers(min_value=24, max_value=96))
def test_generated_secrets_are_accepted(size: int) -> None:
    """What `gatehouse keys generate` prints (token_urlsafe) is never taken for a key."""
    secret = secrets.token_urlsafe(size)
    assert not is_asymmetric_key(secret)
    KeyRing("HS256", secret=secret)
