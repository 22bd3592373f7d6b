"""VAPID (RFC 8292) key pairs in the encoding Web Push libraries use.

Public key: unpadded base64url of the 65-byte uncompressed P-256 point.
Private key: unpadded base64url of the raw 32-byte scalar.
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def generate_vapid_pair() -> tuple[str, str]:
    """Return (public, private) as Web Push libraries expect them."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_numbers().private_value.to_bytes(32, "big")
    public = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return _b64(public), _b64(private)


def vapid_pair_matches(public: str, private: str) -> bool:
    """True when `private` is the scalar of the P-256 point `public`."""
    try:
        scalar = int.from_bytes(_unb64(private), "big")
        derived = ec.derive_private_key(scalar, ec.SECP256R1()).public_key()
        raw = derived.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return raw == _unb64(public) and len(_unb64(private)) == 32
    except (ValueError, TypeError):
        return False
