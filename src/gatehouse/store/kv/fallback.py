"""GATEHOUSE_CACHE_FALLBACK (API.md §6, DESIGN.md "Failure rules"): Redis down, service up.

`CacheHealth` is one process's view of Redis. The first call that cannot reach
it switches the process to fallback: the gauge `gatehouse_cache_fallback_active`
goes to 1, one warning is logged for the whole outage, and from then on no
request touches Redis (so none waits for a connect). One background probe
PINGs it, after 0.25 s, 0.5 s, then every second; when it answers, the
process is shared again (gauge 0, one info line), without a restart.

`FallbackKV` is the key-value store the services use. In fallback it answers
from a per-process `MemoryKV`: revocation checks still read the process's
own copy of the live revocations (auth/revocation.py, loaded from the
database), replay memory and MFA challenges become per process. A view made
with `deny=True` (the login throttle, with GATEHOUSE_CACHE_FALLBACK=deny)
raises ServiceUnavailable instead of counting per process; deleting (unlock)
still works. The rate limiter follows the same `CacheHealth` (ops/ratelimit.py).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from prometheus_client import Counter, Gauge

from gatehouse.errors import ServiceUnavailable
from gatehouse.store.kv.memory import MemoryKV

if TYPE_CHECKING:
    from gatehouse.store.kv.redis import RedisKV


@functools.cache
def outages() -> tuple[type[BaseException], ...]:
    """What "Redis cannot be reached" looks like from redis-py (BusyLoadingError is a
    ConnectionError); anything else is a bug and propagates.

    A function, not a constant: redis-py is imported only when REDIS_URL is set (2.3 MB of
    a worker's RSS otherwise), and an `except` clause evaluates it only for an exception.
    """
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (RedisConnectionError, RedisTimeoutError, OSError)

PROBE_DELAYS = (0.25, 0.5, 1.0)  # then every 1.0 s
PROBE_TIMEOUT = 1.0
DENIED = "The shared cache is unreachable and this server refuses to count logins alone; retry shortly."
log = structlog.get_logger("gatehouse.cache")
T = TypeVar("T")


class CacheHealth:
    def __init__(
        self, redis: RedisKV, *, gauge: Gauge | None = None, errors: Counter | None = None,
        mode: str = "local", retry_after: int = 5,
    ) -> None:
        self.redis = redis
        self.gauge = gauge
        self.errors = errors
        self.mode = mode
        self.retry_after = retry_after
        self.active = False  # True while the fallback is in force
        self.local = MemoryKV()
        self._since = 0.0
        self._probe: asyncio.Task[None] | None = None
        if gauge is not None:
            gauge.set(0)

    def failed(self, exc: BaseException) -> None:
        """Redis could not be reached: enter fallback (once per outage) and start the probe."""
        if self.errors is not None:
            self.errors.inc()
        if self.active:
            return
        self.active, self._since = True, time.monotonic()
        if self.gauge is not None:
            self.gauge.set(1)
        log.warning("cache_fallback_active", dependency="cache", fallback=self.mode,
                    error=type(exc).__name__)
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        attempt = 0
        while self.active:
            await asyncio.sleep(PROBE_DELAYS[min(attempt, len(PROBE_DELAYS) - 1)])
            attempt += 1
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    await self.redis.ping()
            except outages():  # the probe's own TimeoutError is an OSError
                continue
            self.recovered()

    def recovered(self) -> None:
        self.active = False
        # Counters kept alone during the outage are dropped: Redis holds the shared ones.
        self.local = MemoryKV()
        if self.gauge is not None:
            self.gauge.set(0)
        log.info("cache_restored", dependency="cache",
                 outage_seconds=round(time.monotonic() - self._since, 1))

    def deny(self) -> ServiceUnavailable:
        return ServiceUnavailable(self.retry_after, DENIED)

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            try:
                await self._probe
            except (asyncio.CancelledError, Exception):  # noqa: S110 - shutting down
                pass


class FallbackKV:
    name = "redis"

    def __init__(self, health: CacheHealth, *, deny: bool = False) -> None:
        self.health = health
        self.deny = deny

    @property
    def redis(self) -> RedisKV:
        return self.health.redis

    def view(self, *, deny: bool) -> FallbackKV:
        """The same store and health, refusing (deny) or counting locally while Redis is down."""
        return FallbackKV(self.health, deny=deny)

    async def _run(
        self, shared: Callable[[], Awaitable[T]], alone: Callable[[MemoryKV], Awaitable[T]],
        *, always_local: bool = False,
    ) -> T:
        h = self.health
        if not h.active:
            try:
                return await shared()
            except outages() as exc:
                h.failed(exc)
        if self.deny and not always_local:
            raise h.deny()
        return await alone(h.local)

    async def get(self, key: str) -> str | None:
        return await self._run(lambda: self.redis.get(key), lambda m: m.get(key))

    async def get_many(self, keys: list[str]) -> list[str | None]:
        return await self._run(lambda: self.redis.get_many(keys), lambda m: m.get_many(keys))

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        await self._run(lambda: self.redis.set(key, value, ttl), lambda m: m.set(key, value, ttl))

    async def set_if_absent(self, key: str, value: str, ttl: float) -> bool:
        return await self._run(lambda: self.redis.set_if_absent(key, value, ttl),
                               lambda m: m.set_if_absent(key, value, ttl))

    async def delete(self, *keys: str) -> None:
        await self._run(lambda: self.redis.delete(*keys), lambda m: m.delete(*keys),
                        always_local=True)

    async def incr(self, key: str, ttl: float) -> int:
        return await self._run(lambda: self.redis.incr(key, ttl), lambda m: m.incr(key, ttl))

    async def ttl(self, key: str) -> float | None:
        return await self._run(lambda: self.redis.ttl(key), lambda m: m.ttl(key))

    async def delete_prefix(self, prefix: str) -> int:
        return await self._run(lambda: self.redis.delete_prefix(prefix),
                               lambda m: m.delete_prefix(prefix), always_local=True)

    async def ping(self) -> bool:
        """Redis itself, never the fallback: readiness and `doctor` report the truth."""
        return await self.redis.ping()

    async def close(self) -> None:
        await self.health.close()
        await self.redis.close()


def wrap(redis: RedisKV, **options: Any) -> FallbackKV:
    return FallbackKV(CacheHealth(redis, **options))
