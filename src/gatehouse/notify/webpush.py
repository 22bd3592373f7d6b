"""Web Push delivery (API.md §10): RFC 8030 push, RFC 8291 `aes128gcm`, RFC 8292 VAPID.

pywebpush's own `webpush()` posts with `requests`, which would block the event loop
for as long as a push service takes to answer (or not). So only its pieces are used:
`WebPusher.encode` encrypts the payload for the browser's `p256dh`/`auth` keys, and
py_vapid (pywebpush's VAPID half) signs the JWT; both are sub-millisecond CPU work.
The request itself goes out on one shared `httpx.AsyncClient` (connection reuse,
a hard per-attempt timeout).

Every failure is judged by what it says about the subscription:
- 2xx: delivered (`sent`).
- 404/410: the browser dropped the subscription; its row is deleted (`dropped`).
- 429, 5xx, network errors, timeouts: transient; retried with exponential backoff and
  jitter, or after the service's `Retry-After` (seconds or HTTP date) when it gives
  one, at most `retries` times; then given up (`failed`). A `Retry-After` longer than
  `max_delay` is given up at once rather than retried too early.
- other 4xx (bad VAPID, payload too large...), an endpoint that no longer resolves to
  public addresses, keys that cannot be used: retrying cannot help (`failed`).

The endpoint URL is a capability (anyone holding it can push to that browser), so logs
name its origin only, and exceptions are logged by type (httpx puts URLs in messages).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import structlog
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatehouse.errors import ValidationFailed
from gatehouse.notify.push_targets import check_endpoint
from gatehouse.ops.metrics import Metrics
from gatehouse.settings import Settings
from gatehouse.store.db.models import PushSubscription

if TYPE_CHECKING:  # httpx and py_vapid are imported where push is configured and sent: a
    import httpx  # worker that sends none never loads them (bench/RESULTS.md, memory)

log = structlog.get_logger("gatehouse.webpush")

Outcome = Literal["sent", "failed", "dropped"]
# Every §10 event is about the account's security: wake the device for it (RFC 8030 §5.3).
SECURITY_EVENTS = frozenset({"login.new_device", "password.changed", "password.reset",
                             "refresh.reuse_detected", "mfa.disabled", "mfa.reset"})
TTL_SECONDS = 24 * 3600  # a warning read the next morning still matters
JWT_LIFETIME = 12 * 3600  # RFC 8292 §2: `exp` no more than 24 h ahead


@dataclass(frozen=True)
class _Target:
    id: str
    endpoint: str
    p256dh: str
    auth: str

    @property
    def origin(self) -> str:
        parts = urlsplit(self.endpoint)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


class WebPushSender:
    """Sends one notification to every push subscription of a user.

    `deliver(user_id, payload)` posts the JSON `payload` (`{"type","title","body","at"}`)
    to each subscription concurrently and returns when every one was sent, deleted
    (404/410) or given up; it never raises for a delivery failure, so the caller needs
    no retry logic of its own. `close()` closes the HTTP client.

    Each subscription's outcome (`sent`, `failed`, `dropped` for a deleted one) is
    counted in `metrics.notifications{channel="push"}` when the metrics have that
    counter, and passed to `on_outcome` when given. Tunables, set after construction
    (tests shorten them): `timeout` per attempt, `retries`, `retry_base` (first backoff),
    `max_delay` (cap on a backoff, longest `Retry-After` honoured). Worst case a
    deliver() takes about (retries + 1) * timeout + the backoffs.
    """

    def __init__(self, settings: Settings, db: async_sessionmaker[AsyncSession],
                 metrics: Metrics | None = None, *,
                 on_outcome: Callable[[Outcome], None] | None = None) -> None:
        self.db = db
        self.metrics = metrics
        self.on_outcome = on_outcome
        self.subject = settings.vapid_subject
        self.allow_private = settings.push_allow_private
        key = settings.vapid_private_key
        self._vapid: Any = None  # a py_vapid Vapid when VAPID_PRIVATE_KEY is set
        if key:
            from py_vapid import Vapid  # type: ignore[import-untyped]

            self._vapid = Vapid.from_raw(key.get_secret_value().encode())
        self.timeout = 10.0
        self.retries = 3
        self.retry_base = 1.0
        self.max_delay = 60.0
        self._client: httpx.AsyncClient | None = None

    async def deliver(self, user_id: str, payload: dict[str, Any]) -> None:
        if self._vapid is None or not self.subject:
            log.warning("push_not_configured")
            return
        async with self.db() as db:
            rows = (await db.scalars(
                select(PushSubscription).where(PushSubscription.user_id == user_id)
            )).all()
            targets = [_Target(r.id, r.endpoint, r.p256dh, r.auth) for r in rows]
        data = json.dumps(payload, separators=(",", ":")).encode()
        urgency = "high" if payload.get("type") in SECURITY_EVENTS else "normal"
        await asyncio.gather(*(self._deliver_one(t, data, urgency) for t in targets))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _deliver_one(self, target: _Target, data: bytes, urgency: str) -> None:
        # pywebpush imports aiohttp and requests (~10 MB of every worker's RSS, bench/memory.py):
        # loaded with the first push, not at start-up.
        from py_vapid import VapidException
        from pywebpush import WebPusher, WebPushException  # type: ignore[import-untyped]

        origin = target.origin
        try:
            # Checked again at send time: the host may resolve elsewhere since it subscribed.
            await check_endpoint(target.endpoint, allow_private=self.allow_private)
            body = WebPusher({"endpoint": target.endpoint,
                              "keys": {"p256dh": target.p256dh, "auth": target.auth}}
                             ).encode(data, "aes128gcm")["body"]
            headers = {
                **self._vapid.sign({"aud": origin, "sub": self.subject,
                                    "exp": int(time.time()) + JWT_LIFETIME}),
                "Content-Encoding": "aes128gcm", "Content-Type": "application/octet-stream",
                "TTL": str(TTL_SECONDS), "Urgency": urgency,
            }
        except (ValidationFailed, WebPushException, VapidException, ValueError) as exc:
            log.warning("push_failed", origin=origin, reason=type(exc).__name__)
            self._count("failed")
            return
        for attempt in range(1, self.retries + 2):
            verdict, wait = await self._post(target, origin, body, headers)
            if verdict == "sent":
                self._count("sent")
                return
            if verdict == "gone":
                async with self.db.begin() as db:
                    await db.execute(delete(PushSubscription).where(
                        PushSubscription.id == target.id))
                log.info("push_subscription_gone", origin=origin)
                self._count("dropped")
                return
            if verdict == "failed" or attempt > self.retries or (wait or 0) > self.max_delay:
                log.warning("push_failed", origin=origin, attempts=attempt)
                self._count("failed")
                return
            if wait is None:
                backoff = self.retry_base * 2 ** (attempt - 1)
                wait = min(backoff * (1 + random.random() / 4), self.max_delay)  # noqa: S311 (jitter)
            log.info("push_retry", origin=origin, attempt=attempt, in_seconds=round(wait, 2))
            await asyncio.sleep(wait)

    async def _post(self, target: _Target, origin: str, body: bytes, headers: dict[str, str]
                    ) -> tuple[Literal["sent", "gone", "retry", "failed"], float | None]:
        """One attempt: the verdict, and the service's Retry-After (seconds) if it sent one."""
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False)
        try:
            async with asyncio.timeout(self.timeout):
                r = await self._client.post(target.endpoint, content=body, headers=headers,
                                            timeout=self.timeout)
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            log.info("push_attempt_failed", origin=origin, error=type(exc).__name__)
            return "retry", None
        if 200 <= r.status_code < 300:
            return "sent", None
        if r.status_code in (404, 410):
            return "gone", None
        log.info("push_attempt_failed", origin=origin, status=r.status_code)
        if r.status_code == 429 or r.status_code >= 500:
            return "retry", _retry_after(r.headers.get("Retry-After"))
        return "failed", None

    def _count(self, result: Outcome) -> None:
        counter = getattr(self.metrics, "notifications", None)
        if counter is not None:
            counter.labels(channel="push", result=result).inc()
        if self.on_outcome is not None:
            self.on_outcome(result)


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), else None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
