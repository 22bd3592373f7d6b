"""Where a notice goes (API.md §10): the user's channels, each capped per user per hour.

For each channel the user left on in `notify` and that can reach them (email: mail is
configured; SMS: OpenPhone is configured and the phone is verified; push: Web Push is
configured and the user has a subscription), one send, unless this is the user's 11th on
that channel within the hour (a fixed window counted in the key-value store, so every
instance shares it): then it is counted `dropped`. Email and SMS go through their own
queues (Mailer, SmsSender), which retry and report the outcome back; push is awaited on a
task of its own (WebPushSender retries and counts each subscription itself).
`gatehouse_notifications_total{channel,result}` counts every outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import structlog
from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatehouse.notify.dispatch.events import Notice
from gatehouse.notify.mail import Mailer, render
from gatehouse.notify.sms import SmsSender
from gatehouse.ops.metrics import Metrics
from gatehouse.store.db.models import PushSubscription, User
from gatehouse.store.kv import KeyValueStore
from gatehouse.users.profile import CHANNELS, notify_prefs

log = structlog.get_logger("gatehouse.notify")

PER_HOUR = 10
WINDOW = 3600.0


class PushDeliverer(Protocol):
    """notify/webpush.py's WebPushSender: every subscription of the user, retried and
    counted (one outcome per subscription) by itself."""

    async def deliver(self, user_id: str, payload: dict[str, Any]) -> None: ...


Spawn = Callable[[Coroutine[Any, Any, None]], None]


class Channels:
    def __init__(self, *, db: async_sessionmaker[AsyncSession], kv: KeyValueStore,
                 metrics: Metrics, mailer: Mailer, sms: SmsSender, app_url: str,
                 push: PushDeliverer | None = None) -> None:
        self.db = db
        self.kv = kv
        self.metrics = metrics
        self.mailer = mailer
        self.sms = sms
        self.push = push
        self.app_url = app_url

    def count(self, channel: str, result: str) -> None:
        self.metrics.notifications.labels(channel, result).inc()

    def counter(self, channel: str) -> Callable[[str], None]:
        return lambda result: self.count(channel, result)

    async def deliver(self, notice: Notice, spawn: Spawn) -> None:
        """Hand `notice` to each channel of its user; sending happens elsewhere."""
        async with self.db() as db:
            user = await db.get(User, notice.user_id)
            if user is None:
                return  # deleted meanwhile: nobody to tell
            has_push = self.push is not None and bool(await db.scalar(select(
                exists().where(PushSubscription.user_id == user.id))))
        reachable = {"email": self.mailer.mode != "off",
                     "sms": self.sms.configured and bool(user.phone and user.phone_verified),
                     "push": has_push}
        wanted = notify_prefs(user)
        title, body = notice.text()
        for channel in CHANNELS:
            if not (wanted[channel] and reachable[channel]):
                continue
            if not await self._within_limit(channel, user.id):
                log.info("notification_dropped", channel=channel, type=notice.type)
                self.count(channel, "dropped")
            elif channel == "email":
                email = render("notification", user.email, subject=title, title=title,
                               message=body, link=self.app_url)
                self.mailer.submit(email, on_result=self.counter("email"))
            elif channel == "sms":
                assert user.phone is not None
                self.sms.submit(user.phone, f"Gatehouse: {title}. {body}",
                                on_result=self.counter("sms"))
            else:
                payload = {"type": notice.type, "title": title, "body": body, "at": notice.at}
                spawn(self._push(user.id, payload))

    async def _within_limit(self, channel: str, user_id: str) -> bool:
        try:
            return await self.kv.incr(f"notify:{channel}:{user_id}", WINDOW) <= PER_HOUR
        except Exception as exc:  # the store is down: a security notice beats the cap
            log.warning("notification_limit_unavailable", error=type(exc).__name__)
            return True

    async def _push(self, user_id: str, payload: dict[str, Any]) -> None:
        """WebPushSender counts each subscription's outcome itself; only its crash is ours."""
        assert self.push is not None
        try:
            await self.push.deliver(user_id, payload)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # e.g. the database went away while it listed subscriptions
            log.warning("notification_failed", channel="push", error=type(exc).__name__)
            self.count("push", "failed")
