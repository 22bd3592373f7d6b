"""The locks that keep one refresh in flight per token store.

Every store object gets one :class:`StoreState`, shared by every client and
auth flow in this process that uses that store:

* a ``threading.Lock`` for threads (sync clients, and async clients on other
  event loops);
* one ``asyncio.Lock`` per event loop, so tasks wait without blocking the
  loop and only one task per loop queues for the thread lock;
* the store's own cross-process lock (a file lock for files), taken last.

The order is always asyncio lock → thread lock → store lock, so mixing sync
and async clients on one store cannot deadlock. Async code takes the blocking
locks in a worker thread, and gives them back if it is cancelled meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator

import filelock

from ._exceptions import ApiError
from ._stores import TokenStore


class StoreState:
    """Locks and refresh cool-down shared by all users of one token store in this process."""

    def __init__(self) -> None:
        self.thread_lock = threading.Lock()
        self._loop_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        #: Monotonic time before which an optional (early) refresh is not retried.
        self.refresh_not_before = 0.0

    @contextlib.contextmanager
    def hold(self, store: TokenStore) -> Iterator[None]:
        """Hold the thread lock and the store's cross-process lock."""
        with self.thread_lock:
            lock = store.lock()
            _enter_store_lock(lock)
            try:
                yield
            finally:
                lock.__exit__(None, None, None)

    @contextlib.asynccontextmanager
    async def hold_async(self, store: TokenStore) -> AsyncIterator[None]:
        """Hold this loop's asyncio lock, the thread lock and the store's lock."""
        loop = asyncio.get_running_loop()
        loop_lock = self._loop_locks.get(loop)
        if loop_lock is None:
            # Only this loop's thread touches its entry, so this cannot race.
            loop_lock = self._loop_locks[loop] = asyncio.Lock()
        async with loop_lock:
            if not self.thread_lock.acquire(blocking=False):
                await _acquire_off_loop(self.thread_lock.acquire, self.thread_lock.release)
            try:
                lock = store.lock()
                if isinstance(lock, contextlib.nullcontext):
                    lock.__enter__()
                else:
                    await _acquire_off_loop(
                        lambda: _enter_store_lock(lock), lambda: lock.__exit__(None, None, None)
                    )
                try:
                    yield
                finally:
                    lock.__exit__(None, None, None)
            finally:
                self.thread_lock.release()


def _enter_store_lock(lock: contextlib.AbstractContextManager[object]) -> None:
    try:
        lock.__enter__()
    except filelock.Timeout as exc:
        raise ApiError(
            f"another process held the token store lock for too long: {exc}",
            status=None,
            code="token_store_locked",
        ) from exc


async def _acquire_off_loop(acquire: Callable[[], object], release: Callable[[], object]) -> None:
    """Run a blocking ``acquire`` in a worker thread without leaking it on cancellation."""
    task = asyncio.ensure_future(asyncio.to_thread(acquire))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        # The worker thread cannot be interrupted: once it gets the lock, give it back.
        def release_when_acquired(done: asyncio.Future[object]) -> None:
            if not done.cancelled() and done.exception() is None:
                release()

        task.add_done_callback(release_when_acquired)
        raise


_states: weakref.WeakKeyDictionary[object, StoreState] = weakref.WeakKeyDictionary()
_states_by_id: dict[int, StoreState] = {}
_registry_lock = threading.Lock()


def state_for(store: TokenStore) -> StoreState:
    """Return the one :class:`StoreState` of ``store`` in this process."""
    with _registry_lock:
        try:
            state = _states.get(store)
            if state is None:
                state = _states[store] = StoreState()
        except TypeError:
            # Unhashable or not weak-referenceable custom store: keep its state
            # for the life of the process (one lock, a few bytes).
            state = _states_by_id.setdefault(id(store), StoreState())
        return state
