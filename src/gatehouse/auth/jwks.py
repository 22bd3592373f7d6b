"""Signing keys: HS256 with JWT_SECRET, or Ed25519 keys in JWT_KEYS_DIR (RFC 8037), with a JWKS.

Under EdDSA every `*.pem` in the directory verifies and the last by file name
signs; `gatehouse keys rotate` adds `<UTC timestamp>.pem`, so old keys keep
verifying until their tokens expire. `kid` is the RFC 7638 thumbprint of the
public key. The directory is re-read when an unknown `kid` arrives (at once if the
directory changed since the last read, else at most every few seconds) and
periodically for signing, so a rotation done on one instance reaches the others
without a restart, and a token signed with a key added moments ago (a rolling
deploy after `keys rotate`) validates everywhere at once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gatehouse.secrets_policy import is_asymmetric_key
from gatehouse.settings import SettingsError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

# cryptography (~8 MB of a worker's RSS, bench/RESULTS.md) is imported where Ed25519 keys are
# read or made: a worker signing with JWT_SECRET (HS256) never loads it for its tokens.

RELOAD_INTERVAL = 5.0


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2), as JWS segments and JWK members are written."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def ed25519_jwk(public: Ed25519PublicKey) -> dict[str, str]:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    x = b64url(public.public_bytes(Encoding.Raw, PublicFormat.Raw))
    return {"crv": "Ed25519", "kty": "OKP", "x": x}


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 §3: SHA-256 of the required members, sorted, no whitespace."""
    canonical = json.dumps(jwk, sort_keys=True, separators=(",", ":")).encode()
    return b64url(hashlib.sha256(canonical).digest())


class KeyRingError(SettingsError):
    """Unusable signing keys: reported like any other configuration problem."""

    def __init__(self, message: str) -> None:
        super().__init__([message])


class KeyRing:
    """The keys one algorithm signs and verifies with."""

    def __init__(self, algorithm: str, *, secret: str | None = None, keys_dir: Path | None = None):
        self.algorithm = algorithm
        self._secret = secret
        self._dir = keys_dir
        self._private: dict[str, Ed25519PrivateKey] = {}
        self._public: dict[str, Ed25519PublicKey] = {}
        self._signing_kid: str | None = None
        self._loaded_at = 0.0
        self._dir_mtime: int | None = None
        if algorithm == "HS256":
            if not secret:
                raise KeyRingError("JWT_SECRET: required when JWT_ALGORITHM=HS256")
            if is_asymmetric_key(secret):  # checked once here, not at every signature
                raise KeyRingError("JWT_SECRET: a PEM or SSH key is not an HMAC secret; use the "
                                   "JWT_SECRET= line of `gatehouse keys generate`")
        elif algorithm == "EdDSA":
            self._load()
            if self._signing_kid is None:
                raise KeyRingError(
                    f"JWT_KEYS_DIR: no Ed25519 *.pem keys in {keys_dir} (run `gatehouse keys rotate`)"
                )
        else:
            raise KeyRingError(f"JWT_ALGORITHM: unsupported algorithm {algorithm}")

    def _load(self) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        assert self._dir is not None
        private: dict[str, Ed25519PrivateKey] = {}
        signing = None
        try:
            mtime = self._dir.stat().st_mtime_ns
            files = sorted(self._dir.glob("*.pem"))
        except OSError as exc:
            raise KeyRingError(f"JWT_KEYS_DIR: cannot read {self._dir}: {exc.strerror}") from None
        for path in files:
            try:
                key = load_pem_private_key(path.read_bytes(), password=None)
            except (OSError, ValueError, TypeError):
                raise KeyRingError(f"JWT_KEYS_DIR: {path.name} is not a PEM private key") from None
            if not isinstance(key, Ed25519PrivateKey):
                raise KeyRingError(f"JWT_KEYS_DIR: {path.name} is not an Ed25519 key")
            kid = thumbprint(ed25519_jwk(key.public_key()))
            private[kid] = key
            signing = kid
        self._private = private
        self._public = {kid: k.public_key() for kid, k in private.items()}
        self._signing_kid = signing
        self._loaded_at = time.monotonic()
        self._dir_mtime = mtime

    def _stat_mtime(self) -> int | None:
        try:
            return self._dir.stat().st_mtime_ns if self._dir is not None else None
        except OSError:
            return None

    def _dir_changed(self) -> bool:
        """A key file was added or removed since the last read (one stat, no file reads)."""
        mtime = self._stat_mtime()
        return mtime is not None and mtime != self._dir_mtime

    def _maybe_reload(self, *, force: bool = False) -> None:
        if self._dir is not None and (
            force or time.monotonic() - self._loaded_at > RELOAD_INTERVAL
        ):
            try:
                self._load()
            except KeyRingError:
                self._loaded_at = time.monotonic()  # keep the keys we have; doctor reports it
                self._dir_mtime = self._stat_mtime()  # and retry on the interval, not per kid

    def signing_key(self) -> tuple[str | None, Any]:
        if self.algorithm == "HS256":
            return None, self._secret
        self._maybe_reload()
        assert self._signing_kid is not None
        return self._signing_kid, self._private[self._signing_kid]

    def verification_key(self, kid: str | None) -> Any:
        if self.algorithm == "HS256":
            return self._secret if kid is None else None
        if kid is None:
            return None
        key = self._public.get(kid)
        if key is None:
            # Unknown kids cost one stat each; the files are re-read only when it moved.
            self._maybe_reload(force=self._dir_changed())
            key = self._public.get(kid)
        return key

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        if self.algorithm == "HS256":
            return {"keys": []}
        self._maybe_reload()
        return {
            "keys": [
                {**ed25519_jwk(pub), "kid": kid, "alg": "EdDSA", "use": "sig"}
                for kid, pub in self._public.items()
            ]
        }


def write_new_key(keys_dir: Path) -> Path:
    """Create `<UTC timestamp>.pem` (mode 0600) holding a fresh Ed25519 key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    keys_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = keys_dir / f"{stamp}.pem"
    pem = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return path
