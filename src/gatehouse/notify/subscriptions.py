"""Web Push subscriptions (API.md §4): stored per user, endpoints checked against SSRF.

An endpoint is unique: it names one browser's push channel. A user re-subscribing
it updates the keys; another user presenting an endpoint that is registered to
someone else is refused with 409 `conflict` and the row stays with its owner.
Moving it silently would let anyone who learns an endpoint take over its owner's
channel: the owner would stop hearing of new sign-ins and password changes (the
notifications that tell them of an attack), and the taker's keys would make the
rest undecryptable. Answering 201 while keeping the owner's row would not hurt the
owner either, but would tell a legitimate second account on a shared browser that
it is subscribed when it is not; 409 says why, and the endpoint is a secret
capability URL, so the answer tells a stranger nothing they could not already use.
Where an endpoint may point is `push_targets`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatehouse.errors import Conflict
from gatehouse.notify.push_targets import check_endpoint
from gatehouse.store.db.models import PushSubscription


class PushSubscriptions:
    def __init__(self, db: async_sessionmaker[AsyncSession], *, allow_private: bool) -> None:
        self.db = db
        self.allow_private = allow_private

    async def subscribe(self, user_id: str, endpoint: str, p256dh: str, auth: str) -> str:
        """Store or refresh the caller's subscription; Conflict if another user holds it."""
        await check_endpoint(endpoint, allow_private=self.allow_private)
        try:
            return await self._upsert(user_id, endpoint, p256dh, auth)
        except IntegrityError:
            # Two requests raced to insert the endpoint: the loser sees the winner's row now.
            return await self._upsert(user_id, endpoint, p256dh, auth)

    async def _upsert(self, user_id: str, endpoint: str, p256dh: str, auth: str) -> str:
        async with self.db.begin() as db:
            existing = (await db.scalars(
                select(PushSubscription).where(PushSubscription.endpoint == endpoint)
            )).one_or_none()
            if existing is not None:
                if existing.user_id != user_id:
                    raise Conflict("This push endpoint is registered to another account; "
                                   "that account must unsubscribe it first.")
                existing.p256dh, existing.auth = p256dh, auth  # the same browser re-subscribing
                return existing.id
            row = PushSubscription(id=str(uuid.uuid4()), user_id=user_id, endpoint=endpoint,
                                   p256dh=p256dh, auth=auth, created_at=datetime.now(UTC))
            db.add(row)
            return row.id

    async def unsubscribe(self, user_id: str, endpoint: str) -> None:
        """Forget the caller's subscription; idempotent, so a browser may retry it (API.md: 204).

        Only the caller's own: another user's endpoint is left alone (still 204, so the
        answer does not reveal whether someone else registered it)."""
        async with self.db.begin() as db:
            await db.execute(delete(PushSubscription).where(
                PushSubscription.user_id == user_id, PushSubscription.endpoint == endpoint
            ))
