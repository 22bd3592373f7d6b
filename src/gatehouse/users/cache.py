"""A per-process cache of public user records for the hottest read, `GET /users/profile`.

Coherence: every write through AccountService evicts the user here at once,
and each instance's revocation poll (every 0.5 s) evicts users whose
`updated_at` moved, so a change made on another instance or by the CLI shows
within about a second. Entries also expire after `ttl` seconds regardless.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gatehouse.store.db.models import User

MAX_ENTRIES = 50_000


class UserCache:
    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self._items: dict[str, tuple[float, dict[str, Any]]] = {}

    def get(self, user_id: str) -> dict[str, Any] | None:
        item = self._items.get(user_id)
        if item is None or time.monotonic() - item[0] > self.ttl:
            return None
        return item[1]

    def put(self, user_id: str, public: dict[str, Any]) -> None:
        if len(self._items) >= MAX_ENTRIES:
            self._items.clear()  # simple bound; a refill costs one query per user
        self._items[user_id] = (time.monotonic(), public)

    def evict(self, user_id: str) -> None:
        self._items.pop(user_id, None)

    async def evict_changed(self, db: AsyncSession, window: float) -> int:
        """Evict users changed in the last `window` seconds (by any process)."""
        if not self._items:
            return 0
        since = datetime.now(UTC) - timedelta(seconds=window)
        changed = (await db.scalars(select(User.id).where(User.updated_at >= since))).all()
        for user_id in changed:
            self.evict(user_id)
        return len(changed)
