"""Operator alerts (API.md §6 `GATEHOUSE_ALERTS`, §7 `gatehouse_alerts_total`): Slack.

Services call `Alerts.emit(kind, user_id=..., **facts)` where a security event happens;
it returns at once. The message waits in a bounded in-process asyncio queue, drained by
one worker task started with the app, which posts it to SLACK_WEBHOOK_URL (httpx, short
timeout; bounded retries with exponential backoff). A full queue drops the alert and
counts it `failed`. A slow, failing or hanging webhook never slows or fails a request.

De-duplication: each kind at most once a minute per user (the rest are counted
`suppressed`). Login throttling is reported once per burst: the first throttle of an
email opens a burst, later ones extend it, and a new message comes only after
BURST_QUIET seconds without throttling for that email.

The CLI has no server loop: `Context.close()` calls `close()`, which posts whatever is
still queued (one attempt each, bounded in total), so `sessions revoke-all` and
`users mfa-reset` alert from the operator's terminal, even when no server runs.

Facts are chosen by the callers and never hold a token, password or secret: a session
is named by the first 8 characters of its id.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from gatehouse.notify.background import BackgroundQueue
from gatehouse.ops.metrics import Metrics
from gatehouse.settings import Settings

if TYPE_CHECKING:  # httpx is imported with the first post: a worker that sends none never
    import httpx  # loads it (bench/RESULTS.md, memory)

log = structlog.get_logger("gatehouse.alerts")

DEDUP_SECONDS = 60.0
BURST_QUIET = 15 * 60.0
QUEUE_MAX = 500
TITLES = {
    "reuse": ":rotating_light: Refresh token reuse (possible token theft)",
    "throttle_burst": ":warning: Login throttling burst",
    "role_change": ":bust_in_silhouette: Admin role change",
    "revoke_all": ":no_entry: Sessions revoked (revoke-all)",
    "mfa_reset": ":closed_lock_with_key: MFA reset",
}


@dataclass
class _Alert:
    kind: str
    payload: dict[str, Any]
    attempt: int = 0
    created: float = field(default_factory=time.monotonic)


def _text(kind: str, facts: dict[str, Any]) -> str:
    lines = [f"*{TITLES[kind]}*"]
    for key, value in facts.items():
        if value is None or value == "":
            continue
        if isinstance(value, list | tuple):
            value = ", ".join(str(v) for v in value) or "(none)"
        lines.append(f"• {key.replace('_', ' ')}: {value}")
    return "\n".join(lines)


class Alerts(BackgroundQueue[_Alert]):
    """The alert queue of one process; `start()` in the app's lifespan, `stop()` after."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.metrics = metrics
        self.kinds = frozenset(settings.alerts)
        webhook = settings.slack_webhook_url
        self.url = webhook.get_secret_value() if webhook else None
        self.timeout = 3.0
        self.retries = 3
        self.retry_base = 2.0
        self.flush_budget = 5.0  # seconds `close()` may spend posting what is left
        super().__init__(QUEUE_MAX)
        self._last: dict[tuple[str, str], float] = {}
        self._bursts: dict[str, float] = {}
        self._client: httpx.AsyncClient | None = None

    # -- the request side ---------------------------------------------------------------

    def emit(self, kind: str, *, user_id: str | None = None, **facts: Any) -> None:
        """Queue the alert `kind` about `user_id` (facts: short, secret-free values)."""
        assert kind in TITLES, kind
        if kind not in self.kinds or self.url is None:
            return
        now = time.monotonic()
        key = (kind, user_id or facts.get("email") or "-")
        last = self._last.get(key)
        if last is not None and now - last < DEDUP_SECONDS:
            self.metrics.alerts.labels(kind, "suppressed").inc()
            return
        self._last[key] = now
        if len(self._last) > 10_000:  # a flood of distinct users: forget the old ones
            self._last = {k: t for k, t in self._last.items() if now - t < DEDUP_SECONDS}
        payload = {"text": _text(kind, {"user_id": user_id, **facts})}
        try:
            self._ensure_queue().put_nowait(_Alert(kind, payload))
        except asyncio.QueueFull:
            log.warning("alert_queue_full", kind=kind, size=self.queue_max)
            self.metrics.alerts.labels(kind, "failed").inc()

    def throttled(self, email: str, *, ip: str | None, user_id: str | None = None) -> None:
        """Login throttling of `email`: an alert when it opens a burst, nothing while it lasts."""
        now = time.monotonic()
        last = self._bursts.get(email)
        self._bursts[email] = now
        if len(self._bursts) > 10_000:
            self._bursts = {e: t for e, t in self._bursts.items() if now - t < BURST_QUIET}
        if last is not None and now - last < BURST_QUIET:
            return
        self.emit("throttle_burst", user_id=user_id, email=email, ip=ip)

    # -- the worker side ----------------------------------------------------------------

    def start(self) -> None:
        self._ensure_queue()
        self._spawn(self._work())

    async def close(self) -> None:
        """Stop the worker, post what is still queued (one try each, bounded), close."""
        await self.stop()
        queue = self._ensure_queue()
        deadline = time.monotonic() + self.flush_budget
        while not queue.empty():
            alert = queue.get_nowait()
            left = deadline - time.monotonic()
            if left <= 0 or not await self._post(alert, limit=min(self.timeout, left)):
                self.metrics.alerts.labels(alert.kind, "failed").inc()
            queue.task_done()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _handle(self, alert: _Alert) -> None:
        await self._deliver(alert)

    def _failed(self, alert: _Alert, exc: Exception) -> None:
        log.warning("alert_failed", kind=alert.kind, error=type(exc).__name__)
        self.metrics.alerts.labels(alert.kind, "failed").inc()

    async def _deliver(self, alert: _Alert) -> None:
        if await self._post(alert, limit=self.timeout):
            return
        alert.attempt += 1
        if alert.attempt > self.retries:
            log.warning("alert_failed", kind=alert.kind, attempts=alert.attempt)
            self.metrics.alerts.labels(alert.kind, "failed").inc()
            return
        delay = self.retry_base * 2 ** (alert.attempt - 1) * (1 + random.random() / 4)  # noqa: S311 (jitter)
        self._spawn(self._retry_later(alert, delay))

    async def _retry_later(self, alert: _Alert, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            self._ensure_queue().put_nowait(alert)
        except asyncio.QueueFull:
            self.metrics.alerts.labels(alert.kind, "failed").inc()

    async def _post(self, alert: _Alert, *, limit: float) -> bool:
        """One attempt; True (counted sent) when the webhook answered 2xx."""
        assert self.url is not None
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False)
        try:
            async with asyncio.timeout(limit):
                r = await self._client.post(self.url, json=alert.payload, timeout=limit)
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            # The webhook URL is a secret: log the error's type only.
            log.info("alert_retry", kind=alert.kind, attempt=alert.attempt + 1,
                     error=type(exc).__name__)
            return False
        if not 200 <= r.status_code < 300:
            log.info("alert_retry", kind=alert.kind, attempt=alert.attempt + 1,
                     status=r.status_code)
            return False
        self.metrics.alerts.labels(alert.kind, "sent").inc()
        log.info("alert_sent", kind=alert.kind)
        return True
