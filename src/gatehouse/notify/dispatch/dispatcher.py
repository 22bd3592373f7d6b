"""The notification dispatcher (API.md §10): one per process, on the Context.

`publish(notice)` (called from a session's after-commit hook, see events.py) returns at
once. Without REDIS_URL the notice waits in a bounded in-process queue (BackgroundQueue).
With REDIS_URL it is pushed onto the Redis list `<GATEHOUSE_REDIS_PREFIX>notify:queue`
(by a task, so a slow Redis slows no request; if the push fails the notice falls back to
the in-process queue), and each instance pulls from that list: a notice published by the
CLI, or still queued when an instance restarts, is delivered by whichever instance runs.
What an instance had pulled but not started is pushed back when it stops.

Workers hand each notice to `Channels.deliver` (channels.py); nothing of this runs on a
request. A full in-process queue drops the notice (counted `dropped` on every channel).
(redis-py types its list commands as sync-or-async: hence the `type: ignore[misc]`.)
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import structlog

from gatehouse.notify.background import BackgroundQueue, cancel_until_done
from gatehouse.notify.dispatch.channels import Channels
from gatehouse.notify.dispatch.events import Notice
from gatehouse.settings import Settings
from gatehouse.store.kv.redis_url import close_client, redis_client
from gatehouse.users.profile import CHANNELS

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

log = structlog.get_logger("gatehouse.notify")

WORKERS = 2
QUEUE_MAX = 1000
PUSH_TIMEOUT = 5.0  # seconds a notice may take to reach Redis before it stays in-process
PULL_WAIT = 1  # seconds BLPOP waits, so a stop is never kept waiting long
REQUEUE_BUDGET = 3.0  # seconds `stop()` may spend pushing unstarted notices back


class Dispatcher(BackgroundQueue[Notice]):
    """Start with the app (`start()`), `stop()` after; the CLI only `close()`s."""

    def __init__(self, settings: Settings, channels: Channels) -> None:
        super().__init__(QUEUE_MAX)
        self.channels = channels
        self.key = f"{settings.redis_prefix}notify:queue"
        self.redis: Redis | RedisCluster | None = None
        if settings.redis_url:
            # Any REDIS_URL form (TLS, Sentinel, Cluster): one key, so one slot on a Cluster.
            self.redis = redis_client(settings.redis_url, decode_responses=True,
                                      socket_timeout=PUSH_TIMEOUT, socket_connect_timeout=2)
        self._pushes: set[asyncio.Task[None]] = set()
        self._started = False

    # -- the publishing side --------------------------------------------------------------

    def publish(self, notice: Notice) -> None:
        """Queue `notice` for delivery; never blocks, never raises."""
        if self.redis is None:
            self._enqueue(notice)
            return
        task = asyncio.get_running_loop().create_task(self._push(notice))
        self._pushes.add(task)
        task.add_done_callback(self._pushes.discard)

    def _enqueue(self, notice: Notice) -> None:
        try:
            self._ensure_queue().put_nowait(notice)
        except asyncio.QueueFull:
            log.warning("notification_queue_full", type=notice.type, size=self.queue_max)
            for channel in CHANNELS:
                self.channels.count(channel, "dropped")

    async def _push(self, notice: Notice) -> None:
        assert self.redis is not None
        try:
            async with asyncio.timeout(PUSH_TIMEOUT):
                await self.redis.rpush(self.key, notice.to_json())  # type: ignore[misc]
        except Exception as exc:  # Redis down: deliver from this process after all
            log.warning("notification_queue_redis_failed", error=type(exc).__name__)
            self._enqueue(notice)

    # -- the delivering side --------------------------------------------------------------

    def start(self) -> None:
        self._started = True
        self._ensure_queue()
        for _ in range(WORKERS):
            self._spawn(self._work())
        if self.redis is not None:
            self._spawn(self._pull())

    async def _pull(self) -> None:
        """Move notices from the shared Redis list to this process's queue, as room allows."""
        assert self.redis is not None
        queue = self._ensure_queue()
        while True:
            try:
                while queue.full():  # noqa: ASYNC110 - a queue has no "room again" event
                    await asyncio.sleep(0.05)
                item = await self.redis.blpop([self.key], timeout=PULL_WAIT)  # type: ignore[misc]
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away for a while: keep trying
                log.warning("notification_pull_failed", error=type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            if item is not None:
                try:
                    queue.put_nowait(Notice.from_json(item[1]))
                except (ValueError, KeyError, TypeError):
                    log.warning("notification_malformed")

    async def _handle(self, notice: Notice) -> None:
        await self.channels.deliver(notice, self._spawn)

    def _failed(self, notice: Notice, exc: Exception) -> None:
        log.warning("notification_failed", type=notice.type, error=type(exc).__name__)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop the workers; with Redis, push back what was pulled but not started."""
        await self.close()
        await super().stop(grace)
        if self.redis is None:
            return
        queue = self._ensure_queue()
        deadline = time.monotonic() + REQUEUE_BUDGET
        while not queue.empty() and time.monotonic() < deadline:
            notice = queue.get_nowait()
            try:
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    await self.redis.lpush(self.key, notice.to_json())  # type: ignore[misc]
            except Exception as exc:
                log.warning("notification_requeue_failed", error=type(exc).__name__)
            queue.task_done()

    async def close(self) -> None:
        """Let pushes to Redis in flight finish (bounded), e.g. before the CLI exits."""
        if self._pushes:
            await asyncio.wait(set(self._pushes), timeout=PUSH_TIMEOUT + 1)
        await cancel_until_done(self._pushes, 0.5)

    async def aclose(self) -> None:
        """Release the Redis connection (Context.close). Notices still in the in-process
        queue are lost: without REDIS_URL they live in this process only, so neither a
        stopping server (which logs how many) nor the CLI can hand them on."""
        await self.close()
        left = self._ensure_queue().qsize()
        if left and self.redis is None and self._started:
            log.warning("notifications_not_sent", count=left)
        if self.redis is not None:
            await close_client(self.redis)
            self.redis = None
