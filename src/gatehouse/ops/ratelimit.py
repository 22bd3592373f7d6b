"""Per-IP rate limits (API.md §4) with the `limits` library, on the same backend as the KV store.

Buckets: `api` (GATEHOUSE_RATE_LIMIT, every API route not listed below),
`login` (with its second step, `/auth/login/mfa`), `refresh`, `register` and `recovery` (password reset and email
verification, API.md §8) (each its own bucket of GATEHOUSE_AUTH_RATE_LIMIT, not
counted against `api`), and `client_errors`
(GATEHOUSE_CLIENT_ERRORS_RATE_LIMIT). The middleware counts every `/api/...`
request before anything else runs, so malformed, oversized and unknown-route
requests count too and every answer carries the RateLimit-* headers (left in
the request state for the middleware to send, on 2xx, 4xx and 429 alike).

With REDIS_URL the buckets live in Redis, shared by every process and host.
If Redis cannot be reached the process enters the cache fallback
(store/kv/fallback.py, GATEHOUSE_CACHE_FALLBACK): with `local` every bucket is
counted in this process's memory until Redis answers again (still enforced,
no longer shared); with `deny` the `login`, `register` and `recovery` buckets
(the ones guarding against guessing and abuse) answer 503
`service_unavailable` with Retry-After, and the others count locally, so
validation and refresh keep working. Never a 500 and never a silently
unlimited request.
"""

from __future__ import annotations

import math
import time
from typing import Any

import structlog
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.storage.redis.redispy import RedispyBridge
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError

from gatehouse.errors import RateLimited, ServiceUnavailable
from gatehouse.ops.metrics import Metrics
from gatehouse.settings import Settings
from gatehouse.store.kv.fallback import CacheHealth
from gatehouse.store.kv.redis_url import close_client, limits_storage

SCOPES = ("api", "login", "refresh", "register", "recovery", "client_errors")
_OWN_BUCKETS = {"/auth/login": "login", "/auth/login/mfa": "login", "/auth/refresh": "refresh",
                "/auth/register": "register",
                "/auth/password/forgot": "recovery", "/auth/password/reset": "recovery",
                "/auth/email/verify-request": "recovery", "/auth/email/verify": "recovery",
                "/client-errors": "client_errors"}
log = structlog.get_logger("gatehouse.ratelimit")
# Buckets that fail closed with GATEHOUSE_CACHE_FALLBACK=deny while Redis is down.
DENY_SCOPES = frozenset({"login", "register", "recovery"})


def _storage(redis_url: str | None, prefix: str = "") -> Storage:
    """The limiter's storage: the Redis behind REDIS_URL (shared by every instance), else memory.

    Its keys are `<GATEHOUSE_REDIS_PREFIX>LIMITS:...`, under the deployment's prefix like
    every other Gatehouse key.
    """
    if not redis_url:
        return MemoryStorage()
    # One server, Sentinel or Cluster alike (store/kv/redis_url.py), on redis-py.
    return limits_storage(redis_url, key_prefix=f"{prefix}LIMITS",
                          socket_timeout=2, socket_connect_timeout=2)


def bucket_for(method: str, path: str) -> str | None:
    """The bucket a request counts against, or None (probes, JWKS, CORS preflights)."""
    if method == "OPTIONS" or not path.startswith("/api/"):
        return None
    rest = path[len("/api/v1"):] if path.startswith("/api/v1/") else path[len("/api"):]
    return _OWN_BUCKETS.get(rest, "api")


class RateLimits:
    def __init__(
        self, settings: Settings, metrics: Metrics, health: CacheHealth | None = None
    ) -> None:
        self.enabled = settings.rate_limits_enabled
        self.metrics = metrics
        self.retry_after = settings.retry_after_seconds
        self.storage = _storage(settings.redis_url, settings.redis_prefix)
        self.limiter = FixedWindowRateLimiter(self.storage)
        # The cache fallback: Redis' health, shared with the key-value store.
        self.health = health
        self.deny = settings.cache_fallback == "deny"
        self._local_storage: MemoryStorage | None = None
        self._local: FixedWindowRateLimiter | None = None
        self._local_generation: object = None
        self.items: dict[str, list[RateLimitItem]] = {
            "api": parse_many(settings.rate_limit),
            "login": parse_many(settings.auth_rate_limit),
            "refresh": parse_many(settings.auth_rate_limit),
            "register": parse_many(settings.auth_rate_limit),
            "recovery": parse_many(settings.auth_rate_limit),
            "client_errors": parse_many(settings.client_errors_rate_limit),
        }

    async def hit(self, scope: str, ip: str, state: dict[str, Any]) -> None:
        """Count one request of `ip` in `scope`; raise RateLimited when over the limit.

        `ip` is the client's rate key (api/client_ip.py): an IPv6 client counts by its /64.
        """
        if not self.enabled:
            return
        windows = await self._windows(scope, ip)
        # With several limits ("10/second;600/minute") the headers show the tightest window,
        # and Retry-After must outlast every exhausted window, not just the first one.
        refused = [w for allowed, w in windows if not allowed]
        if refused:
            remaining, amount, reset = max(refused, key=lambda w: w[2])
        else:
            remaining, amount, reset = min((w for _, w in windows), key=lambda w: w[0])
        state["extra_headers"] = [
            (b"ratelimit-limit", str(amount).encode()),
            (b"ratelimit-remaining", str(0 if refused else remaining).encode()),
            (b"ratelimit-reset", str(reset).encode()),
        ]
        if refused:
            self.metrics.rate_limited.labels(scope).inc()
            raise RateLimited(reset)

    async def _windows(self, scope: str, ip: str) -> list[tuple[bool, tuple[int, int, int]]]:
        """Hit every window of `scope`: in Redis, or in this process during the cache fallback."""
        health = self.health
        if health is None or not health.active:
            try:
                return [await self._count(self.limiter, item, scope, ip)
                        for item in self.items[scope]]
            except StorageError as exc:
                if health is None:  # no fallback wired (cannot happen with REDIS_URL via Context)
                    self.metrics.dependency_errors.labels("cache").inc()
                    log.warning("dependency_unavailable", dependency="cache",
                                error=type(exc.storage_error).__name__)
                    raise ServiceUnavailable(self.retry_after) from None
                health.failed(exc.storage_error)
        if self.deny and scope in DENY_SCOPES:
            raise health.deny()
        if self._local_storage is None or self._local_generation is not health.local:
            # A fresh set of local counters per outage (the previous ones are stale).
            self._local_storage = MemoryStorage()
            self._local = FixedWindowRateLimiter(self._local_storage)
            self._local_generation = health.local
        assert self._local is not None
        return [await self._count(self._local, item, scope, ip) for item in self.items[scope]]

    @staticmethod
    async def _count(
        limiter: FixedWindowRateLimiter, item: RateLimitItem, scope: str, ip: str
    ) -> tuple[bool, tuple[int, int, int]]:
        """Hit one window: (allowed, (remaining, limit, seconds until reset))."""
        allowed = await limiter.hit(item, scope, ip)
        stats = await limiter.get_window_stats(item, scope, ip)
        reset = max(1, math.ceil(stats.reset_time - time.time()))
        return allowed, (max(0, stats.remaining), item.amount, reset)

    async def reset(self) -> None:
        await self.storage.reset()

    async def close(self) -> None:
        """Close the Redis connection pool (the memory storage holds nothing to close)."""
        bridge = self.storage.bridge if isinstance(self.storage, RedisStorage) else None
        if isinstance(bridge, RedispyBridge):
            await close_client(bridge.storage)
