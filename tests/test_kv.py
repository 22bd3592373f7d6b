"""Conformance suite for the key-value store protocol: in-process and Redis behave alike."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from gatehouse.store.kv import KeyValueStore, MemoryKV
from gatehouse.store.kv.redis import RedisKV
from tests.conftest import REDIS_URL


@pytest_asyncio.fixture(params=["memory", "redis"])
async def kv(request: pytest.FixtureRequest) -> AsyncIterator[KeyValueStore]:
    store: KeyValueStore
    if request.param == "memory":
        store = MemoryKV()
    else:
        store = RedisKV(REDIS_URL)
        try:
            await store.ping()
        except Exception as exc:
            pytest.fail(f"Redis at {REDIS_URL} is not reachable ({type(exc).__name__}); start it")
        await store.delete_prefix("kvtest:")
    yield store
    await store.delete_prefix("kvtest:")
    await store.close()


def test_both_backends_satisfy_the_protocol() -> None:
    """MemoryKV and RedisKV are structurally KeyValueStore implementations."""
    assert isinstance(MemoryKV(), KeyValueStore)
    assert isinstance(RedisKV(REDIS_URL), KeyValueStore)


@pytest.mark.asyncio
async def test_set_get_delete(kv: KeyValueStore) -> None:
    """A stored value reads back until it is deleted."""
    assert await kv.get("kvtest:a") is None
    await kv.set("kvtest:a", "1")
    assert await kv.get("kvtest:a") == "1"
    await kv.delete("kvtest:a")
    assert await kv.get("kvtest:a") is None


@pytest.mark.asyncio
async def test_values_expire_after_their_ttl(kv: KeyValueStore) -> None:
    """A value set with a TTL is gone once the TTL passes, and ttl() reports what is left."""
    await kv.set("kvtest:t", "x", ttl=0.3)
    left = await kv.ttl("kvtest:t")
    assert left is not None and 0 < left <= 0.3
    await asyncio.sleep(0.45)
    assert await kv.get("kvtest:t") is None
    assert await kv.ttl("kvtest:t") is None


@pytest.mark.asyncio
async def test_incr_counts_atomically_and_keeps_the_first_ttl(kv: KeyValueStore) -> None:
    """Concurrent increments are all counted; the window starts at the first increment."""
    results = await asyncio.gather(*[kv.incr("kvtest:c", ttl=5) for _ in range(50)])
    assert sorted(results) == list(range(1, 51))
    left = await kv.ttl("kvtest:c")
    assert left is not None and 4 < left <= 5


@pytest.mark.asyncio
async def test_set_if_absent_stores_once(kv: KeyValueStore) -> None:
    """Only the first set_if_absent for a key succeeds while it lives."""
    outcomes = await asyncio.gather(*[kv.set_if_absent("kvtest:once", "v", ttl=5) for _ in range(10)])
    assert outcomes.count(True) == 1


@pytest.mark.asyncio
async def test_get_many_keeps_order_and_misses(kv: KeyValueStore) -> None:
    """get_many answers in the order asked, with None for missing keys."""
    await kv.set("kvtest:m1", "a")
    await kv.set("kvtest:m3", "c")
    assert await kv.get_many(["kvtest:m1", "kvtest:m2", "kvtest:m3"]) == ["a", None, "c"]


@pytest.mark.asyncio
async def test_delete_prefix_removes_only_matching_keys(kv: KeyValueStore) -> None:
    """delete_prefix removes the keys under a prefix and leaves the others."""
    for key in ("kvtest:p:1", "kvtest:p:2", "kvtest:q:1"):
        await kv.set(key, "x")
    assert await kv.delete_prefix("kvtest:p:") == 2
    assert await kv.get_many(["kvtest:p:1", "kvtest:q:1"]) == [None, "x"]
