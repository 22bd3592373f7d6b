"""In-process key-value store: one process only (more workers need REDIS_URL)."""

from __future__ import annotations

import time


class MemoryKV:
    name = "memory"

    def __init__(self) -> None:
        self._data: dict[str, tuple[str, float | None]] = {}
        self._ops = 0

    def _live(self, key: str) -> tuple[str, float | None] | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[1] is not None and item[1] <= time.monotonic():
            del self._data[key]
            return None
        return item

    def _sweep(self) -> None:
        # Amortised expiry so keys that are never read again do not pile up.
        self._ops += 1
        if self._ops % 1024:
            return
        now = time.monotonic()
        for key in [k for k, (_, exp) in self._data.items() if exp is not None and exp <= now]:
            del self._data[key]

    async def get(self, key: str) -> str | None:
        item = self._live(key)
        return None if item is None else item[0]

    async def get_many(self, keys: list[str]) -> list[str | None]:
        out: list[str | None] = []
        for key in keys:
            item = self._live(key)
            out.append(None if item is None else item[0])
        return out

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self._sweep()
        self._data[key] = (value, None if ttl is None else time.monotonic() + ttl)

    async def set_if_absent(self, key: str, value: str, ttl: float) -> bool:
        if self._live(key) is not None:
            return False
        await self.set(key, value, ttl)
        return True

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._data.pop(key, None)

    async def incr(self, key: str, ttl: float) -> int:
        item = self._live(key)
        if item is None:
            await self.set(key, "1", ttl)
            return 1
        value = int(item[0]) + 1
        self._data[key] = (str(value), item[1])
        return value

    async def ttl(self, key: str) -> float | None:
        item = self._live(key)
        if item is None or item[1] is None:
            return None
        return max(0.0, item[1] - time.monotonic())

    async def delete_prefix(self, prefix: str) -> int:
        keys = [k for k in self._data if k.startswith(prefix)]
        for key in keys:
            del self._data[key]
        return len(keys)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._data.clear()
