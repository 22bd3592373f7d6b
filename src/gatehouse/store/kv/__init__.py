"""Key-value store seam: in-process by default, Redis when REDIS_URL is set."""

from __future__ import annotations

from gatehouse.store.kv.memory import MemoryKV
from gatehouse.store.kv.protocol import KeyValueStore


def create_kv(redis_url: str | None, prefix: str = "") -> KeyValueStore:
    if redis_url:
        from gatehouse.store.kv.redis import RedisKV

        return RedisKV(redis_url, prefix)
    return MemoryKV()


__all__ = ["KeyValueStore", "MemoryKV", "create_kv"]
