"""Web Push subscriptions (API.md §4): stored per user, endpoints checked against SSRF.

An endpoint must be `https` and every address its host resolves to must be
public, so the server can never be pointed at its own network when it later
delivers notifications. GATEHOUSE_PUSH_ALLOW_PRIVATE=1 lifts both rules for tests.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatehouse.errors import ValidationFailed
from gatehouse.store.db.models import PushSubscription

RESOLVE_TIMEOUT = 3.0


def _invalid(msg: str) -> ValidationFailed:
    return ValidationFailed(msg, [{"loc": ["body", "endpoint"], "msg": msg}])


async def check_endpoint(endpoint: str, *, allow_private: bool) -> None:
    parts = urlsplit(endpoint)
    if not parts.hostname or parts.scheme not in {"https", "http"}:
        raise _invalid("endpoint must be an absolute https URL.")
    if allow_private:
        return
    if parts.scheme != "https":
        raise _invalid("endpoint must use https.")
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            infos = await asyncio.get_running_loop().getaddrinfo(
                parts.hostname, parts.port or 443, type=socket.SOCK_STREAM
            )
    except (OSError, TimeoutError):
        raise _invalid("endpoint host does not resolve.") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise _invalid("endpoint must resolve only to public addresses.")


class PushSubscriptions:
    def __init__(self, db: async_sessionmaker[AsyncSession], *, allow_private: bool) -> None:
        self.db = db
        self.allow_private = allow_private

    async def subscribe(self, user_id: str, endpoint: str, p256dh: str, auth: str) -> str:
        await check_endpoint(endpoint, allow_private=self.allow_private)
        async with self.db.begin() as db:
            existing = (await db.scalars(
                select(PushSubscription).where(PushSubscription.endpoint == endpoint)
            )).one_or_none()
            if existing is not None:
                # A browser re-subscribing (or moving to another account) replaces the old row.
                existing.user_id, existing.p256dh, existing.auth = user_id, p256dh, auth
                return existing.id
            row = PushSubscription(id=str(uuid.uuid4()), user_id=user_id, endpoint=endpoint,
                                   p256dh=p256dh, auth=auth, created_at=datetime.now(UTC))
            db.add(row)
            return row.id

    async def unsubscribe(self, user_id: str, endpoint: str) -> None:
        """Forget the caller's subscription; idempotent, so a browser may retry it (API.md: 204)."""
        async with self.db.begin() as db:
            await db.execute(delete(PushSubscription).where(
                PushSubscription.user_id == user_id, PushSubscription.endpoint == endpoint
            ))
