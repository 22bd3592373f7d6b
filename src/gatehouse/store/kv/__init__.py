"""Key-value store seam: in-process by default, Redis when REDIS_URL is set."""

from __future__ import annotations

from typing import Any

from gatehouse.store.kv.memory import MemoryKV
from gatehouse.store.kv.protocol import KeyValueStore


def create_kv(redis_url: str | None, prefix: str = "", **fallback: Any) -> KeyValueStore:
    """Redis (behind the cache fallback of store/kv/fallback.py) when `redis_url` is set."""
    if redis_url:
        from gatehouse.store.kv.fallback import wrap
        from gatehouse.store.kv.redis import RedisKV

        return wrap(RedisKV(redis_url, prefix), **fallback)
    return MemoryKV()


__all__ = ["KeyValueStore", "MemoryKV", "create_kv"]
