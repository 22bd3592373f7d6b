"""SMS through OpenPhone (API.md §10), off the request path.

`SmsSender.submit(to, content, on_result)` returns at once; worker tasks started with the
app post `{"content","from","to":[to]}` to `OPENPHONE_API_URL/v1/messages` with the header
`Authorization: <OPENPHONE_API_KEY>` (OpenPhone takes the bare key, no `Bearer`). Each try
is bounded by `timeout`; a network error, 408, 429 or 5xx is retried `retries` times with
exponential backoff, and a 429 after its `Retry-After` (capped at MAX_RETRY_AFTER) instead.
Other answers (a bad number, a refused key) are final. `on_result` learns the outcome:
"sent", "failed", or "dropped" when the bounded queue is full.

The text may hold a verification code and the key is a secret: neither is ever logged;
a number is logged by its last two digits only. Without OPENPHONE_API_KEY/OPENPHONE_FROM
nothing can be texted (`configured` is False), except that `serve --dev` prints each text
to its console, as it does emails.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

import structlog

from gatehouse.notify.background import BackgroundQueue
from gatehouse.notify.webpush import _retry_after as retry_after_seconds  # one reading for all
from gatehouse.settings import Settings

if TYPE_CHECKING:  # httpx is imported with the first post: a worker that sends none never
    import httpx  # loads it (bench/RESULTS.md, memory)

log = structlog.get_logger("gatehouse.sms")

WORKERS = 4
QUEUE_MAX = 1000
MAX_RETRY_AFTER = 300.0
RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})

OnResult = Callable[[str], None]


@dataclass
class _Text:
    to: str
    content: str
    on_result: OnResult | None = None
    attempt: int = 0


def masked(phone: str) -> str:
    """A number as logs show it: `+1*********71`."""
    return phone[:2] + "*" * max(0, len(phone) - 4) + phone[-2:]


class SmsSender(BackgroundQueue[_Text]):
    """The text queue of one process; `start()` in the app's lifespan, `stop()` after."""

    def __init__(self, settings: Settings, *, console: TextIO | None = None) -> None:
        key = settings.openphone_api_key
        self.key = key.get_secret_value() if key else None
        self.sender = settings.openphone_from
        self.url = f"{settings.openphone_api_url}/v1/messages"
        self.mode = "api" if self.key and self.sender else ("console" if settings.dev else "off")
        self.console = console
        self.timeout = 10.0
        self.retries = 4
        self.retry_base = 2.0
        super().__init__(QUEUE_MAX)
        self._client: httpx.AsyncClient | None = None

    @property
    def configured(self) -> bool:
        return self.mode != "off"

    # -- the request side ---------------------------------------------------------------

    def submit(self, to: str, content: str, on_result: OnResult | None = None) -> bool:
        """Queue a text to `to` (E.164) and return at once; False when the queue is full."""
        try:
            self._ensure_queue().put_nowait(_Text(to, content, on_result))
        except asyncio.QueueFull:
            log.warning("sms_queue_full", size=self.queue_max)
            _report(on_result, "dropped")
            return False
        return True

    # -- the worker side ----------------------------------------------------------------

    def start(self) -> None:
        self._ensure_queue()
        for _ in range(WORKERS):
            self._spawn(self._work())

    async def stop(self, grace: float = 5.0) -> None:
        await super().stop(grace)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _handle(self, text: _Text) -> None:
        await self._deliver(text)

    def _failed(self, text: _Text, exc: Exception) -> None:
        log.warning("sms_failed", to=masked(text.to), error=type(exc).__name__)
        _report(text.on_result, "failed")

    async def _deliver(self, text: _Text) -> None:
        if self.mode != "api":
            if self.mode == "console":
                out = self.console or sys.stderr
                out.write(f"\nSMS to {text.to}: {text.content}\n")
                out.flush()
            else:
                log.warning("sms_disabled", reason="OPENPHONE_API_KEY or OPENPHONE_FROM unset")
            _report(text.on_result, "sent" if self.mode == "console" else "failed")
            return
        wait = await self._post(text)
        if wait is None:
            log.info("sms_sent", to=masked(text.to))
            _report(text.on_result, "sent")
            return
        text.attempt += 1
        if wait < 0 or text.attempt > self.retries:
            log.warning("sms_failed", to=masked(text.to), attempts=text.attempt)
            _report(text.on_result, "failed")
            return
        if wait == 0:  # no Retry-After: exponential backoff with jitter
            wait = self.retry_base * 2 ** (text.attempt - 1) * (1 + random.random() / 4)  # noqa: S311
        self._spawn(self._retry_later(text, min(wait, MAX_RETRY_AFTER)))

    async def _retry_later(self, text: _Text, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            self._ensure_queue().put_nowait(text)
        except asyncio.QueueFull:
            _report(text.on_result, "failed")

    async def _post(self, text: _Text) -> float | None:
        """One try: None when OpenPhone accepted the text, else how long to wait before the
        next (0: backoff decides; negative: do not retry)."""
        assert self.key is not None
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False)
        body = {"content": text.content, "from": self.sender, "to": [text.to]}
        try:
            async with asyncio.timeout(self.timeout):
                r = await self._client.post(self.url, json=body, timeout=self.timeout,
                                            headers={"Authorization": self.key})
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            log.info("sms_retry", to=masked(text.to), attempt=text.attempt + 1,
                     error=type(exc).__name__)
            return 0.0
        if 200 <= r.status_code < 300:
            return None
        log.info("sms_retry" if r.status_code in RETRYABLE else "sms_refused",
                 to=masked(text.to), attempt=text.attempt + 1, status=r.status_code)
        if r.status_code not in RETRYABLE:
            return -1.0
        return retry_after_seconds(r.headers.get("retry-after")) or 0.0


def _report(on_result: OnResult | None, outcome: str) -> None:
    if on_result is not None:
        on_result(outcome)
