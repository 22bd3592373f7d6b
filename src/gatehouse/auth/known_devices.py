"""Is this sign-in from a new device? (API.md §10 `login.new_device`)

A device is the pair (user agent, IP) a session was opened from. `known_devices` keeps,
per user, the SHA-256 of each pair and when it last signed in, so the check is one
primary-key lookup (plus, only for an unknown pair, one EXISTS on the same index to spot
the user's first sign-in ever), however many sessions the user has or had: a query over
the sessions of the last 30 days would grow with them, and the janitor prunes sessions.

New means: no sign-in from this pair in the last NEW_AFTER (30 days), and not the user's
first sign-in ever. The row is written in the login's own transaction (an upsert, so two
simultaneous first sign-ins from one device do not collide). Users signed in before this
table existed start with no rows: their next sign-in counts as the first.

It runs inside the login's unit of work (`auth/login_units.py`), on a sync Connection.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, exists, select

from gatehouse.store.db.models import KnownDevice
from gatehouse.store.db.units import upsert_per_dialect

NEW_AFTER = timedelta(days=30)

_KD = KnownDevice.__table__
_LAST_SEEN = select(_KD.c.last_seen).where(
    _KD.c.user_id == bindparam("uid"), _KD.c.device_hash == bindparam("digest"))
_ANY = select(exists().where(_KD.c.user_id == bindparam("uid")))


def _upsert(dialect: Any) -> Any:
    stmt = dialect.insert(_KD)
    return stmt.on_conflict_do_update(
        index_elements=[_KD.c.user_id, _KD.c.device_hash],
        set_={"last_seen": stmt.excluded.last_seen})


_UPSERT = upsert_per_dialect(_upsert)


def device_hash(user_agent: str | None, ip: str | None) -> str:
    return hashlib.sha256(f"{user_agent or ''}\n{ip or ''}".encode()).hexdigest()


def sign_in_is_new_device(
    conn: Connection, user_id: str, user_agent: str | None, ip: str | None, now: datetime
) -> bool:
    """Record a sign-in of `user_id` from (user_agent, ip); True when that is a new device."""
    key = {"uid": user_id, "digest": device_hash(user_agent, ip)}
    last_seen = conn.execute(_LAST_SEEN, key).scalar()
    if last_seen is not None:
        new = bool(last_seen < now - NEW_AFTER)
    else:
        new = bool(conn.execute(_ANY, key).scalar())
    conn.execute(_UPSERT[conn.dialect.name],
                 {"user_id": user_id, "device_hash": key["digest"], "last_seen": now})
    return new
