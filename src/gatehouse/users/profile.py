"""The caller's own profile (API.md §10): notification switches and phone on top of the
public record.

Phones are stored in E.164 (`+14155552671`), validated with `phonenumbers` (the data of
Google's libphonenumber), so a number SMS cannot reach is refused at the door (422).
"""

from __future__ import annotations

from typing import Any

from gatehouse.errors import ValidationFailed
from gatehouse.store.db.models import NOTIFY_DEFAULT, User
from gatehouse.users.service import public_user

CHANNELS = tuple(NOTIFY_DEFAULT)
BAD_PHONE = "Not a valid phone number; use the international form, like +14155552671."


def notify_prefs(user: User) -> dict[str, bool]:
    """The user's channel switches, every channel present (a missing one is on)."""
    stored = user.notify or {}
    return {channel: bool(stored.get(channel, True)) for channel in CHANNELS}


def own_profile(user: User) -> dict[str, Any]:
    """`GET /users/profile`: the public record plus `notify`, `phone`, `phone_verified`."""
    return {**public_user(user), "notify": notify_prefs(user), "phone": user.phone,
            "phone_verified": bool(user.phone_verified)}


def normalize_phone(raw: str) -> str:
    """`raw` in E.164, or 422 when it is not a valid number with its country code."""
    import phonenumbers  # its metadata is 1 MB a worker holds only once a phone is set

    try:
        number = phonenumbers.parse(raw.strip(), None)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise ValidationFailed(BAD_PHONE, [{"loc": ["body", "phone"], "msg": BAD_PHONE}])
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
