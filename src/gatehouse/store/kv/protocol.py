"""The key-value store protocol every backend implements (conformance suite: tests/test_kv.py).

Values are strings. TTLs are seconds (floats allowed). Every operation is
atomic on its own; nothing here spans keys except `get_many`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class KeyValueStore(Protocol):
    name: str

    async def get(self, key: str) -> str | None: ...

    async def get_many(self, keys: list[str]) -> list[str | None]: ...

    async def set(self, key: str, value: str, ttl: float | None = None) -> None: ...

    async def set_if_absent(self, key: str, value: str, ttl: float) -> bool:
        """Store only if the key does not exist; True when this call stored it."""
        ...

    async def delete(self, *keys: str) -> None: ...

    async def incr(self, key: str, ttl: float) -> int:
        """Add one; a new key starts at 1 and expires after `ttl` (existing keys keep theirs)."""
        ...

    async def ttl(self, key: str) -> float | None:
        """Seconds left, or None when the key does not exist or never expires."""
        ...

    async def delete_prefix(self, prefix: str) -> int: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...
