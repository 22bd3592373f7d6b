"""Email normalisation (API.md §1): NFKC, then lower-case, at every entry point."""

from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError, validate_email

from gatehouse.errors import ValidationFailed


def normalize_email(email: str) -> str:
    return unicodedata.normalize("NFKC", email).strip().lower()


def audit_email(email: str) -> dict[str, object]:
    """The login identifier as the audit log may keep it: a well-formed address, or a marker.

    People type passwords into the email field; the audit log must not keep them, so
    anything that is not an address is recorded only as `email_malformed: true`.
    """
    normalized = normalize_email(email)
    try:
        validate_email(normalized, check_deliverability=False, globally_deliverable=False)
    except EmailNotValidError:
        return {"email_malformed": True}
    return {"email": normalized} if len(normalized) <= 320 else {"email_malformed": True}


def checked_email(email: str, field: str = "email") -> str:
    """Normalise and check the syntax; raise ValidationFailed (never echoing the value)."""
    normalized = normalize_email(email)
    try:
        validate_email(normalized, check_deliverability=False, globally_deliverable=False)
    except EmailNotValidError:
        raise ValidationFailed(
            "email is not a valid address.", [{"loc": ["body", field], "msg": "Not a valid email address."}]
        ) from None
    if len(normalized) > 320:
        raise ValidationFailed("email is too long.", [{"loc": ["body", field], "msg": "Too long."}])
    return normalized
