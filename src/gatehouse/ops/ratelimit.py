"""Per-IP rate limits (API.md §4) with the `limits` library, on the same backend as the KV store.

Buckets: `api` (GATEHOUSE_RATE_LIMIT, every API route not listed below),
`login`, `refresh` and `register` (each its own bucket of
GATEHOUSE_AUTH_RATE_LIMIT, not counted against `api`), and `client_errors`
(GATEHOUSE_CLIENT_ERRORS_RATE_LIMIT). The answer's RateLimit-* headers are
left in the request state for the middleware to send, on 2xx and 429 alike.
"""

from __future__ import annotations

import math
import time
from typing import Any

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, Storage
from limits.storage import storage_from_string
from limits.aio.strategies import FixedWindowRateLimiter

from gatehouse.errors import RateLimited
from gatehouse.ops.metrics import Metrics
from gatehouse.settings import Settings

SCOPES = ("api", "login", "refresh", "register", "client_errors")


def _storage(redis_url: str | None) -> Storage:
    if redis_url:
        return storage_from_string("async+" + redis_url)
    return MemoryStorage()


class RateLimits:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.enabled = settings.rate_limits_enabled
        self.metrics = metrics
        self.storage = _storage(settings.redis_url)
        self.limiter = FixedWindowRateLimiter(self.storage)
        self.items: dict[str, list[RateLimitItem]] = {
            "api": parse_many(settings.rate_limit),
            "login": parse_many(settings.auth_rate_limit),
            "refresh": parse_many(settings.auth_rate_limit),
            "register": parse_many(settings.auth_rate_limit),
            "client_errors": parse_many(settings.client_errors_rate_limit),
        }

    async def hit(self, scope: str, ip: str, state: dict[str, Any]) -> None:
        """Count one request of `ip` in `scope`; raise RateLimited when over the limit."""
        if not self.enabled:
            return
        headers: list[tuple[bytes, bytes]] = []
        refused: RateLimitItem | None = None
        tightest: tuple[int, int, int] | None = None  # remaining, limit, reset
        for item in self.items[scope]:
            allowed = await self.limiter.hit(item, scope, ip)
            stats = await self.limiter.get_window_stats(item, scope, ip)
            reset = max(1, math.ceil(stats.reset_time - time.time()))
            if tightest is None or stats.remaining < tightest[0]:
                tightest = (stats.remaining, item.amount, reset)
            if not allowed and refused is None:
                refused = item
                tightest = (0, item.amount, reset)
        if tightest is not None:
            remaining, amount, reset = tightest
            headers = [
                (b"ratelimit-limit", str(amount).encode()),
                (b"ratelimit-remaining", str(remaining).encode()),
                (b"ratelimit-reset", str(reset).encode()),
            ]
            state["extra_headers"] = headers
        if refused is not None:
            self.metrics.rate_limited.labels(scope).inc()
            assert tightest is not None
            raise RateLimited(tightest[2])

    async def reset(self) -> None:
        await self.storage.reset()
