"""One refresh in flight per session, however many threads and tasks need one."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from gatehouse.client import AsyncClient, Client, FileTokenStore, MemoryTokenStore, TokenStore

if TYPE_CHECKING:
    from conftest import FakeClock, FakeGatehouse

BASE = "http://gatehouse.test"
N = 32


def run_threads(count: int, target: Callable[[], Any]) -> list[Any]:
    """Start ``count`` threads at once (behind a barrier) and return their results."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def worker(index: int) -> None:
        barrier.wait()
        try:
            results[index] = target()
        except Exception as error:  # collected and asserted on below
            results[index] = error

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def login(fake: FakeGatehouse, store: TokenStore) -> None:
    with Client(BASE, token_store=store, transport=fake.transport) as client:
        client.login(fake.email, fake.password)


def test_expired_token_seen_by_32_threads_is_refreshed_once(
    fake: FakeGatehouse, expire: Any
) -> None:
    """32 threads that all find the access token expired cause exactly one refresh."""
    store = MemoryTokenStore()
    login(fake, store)
    expire(store)
    fake.refresh_delay = 0.05  # keep the refresh in flight while the others arrive
    with Client(BASE, token_store=store, transport=fake.transport) as client:
        results = run_threads(N, client.profile)
    assert [r["email"] if isinstance(r, dict) else r for r in results] == [fake.email] * N
    assert (fake.stats["refresh_calls"], fake.stats["rotations"]) == (1, 1)
    assert fake.stats["grace_hits"] == 0


def test_token_expired_401_seen_by_32_threads_is_refreshed_once(fake: FakeGatehouse) -> None:
    """32 threads that all get 401 token_expired share one refresh and all succeed on retry."""
    store = MemoryTokenStore()
    login(fake, store)
    fake.reject_all_access_tokens()
    fake.refresh_delay = 0.05
    with Client(BASE, token_store=store, transport=fake.transport) as client:
        results = run_threads(N, client.profile)
    assert [r["email"] if isinstance(r, dict) else r for r in results] == [fake.email] * N
    assert (fake.stats["refresh_calls"], fake.stats["grace_hits"]) == (1, 0)


def test_separate_clients_sharing_one_store_refresh_once(fake: FakeGatehouse, expire: Any) -> None:
    """Clients that share a store share its lock: one refresh for all of them."""
    store = MemoryTokenStore()
    login(fake, store)
    expire(store)
    fake.refresh_delay = 0.05

    def own_client() -> dict[str, Any]:
        with Client(BASE, token_store=store, transport=fake.transport) as client:
            return client.profile()

    results = run_threads(8, own_client)
    assert [r["email"] for r in results] == [fake.email] * 8
    assert fake.stats["refresh_calls"] == 1


def test_two_file_stores_on_one_path_refresh_once(
    fake: FakeGatehouse, expire: Any, tmp_path: Any
) -> None:
    """Two FileTokenStore objects on one path (as in two processes) re-read under the file lock."""
    path = tmp_path / "tokens.json"
    login(fake, FileTokenStore(path))
    expire(FileTokenStore(path))
    fake.refresh_delay = 0.05
    stores = [FileTokenStore(path) for _ in range(4)]

    def through(store: FileTokenStore) -> Callable[[], Any]:
        def call() -> Any:
            with Client(BASE, token_store=store, transport=fake.transport) as client:
                return client.profile()

        return call

    callers = [through(stores[i % 4]) for i in range(16)]
    results = run_threads(16, lambda: callers.pop()())
    assert [r["email"] if isinstance(r, dict) else r for r in results] == [fake.email] * 16
    assert (fake.stats["refresh_calls"], fake.stats["grace_hits"]) == (1, 0)


@pytest.mark.asyncio
async def test_expired_token_seen_by_32_tasks_is_refreshed_once(
    fake: FakeGatehouse, expire: Any
) -> None:
    """32 asyncio tasks that all find the access token expired cause exactly one refresh."""
    store = MemoryTokenStore()
    login(fake, store)
    expire(store)
    fake.refresh_delay = 0.05
    async with AsyncClient(BASE, token_store=store, transport=fake.async_transport) as client:
        results = await asyncio.gather(*(client.profile() for _ in range(N)))
    assert [r["email"] for r in results] == [fake.email] * N
    assert (fake.stats["refresh_calls"], fake.stats["grace_hits"]) == (1, 0)


@pytest.mark.asyncio
async def test_token_expired_401_seen_by_32_tasks_is_refreshed_once(fake: FakeGatehouse) -> None:
    """32 tasks that all get 401 token_expired share one refresh and all succeed on retry."""
    store = MemoryTokenStore()
    login(fake, store)
    fake.reject_all_access_tokens()
    fake.refresh_delay = 0.05
    async with AsyncClient(BASE, token_store=store, transport=fake.async_transport) as client:
        results = await asyncio.gather(*(client.profile() for _ in range(N)))
    assert [r["email"] for r in results] == [fake.email] * N
    assert (fake.stats["refresh_calls"], fake.stats["answered_401"]) == (1, N)


@pytest.mark.asyncio
async def test_tasks_on_a_file_store_refresh_once(
    fake: FakeGatehouse, expire: Any, tmp_path: Any
) -> None:
    """Async tasks on a FileTokenStore take the file lock off the loop and refresh once."""
    store = FileTokenStore(tmp_path / "tokens.json")
    login(fake, store)
    expire(store)
    fake.refresh_delay = 0.05
    async with AsyncClient(BASE, token_store=store, transport=fake.async_transport) as client:
        results = await asyncio.gather(*(client.profile() for _ in range(N)))
    assert [r["email"] for r in results] == [fake.email] * N
    assert fake.stats["refresh_calls"] == 1


def test_threads_and_event_loops_mixed_refresh_once(fake: FakeGatehouse, expire: Any) -> None:
    """Sync threads and tasks on two event loops sharing one store still refresh once."""
    store = MemoryTokenStore()
    login(fake, store)
    expire(store)
    fake.refresh_delay = 0.05

    def sync_call() -> Any:
        with Client(BASE, token_store=store, transport=fake.transport) as client:
            return [client.profile() for _ in range(4)]

    def async_call() -> Any:
        async def main() -> Any:
            async with AsyncClient(
                BASE, token_store=store, transport=fake.async_transport
            ) as client:
                return await asyncio.gather(*(client.profile() for _ in range(4)))

        return asyncio.run(main())

    callers = [sync_call, async_call] * 4
    results = run_threads(len(callers), lambda: callers.pop()())
    flat = [item for result in results for item in result]
    assert [r["email"] for r in flat] == [fake.email] * 32
    assert fake.stats["refresh_calls"] == 1


def test_proactive_refresh_happens_once_per_lifetime(fake: FakeGatehouse, clock: FakeClock) -> None:
    """Requests in the refresh margin refresh once, early; later ones use the new token."""
    store = MemoryTokenStore()
    with Client(BASE, token_store=store, transport=fake.transport) as client:
        client.login(fake.email, fake.password)
        clock.advance(900 - 31)  # just outside min(30 s, 20 % of 900 s)
        client.profile()
        assert fake.stats["refresh_calls"] == 0
        clock.advance(2)
        for _ in range(5):
            client.profile()
        assert fake.stats["refresh_calls"] == 1
        clock.advance(900 - 29)
        client.profile()
    assert fake.stats["refresh_calls"] == 2
    assert fake.stats["answered_401"] == 0
