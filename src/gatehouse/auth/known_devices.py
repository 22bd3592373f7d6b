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
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from gatehouse.store.db.models import KnownDevice

NEW_AFTER = timedelta(days=30)


def device_hash(user_agent: str | None, ip: str | None) -> str:
    return hashlib.sha256(f"{user_agent or ''}\n{ip or ''}".encode()).hexdigest()


async def sign_in_is_new_device(
    db: AsyncSession, user_id: str, user_agent: str | None, ip: str | None, now: datetime
) -> bool:
    """Record a sign-in of `user_id` from (user_agent, ip); True when that is a new device."""
    digest = device_hash(user_agent, ip)
    last_seen = await db.scalar(select(KnownDevice.last_seen).where(
        KnownDevice.user_id == user_id, KnownDevice.device_hash == digest))
    if last_seen is not None:
        new = last_seen < now - NEW_AFTER
    else:
        new = bool(await db.scalar(select(exists().where(KnownDevice.user_id == user_id))))
    dialect = postgresql if db.get_bind().dialect.name == "postgresql" else sqlite
    upsert = dialect.insert(KnownDevice).values(user_id=user_id, device_hash=digest, last_seen=now)
    await db.execute(upsert.on_conflict_do_update(
        index_elements=[KnownDevice.user_id, KnownDevice.device_hash],
        set_={"last_seen": upsert.excluded.last_seen}))
    return new
