"""Redis key-value store: shared by every process and host (redis-py asyncio).

Every key is stored under `prefix` (GATEHOUSE_REDIS_PREFIX): callers name keys
without it, and `delete_prefix` never reaches past it, so deployments sharing
one Redis never see, count or delete each other's keys.
"""

from __future__ import annotations

import math

from redis.asyncio import Redis, RedisCluster

from gatehouse.store.kv.redis_url import close_client, redis_client

# INCR then set the expiry only for a new key, atomically.
_INCR = """
local v = redis.call('INCR', KEYS[1])
if v == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return v
"""


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _ms(ttl: float) -> int:
    return max(1, math.ceil(ttl * 1000))


class RedisKV:
    name = "redis"

    def __init__(self, url: str, prefix: str = "") -> None:
        self.url = url
        self.prefix = prefix
        # One server, a Sentinel-watched master or a Cluster (store/kv/redis_url.py).
        self._redis: Redis | RedisCluster = redis_client(
            url, decode_responses=True, socket_timeout=2, socket_connect_timeout=2
        )
        # Typed for Redis only; a Cluster runs a one-key script on the key's node all the same.
        self._incr = self._redis.register_script(_INCR)  # type: ignore[misc]

    def _k(self, key: str) -> str:
        return self.prefix + key

    async def get(self, key: str) -> str | None:
        value: str | None = await self._redis.get(self._k(key))
        return value

    async def get_many(self, keys: list[str]) -> list[str | None]:
        if not keys:
            return []
        names = [self._k(k) for k in keys]
        # A Cluster refuses MGET across hash slots; mget_nonatomic splits it per slot.
        if isinstance(self._redis, RedisCluster):
            return list(await self._redis.mget_nonatomic(names))
        values: list[str | None] = await self._redis.mget(names)
        return values

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        await self._redis.set(self._k(key), value, px=None if ttl is None else _ms(ttl))

    async def set_if_absent(self, key: str, value: str, ttl: float) -> bool:
        return bool(await self._redis.set(self._k(key), value, px=_ms(ttl), nx=True))

    async def delete(self, *keys: str) -> None:
        # On a Cluster redis-py splits a multi-key DEL per hash slot itself.
        if keys:
            await self._redis.delete(*(self._k(k) for k in keys))

    async def incr(self, key: str, ttl: float) -> int:
        return int(await self._incr(keys=[self._k(key)], args=[_ms(ttl)]))

    async def ttl(self, key: str) -> float | None:
        ms = int(await self._redis.pttl(self._k(key)))
        return None if ms < 0 else ms / 1000

    async def delete_prefix(self, prefix: str) -> int:
        count = 0
        # On a Cluster scan_iter walks every primary in turn.
        pattern = _glob_escape(self._k(prefix)) + "*"
        async for key in self._redis.scan_iter(match=pattern, count=500):
            count += int(await self._redis.delete(key))
        return count

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def close(self) -> None:
        await close_client(self._redis)
