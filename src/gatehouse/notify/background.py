"""The plumbing shared by the off-request-path senders (mail, Slack alerts).

A bounded asyncio queue created on first use (so a sender can be built outside
a running loop), worker tasks kept alive by a set, and stop/drain. What a
worker does with an item, and how it retries, stays with each sender.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")


class BackgroundQueue(Generic[Item]):
    """A bounded queue of `Item`s and the tasks that work on it."""

    queue_max: int

    def __init__(self, queue_max: int) -> None:
        self.queue_max = queue_max
        self._queue: asyncio.Queue[Item] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def _ensure_queue(self) -> asyncio.Queue[Item]:
        if self._queue is None:
            self._queue = asyncio.Queue(maxsize=self.queue_max)
        return self._queue

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Cancel the workers and any pending retry tasks."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def drain(self) -> None:
        """Wait until every queued item has been handled (retries still pending excepted)."""
        await self._ensure_queue().join()
