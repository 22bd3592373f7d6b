"""The refresh call itself: ``POST /api/v1/auth/refresh`` with retries, sync and async.

A :class:`Client` lends its own connection pool. A stand-alone
:class:`GatehouseAuth` opens a short-lived client per refresh instead: a
refresh happens once per access-token lifetime, and a pool kept between
refreshes would belong to whichever event loop opened it.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx

from . import _clock
from ._exceptions import ApiError
from ._problem import error_from_response
from ._retry import RetryPolicy
from ._send import asend_with_retries, send_with_retries
from ._tokens import TokenSet

StopCheck = Callable[[], bool]

LOGIN_PATH = "/api/v1/auth/login"
REFRESH_PATH = "/api/v1/auth/refresh"
LOGOUT_PATH = "/api/v1/auth/logout"


class Refresher:
    """Exchanges a refresh token for a new :class:`TokenSet`.

    A refresh is idempotent on the server within its grace window (API.md §3),
    so it is retried like any idempotent call: after connection errors, lost
    answers, 429, 502, 503 and 504, within the retry policy's time budget.
    ``stop_when`` (see :class:`RetrySchedule`) ends the retries early.
    """

    def __init__(
        self,
        url: httpx.URL,
        *,
        retry: RetryPolicy,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None,
        timeout: float | httpx.Timeout,
    ) -> None:
        self._url = url
        self._retry = retry
        self._transport = transport
        self._timeout = timeout
        self.http: httpx.Client | None = None
        self.ahttp: httpx.AsyncClient | None = None

    def refresh(self, refresh_token: str, stop_when: StopCheck | None) -> TokenSet:
        """Refresh, retrying as the policy allows until ``stop_when`` answers true."""
        if self.http is not None:
            return self._refresh_with(self.http, refresh_token, stop_when)
        lent = self._transport if isinstance(self._transport, httpx.BaseTransport) else None
        transport = _LentTransport(lent) if lent is not None else None
        with httpx.Client(transport=transport, timeout=self._timeout) as http:
            return self._refresh_with(http, refresh_token, stop_when)

    async def arefresh(self, refresh_token: str, stop_when: StopCheck | None) -> TokenSet:
        """Async twin of :meth:`refresh`."""
        if self.ahttp is not None:
            return await self._arefresh_with(self.ahttp, refresh_token, stop_when)
        lent = self._transport if isinstance(self._transport, httpx.AsyncBaseTransport) else None
        transport = _LentAsyncTransport(lent) if lent is not None else None
        async with httpx.AsyncClient(transport=transport, timeout=self._timeout) as http:
            return await self._arefresh_with(http, refresh_token, stop_when)

    def _refresh_with(
        self, http: httpx.Client, refresh_token: str, stop_when: StopCheck | None
    ) -> TokenSet:
        request = http.build_request("POST", self._url, json={"refresh_token": refresh_token})
        response = send_with_retries(
            http, request, auth=None, policy=self._retry, idempotent=True, stop_when=stop_when
        )
        return read_token_pair(response)

    async def _arefresh_with(
        self, http: httpx.AsyncClient, refresh_token: str, stop_when: StopCheck | None
    ) -> TokenSet:
        request = http.build_request("POST", self._url, json={"refresh_token": refresh_token})
        response = await asend_with_retries(
            http, request, auth=None, policy=self._retry, idempotent=True, stop_when=stop_when
        )
        return read_token_pair(response)


def read_token_pair(response: httpx.Response) -> TokenSet:
    """Turn a login/refresh answer into a :class:`TokenSet`, or raise its error.

    The tokens' clock starts when the request was sent: the time the answer
    arrived minus how long it took.
    """
    if response.is_error:
        raise error_from_response(response)
    try:
        elapsed = response.elapsed.total_seconds()
    except RuntimeError:
        elapsed = 0.0
    try:
        body = response.json()
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        return TokenSet.from_token_pair(
            body, sent_wall=_clock.wall() - elapsed, sent_mono=_clock.monotonic() - elapsed
        )
    except (ValueError, json.JSONDecodeError) as exc:
        raise ApiError(
            f"the server's token answer was malformed: {exc}",
            status=response.status_code,
            code="invalid_response",
            request_id=response.headers.get("x-request-id"),
        ) from exc


class _LentTransport(httpx.BaseTransport):
    """A caller's transport used by a short-lived client that must not close it."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._inner.handle_request(request)

    def close(self) -> None:
        pass  # the caller owns the transport


class _LentAsyncTransport(httpx.AsyncBaseTransport):
    """Async twin of :class:`_LentTransport`."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        pass  # the caller owns the transport
