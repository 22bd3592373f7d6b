"""The revocation check on the request path (auth/revocation.py): no I/O while this process's
copy is fresh, the key-value store's facts once it is not.

While the poller keeps the copy loaded (its last load began under FRESH = 0.9 s ago), every
fact committed anywhere is already in it, so a check reads nothing: the per-request MGET this
replaced cost 0.2 ms of CPU on Redis (bench/RESULTS.md). When the poller falls behind (the
database slow or unreachable from this instance), a fact another instance published to the
shared store must still refuse the token.
"""

from __future__ import annotations

import time
import uuid

import pytest

from gatehouse.auth.access_tokens import AccessClaims
from gatehouse.auth.revocation import FRESH, Revocations
from gatehouse.errors import SessionRevoked
from gatehouse.store.kv.memory import MemoryKV


class CountingKV(MemoryKV):
    """The in-process store, counting the reads a check makes."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get_many(self, keys: list[str]) -> list[str | None]:
        self.reads += 1
        return await super().get_many(keys)


def token(sid: str = "session-1") -> AccessClaims:
    now = int(time.time())
    return AccessClaims(sub="user-1", sid=sid, roles=["user"], iat=now - 1, exp=now + 900,
                        jti=str(uuid.uuid4()))


def loaded(kv: CountingKV, seconds_ago: float) -> Revocations:
    revocations = Revocations(kv, access_ttl=900)
    revocations.ready = True
    revocations._loaded_at = time.time() - seconds_ago  # what the poller's last load set
    return revocations


@pytest.mark.asyncio
async def test_a_fresh_copy_answers_without_reading_the_store() -> None:
    kv = CountingKV()
    revocations = loaded(kv, seconds_ago=0.1)
    for _ in range(100):
        await revocations.check(token())
    assert kv.reads == 0
    await revocations.revoke_sessions(["session-1"], "logout")  # this process's own logout
    with pytest.raises(SessionRevoked):
        await revocations.check(token())
    assert kv.reads == 0


@pytest.mark.asyncio
async def test_a_stale_copy_reads_what_another_instance_published() -> None:
    kv = CountingKV()
    await kv.set("rev:session-1", "logout", 60)  # published by another instance
    revocations = loaded(kv, seconds_ago=FRESH + 0.5)  # the poller fell behind
    with pytest.raises(SessionRevoked):
        await revocations.check(token())
    await revocations.check(token("session-2"))
    assert kv.reads == 2
