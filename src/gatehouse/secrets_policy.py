"""When a secret looks typed by a person rather than generated: one judgement for
`gatehouse doctor` (a failed check) and `gatehouse serve` (a refusal outside --dev)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gatehouse.settings import Settings


# A public key used as an HMAC secret is the JWT algorithm-confusion attack. PyJWT refuses
# such secrets (PEM, SSH and DER keys and certificates); this refuses a superset of them: any PEM
# BEGIN marker, any SSH key prefix, and any control character below tab (every DER key and
# certificate has some: its tags). tests/test_secrets_policy.py checks it against PyJWT. It
# needs neither PyJWT's algorithms nor the cryptography package they load (~8 MB per worker).
_ASYMMETRIC_KEY = re.compile(
    rb"----[- ]BEGIN |\A(?:ssh-ed25519|ssh-rsa|ssh-dss|ecdsa-sha2-nistp(?:256|384|521))"
    rb"|[\x00-\x08]")


def is_asymmetric_key(raw: str | bytes) -> bool:
    """True when `raw` holds a PEM block, starts as an SSH key or could be DER: never an HMAC
    secret."""
    return _ASYMMETRIC_KEY.search(raw.encode() if isinstance(raw, str) else raw) is not None


def weakness(raw: str) -> str | None:
    """Why a secret does not look random (a pattern a person typed, a key), or None."""
    if is_asymmetric_key(raw):
        return "a PEM or SSH key, not a random secret"
    if len(set(raw)) < 8:
        return "fewer than 8 distinct characters"
    for period in range(1, min(16, len(raw) // 2) + 1):
        if raw == (raw[:period] * (len(raw) // period + 1))[:len(raw)]:
            return f"repeats a {period}-character pattern"
    return None


def weak_secrets(settings: Settings) -> list[str]:
    """One line per configured secret that `weakness` refuses, naming the variable and the rule
    (never the value)."""
    lines = []
    candidates = [("ENCRYPTION_KEY", settings.encryption_key)]
    if settings.jwt_algorithm == "HS256":
        candidates.insert(0, ("JWT_SECRET", settings.jwt_secret))
    for variable, secret in candidates:
        why = weakness(secret.get_secret_value()) if secret is not None else None
        if why is not None:
            lines.append(f"{variable} is weak ({why}): it must be random; use the {variable}= "
                         "line of `gatehouse keys generate`")
    return lines
