"""The plumbing shared by the off-request-path senders (mail, Slack alerts).

A bounded asyncio queue created on first use (so a sender can be built outside
a running loop), worker tasks kept alive by a set, the worker loop, and
stop/drain. What a worker does with an item (`_handle`), how it retries, and
what it records when an item fails unexpectedly (`_failed`) stay with each sender.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")

STOP_GRACE = 5.0  # seconds stop() waits for the tasks to end
CANCEL_RETRY = 0.1  # seconds between repeated cancels of a task that swallowed one


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

    async def _work(self) -> None:
        """Take items one by one for ever; one item's failure never stops the worker."""
        queue = self._ensure_queue()
        while True:
            item = await queue.get()
            try:
                await self._handle(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a database or peer may be down: record it, keep working
                self._failed(item, exc)
            finally:
                queue.task_done()

    async def _handle(self, item: Item) -> None:
        raise NotImplementedError

    def _failed(self, item: Item, exc: Exception) -> None:
        """Record an item whose `_handle` raised (log and metrics; never re-raise)."""
        raise NotImplementedError

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Cancel the workers and any pending retry tasks, and wait until they have ended."""
        await cancel_until_done(self._tasks, grace)

    async def drain(self) -> None:
        """Wait until every queued item has been handled (retries still pending excepted)."""
        await self._ensure_queue().join()


async def cancel_until_done(tasks: Iterable[asyncio.Task[Any]], grace: float = STOP_GRACE) -> None:
    """Cancel `tasks` and wait until they have ended, at most `grace` seconds.

    One `cancel()` is not always enough on Python 3.11: `asyncio.wait_for` (which
    aiosmtplib and asyncpg await replies with) drops a cancellation that arrives in
    the same loop turn as the reply, and a worker would go back to waiting on its
    queue for ever, hanging the app's shutdown. So the cancel is repeated until
    every task has ended; after `grace` seconds the rest is left behind.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(CANCEL_RETRY, left))
