"""When to retry a call and how long to wait first (no I/O).

What is retried:

* connect-phase failures (connection refused, connect timeout, no pooled
  connection): the request never left this machine, so any method is safe;
* other transport failures (read timeout, connection reset), and 429, 502,
  503, 504 answers: only for idempotent calls (GET, HEAD, OPTIONS, PUT,
  DELETE, and the SDK's refresh and logout, which are idempotent by design).

An early refresh (one made while the access token still works) passes a
``stop_when`` check: it gives up instead of waiting while the working token is
still usable, and goes on retrying like any idempotent call once it is not.

Waits grow exponentially (``backoff * 2**n``, capped at ``max_backoff``) with
"equal jitter" (a random point in the upper half) so many clients do not retry
in lock-step; a ``Retry-After`` from the server is the minimum wait. Nothing
is retried once ``max_attempts`` calls were made or when the next wait would
end past ``budget`` seconds after the first attempt: the caller then gets the
last error at once rather than after a pointless sleep.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import httpx

from . import _clock
from ._problem import parse_retry_after

IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
#: Failures before the request was sent: safe to retry for any method.
_CONNECT_ERRORS: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: Failures after (part of) the request may have reached the server.
_AFTER_SEND_ERRORS: Final = (
    httpx.ReadError,
    httpx.ReadTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.RemoteProtocolError,
)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard a client retries; the defaults suit interactive use.

    ``max_attempts`` counts the first attempt; ``backoff`` is the first wait
    (before jitter), doubling up to ``max_backoff``; ``budget`` caps the total
    time of one call, waits included. ``RetryPolicy(max_attempts=1)`` turns
    retries off.

    With the defaults the budget, not the attempt count, ends the retries:
    even the shortest jittered waits (0.25 + 0.5 + 1 + 2 + 4 x 7 s) pass 30 s
    before a twelfth attempt, and the last attempt comes more than 22 s after
    the first (no wait exceeds 8 s), so a server that restarts slowly on a
    loaded machine is ridden out.
    """

    max_attempts: int = 12
    backoff: float = 0.5
    max_backoff: float = 8.0
    budget: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff < 0 or self.max_backoff < 0 or self.budget < 0:
            raise ValueError("backoff, max_backoff and budget must not be negative")

    def backoff_delay(self, retry_number: int) -> float:
        """The jittered wait before retry number ``retry_number`` (1 for the first retry)."""
        ceiling = min(self.max_backoff, self.backoff * 2 ** (retry_number - 1))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311  # jitter, not a secret


def is_idempotent(method: str) -> bool:
    """Whether repeating a request with this method has no extra effect."""
    return method.upper() in IDEMPOTENT_METHODS


class RetrySchedule:
    """The retry state of one call: ask it after each attempt whether to go again.

    ``stop_when``, if given, is asked before each retry; when it answers true
    the schedule gives up (the caller has a fallback that beats waiting).
    """

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        idempotent: bool,
        stop_when: Callable[[], bool] | None = None,
    ) -> None:
        self._policy = policy
        self._idempotent = idempotent
        self._stop_when = stop_when
        self._started = _clock.monotonic()
        self._attempts = 1

    @property
    def attempts(self) -> int:
        """How many attempts were made so far."""
        return self._attempts

    def after_error(self, error: httpx.TransportError) -> float | None:
        """Seconds to wait before retrying after ``error``, or ``None`` to give up."""
        if isinstance(error, _CONNECT_ERRORS) or (
            self._idempotent and isinstance(error, _AFTER_SEND_ERRORS)
        ):
            return self._next_delay(None)
        return None

    def after_response(self, response: httpx.Response) -> float | None:
        """Seconds to wait before retrying after ``response``, or ``None`` to keep it."""
        if not self._idempotent or response.status_code not in RETRY_STATUSES:
            return None
        return self._next_delay(parse_retry_after(response.headers.get("retry-after")))

    def _next_delay(self, retry_after: float | None) -> float | None:
        if self._attempts >= self._policy.max_attempts:
            return None
        if self._stop_when is not None and self._stop_when():
            return None  # the caller has something better than waiting
        delay = self._policy.backoff_delay(self._attempts)
        if retry_after is not None:
            delay = max(delay, retry_after)
        elapsed = _clock.monotonic() - self._started
        if elapsed + delay > self._policy.budget:
            return None
        self._attempts += 1
        return delay
