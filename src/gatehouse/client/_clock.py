"""The clocks and sleeps the SDK uses, in one place so tests can replace them.

In-process decisions (is the access token fresh? how long until the retry
budget is spent?) use the monotonic clock, which never jumps. Only what is
written to a token file uses the wall clock, because another process must be
able to read it; see :mod:`gatehouse.client._tokens` for how the two meet.
"""

from __future__ import annotations

import asyncio
import time


def monotonic() -> float:
    """Seconds on a clock that never goes backwards (for in-process decisions)."""
    return time.monotonic()


def wall() -> float:
    """Seconds since the epoch on this machine's clock (for what other processes read)."""
    return time.time()


def sleep(seconds: float) -> None:
    """Block the calling thread for ``seconds``."""
    time.sleep(seconds)


async def asleep(seconds: float) -> None:
    """Suspend the calling task for ``seconds``."""
    await asyncio.sleep(seconds)
