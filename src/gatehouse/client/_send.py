"""Send one request with retries: the thin sync and async loops around :class:`RetrySchedule`."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from . import _clock
from ._exceptions import TransportError
from ._retry import RetryPolicy, RetrySchedule


def transport_error(error: httpx.TransportError, attempts: int) -> TransportError:
    """Describe an httpx transport failure as the SDK's :class:`TransportError`."""
    kind = type(error).__name__
    reason = f": {error}" if str(error) else ""
    return TransportError(
        f"{kind} after {attempts} attempt(s){reason}",
        status=None,
        code="transport_error",
    )


def send_with_retries(
    http: httpx.Client,
    request: httpx.Request,
    *,
    auth: httpx.Auth | None,
    policy: RetryPolicy,
    idempotent: bool,
    stop_when: Callable[[], bool] | None = None,
) -> httpx.Response:
    """Send ``request``, retrying as ``policy`` allows; return the last response.

    ``stop_when`` is :class:`RetrySchedule`'s early give-up check. Raises
    :class:`TransportError` when no answer arrived. Errors raised by
    ``auth`` (for instance :class:`SessionExpired`) propagate unchanged.
    """
    schedule = RetrySchedule(policy, idempotent=idempotent, stop_when=stop_when)
    while True:
        try:
            response = http.send(request, auth=auth)
        except httpx.TransportError as error:
            delay = schedule.after_error(error)
            if delay is None:
                raise transport_error(error, schedule.attempts) from error
            _clock.sleep(delay)
            continue
        delay = schedule.after_response(response)
        if delay is None:
            return response
        response.close()
        _clock.sleep(delay)


async def asend_with_retries(
    http: httpx.AsyncClient,
    request: httpx.Request,
    *,
    auth: httpx.Auth | None,
    policy: RetryPolicy,
    idempotent: bool,
    stop_when: Callable[[], bool] | None = None,
) -> httpx.Response:
    """Async twin of :func:`send_with_retries`."""
    schedule = RetrySchedule(policy, idempotent=idempotent, stop_when=stop_when)
    while True:
        try:
            response = await http.send(request, auth=auth)
        except httpx.TransportError as error:
            delay = schedule.after_error(error)
            if delay is None:
                raise transport_error(error, schedule.attempts) from error
            await _clock.asleep(delay)
            continue
        delay = schedule.after_response(response)
        if delay is None:
            return response
        await response.aclose()
        await _clock.asleep(delay)
