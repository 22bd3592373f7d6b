"""Server-side keys derived from ENCRYPTION_KEY, and symmetric encryption at rest.

Each purpose gets its own HMAC-derived key so that a value made for one
purpose (a refresh-token hash, a CSRF token, a successor secret) can never be
replayed as another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class ServerKeys:
    def __init__(self, encryption_key: str) -> None:
        self._root = encryption_key.encode()
        self.refresh_hash = self._derive("refresh-hash")
        self.refresh_successor = self._derive("refresh-successor")
        self.csrf = self._derive("csrf")
        self.api_key_hash = self._derive("api-key-hash")
        self.device = self._derive("device-cookie")
        self.mfa_recovery = self._derive("mfa-recovery-code")
        self.phone_code = self._derive("phone-code")
        self._aead_key = self._derive("aead")

    @cached_property
    def _aead(self) -> AESGCM:
        """AES-GCM for values stored encrypted (TOTP secrets, API keys' signing secrets),
        made at the first of them: a worker that never meets one never loads cryptography
        (~8 MB of its RSS, bench/RESULTS.md)."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        return AESGCM(self._aead_key)

    def _derive(self, purpose: str) -> bytes:
        return hmac.new(self._root, b"gatehouse:" + purpose.encode(), hashlib.sha256).digest()

    @staticmethod
    def mac(key: bytes, message: str) -> str:
        return hmac.digest(key, message.encode(), "sha256").hex()  # one C call, no HMAC object

    def encrypt(self, plaintext: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), b"gatehouse")
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def decrypt(self, token: str) -> str:
        raw = base64.urlsafe_b64decode(token.encode())
        return self._aead.decrypt(raw[:12], raw[12:], b"gatehouse").decode()
