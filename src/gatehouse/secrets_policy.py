"""When a secret looks typed by a person rather than generated: one judgement for
`gatehouse doctor` (a failed check) and `gatehouse serve` (a refusal outside --dev)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gatehouse.settings import Settings


def weakness(raw: str) -> str | None:
    """Why a secret does not look random (a pattern a person typed), or None."""
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
