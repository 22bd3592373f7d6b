"""The off-request-path senders' shutdown (notify/background.py): `stop()` ends every worker,
even one that drops a cancellation, as Python 3.11's `asyncio.wait_for` does when the awaited
reply arrives in the same loop turn as the cancel (seen as a hang of the app's shutdown
right after an SMTP server answered DATA)."""

from __future__ import annotations

import asyncio

import pytest

from gatehouse.notify.background import BackgroundQueue


class _Worker(BackgroundQueue[str]):
    """Its worker swallows the first cancellation while it is busy, then waits on the queue."""

    def __init__(self) -> None:
        super().__init__(queue_max=10)
        self.busy = asyncio.Event()
        self.swallowed = 0

    def start(self) -> None:
        self._ensure_queue()
        self._spawn(self._work())

    async def _work(self) -> None:
        queue = self._ensure_queue()
        while True:
            await queue.get()
            try:
                self.busy.set()
                await asyncio.sleep(30)  # a reply being awaited
            except asyncio.CancelledError:
                self.swallowed += 1  # what wait_for does when the reply came in the same turn
            finally:
                queue.task_done()


@pytest.mark.asyncio
async def test_stop_ends_a_worker_that_dropped_the_first_cancellation() -> None:
    sender = _Worker()
    sender.start()
    sender._ensure_queue().put_nowait("mail")
    await asyncio.wait_for(sender.busy.wait(), 5)
    await asyncio.wait_for(sender.stop(), 5)  # before the fix: waited on the queue for ever
    assert sender.swallowed == 1
    assert not sender._tasks


@pytest.mark.asyncio
async def test_stop_gives_up_after_its_grace_on_a_task_that_never_ends() -> None:
    """A task that ignores every cancel is left behind after `grace`: shutdown never hangs."""
    sender = BackgroundQueue[str](queue_max=1)
    stubborn_may_end = asyncio.Event()

    async def stubborn() -> None:
        while not stubborn_may_end.is_set():
            try:
                await asyncio.sleep(1)
            except asyncio.CancelledError:
                pass

    sender._spawn(stubborn())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await sender.stop(grace=0.5)
    assert 0.4 < loop.time() - started < 2
    stubborn_may_end.set()
    await asyncio.wait_for(asyncio.gather(*sender._tasks), 5)
