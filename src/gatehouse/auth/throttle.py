"""Login throttling against brute force (API.md §4), on the key-value store.

Three counters, all configurable:
- email+IP: after `max_failures` failures within `failure_window`, the pair
  waits 1 s, then 2 s, 4 s, ... (doubling per further failure, capped at
  `max_wait`). An answer of 429 is not checked against the password and does
  not count; the first wrong password after the wait answers 401 and doubles
  the next wait.
- email (all IPs): more than `email_ceiling` failures within `email_window`,
  except for a client showing a valid `gh_device` cookie of that account
  (`known_device`, see auth/devices.py): strangers cannot lock the owner out.
  Its failures still count, and the other two counters still apply to it.
- IP (all emails): more than `ip_ceiling` failures within `ip_window`.
Unknown emails are counted exactly like real ones, so the answers reveal
nothing. Keys hold a hash of the email, never the address. `ip` is the
client's rate key (api/client_ip.py): an IPv6 client counts by its /64.

Parallel guesses: `check` runs before the (slow) password check, so a burst
of parallel attempts would all pass it. `failed` and `succeeded` therefore
check again when the attempt settles and raise LoginThrottled (without
counting) when the pair got locked meanwhile: the caller answers 429 and the
guess yields no verdict. On the in-process store check-and-count runs without
yielding, so exactly `max_failures` verdicts come out of any burst; on Redis
the gap is a few round trips instead of a password hash.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from gatehouse.errors import LoginThrottled
from gatehouse.store.kv import KeyValueStore


@dataclass(frozen=True)
class ThrottlePolicy:
    max_failures: int = 5
    failure_window: int = 900
    max_wait: int = 900
    email_ceiling: int = 100
    email_window: int = 3600
    ip_ceiling: int = 100
    ip_window: int = 900


def _email_key(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()[:32]


class LoginThrottle:
    def __init__(self, kv: KeyValueStore, policy: ThrottlePolicy) -> None:
        self.kv = kv
        self.policy = policy

    async def check(self, email: str, ip: str, *, known_device: bool = False) -> None:
        """Raise LoginThrottled, with the longest wait in force, when this attempt must not run.

        `known_device`: the client proved an earlier sign-in to this account, so the per-email
        ceiling (which anyone can push over) does not apply to it.
        """
        e = _email_key(email)
        lock_key, email_key, ip_key = f"ll:{e}:{ip}", f"le:{e}", f"li:{ip}"
        lock, per_email, per_ip = await self.kv.get_many([lock_key, email_key, ip_key])
        blocking = []
        if lock is not None:
            blocking.append(lock_key)
        over_ceiling = per_email is not None and int(per_email) > self.policy.email_ceiling
        if over_ceiling and not known_device:
            blocking.append(email_key)
        if per_ip is not None and int(per_ip) > self.policy.ip_ceiling:
            blocking.append(ip_key)
        if blocking:
            # Retry-After must outlast every lock in force, or the retry is refused again.
            raise LoginThrottled(max([await self._wait(key) for key in blocking]))

    async def _wait(self, key: str) -> int:
        left = await self.kv.ttl(key)
        return max(1, math.ceil(left)) if left is not None else 1

    async def failed(self, email: str, ip: str, *, known_device: bool = False) -> None:
        """Count a failed attempt; raise LoginThrottled instead if the pair got locked meanwhile."""
        await self.check(email, ip, known_device=known_device)
        e = _email_key(email)
        p = self.policy
        count = await self.kv.incr(f"lf:{e}:{ip}", p.failure_window)
        await self.kv.incr(f"le:{e}", p.email_window)
        await self.kv.incr(f"li:{ip}", p.ip_window)
        if count >= p.max_failures:
            wait = min(2 ** min(count - p.max_failures, 30), p.max_wait)
            await self.kv.set(f"ll:{e}:{ip}", str(count), wait)

    async def succeeded(self, email: str, ip: str, *, known_device: bool = False) -> None:
        """Reset the email+IP counter; raise LoginThrottled instead if it got locked meanwhile."""
        await self.check(email, ip, known_device=known_device)
        e = _email_key(email)
        await self.kv.delete(f"lf:{e}:{ip}", f"ll:{e}:{ip}")

    async def unlock(self, email: str) -> None:
        """Clear every counter of the account (all IPs)."""
        e = _email_key(email)
        await self.kv.delete_prefix(f"lf:{e}:")
        await self.kv.delete_prefix(f"ll:{e}:")
        await self.kv.delete(f"le:{e}")
