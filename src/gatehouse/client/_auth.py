"""``GatehouseAuth``: an ``httpx.Auth`` flow that keeps a Gatehouse session alive.

Per request it (1) refreshes first if the access token is about to expire,
(2) sends ``Authorization: Bearer <access>``, (3) on 401 ``token_expired`` or
``token_invalid`` refreshes once and resends once, and (4) on 401
``session_revoked`` clears the store and raises :class:`SessionExpired`.
Refreshes are single-flight per store (see ``_session.py``) and use their
own retry loop; requests to any origin other than ``base_url`` pass through
untouched, so the token never leaks to another host.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

import httpx

from ._problem import REFRESHABLE_CODES, error_from_response, problem_code
from ._refresh import REFRESH_PATH, Refresher
from ._retry import RetryPolicy
from ._session import TokenKeeper
from ._stores import MemoryTokenStore, TokenStore
from ._tokens import TokenSet


class GatehouseAuth(httpx.Auth):
    """Authenticate ``httpx`` requests with the session in ``token_store``.

    Usable with any ``httpx.Client`` or ``httpx.AsyncClient``::

        auth = GatehouseAuth("http://127.0.0.1:8000", token_store=FileTokenStore(path))
        httpx.get("http://127.0.0.1:8000/api/v1/users/profile", auth=auth)

    Refresh calls go to ``base_url`` through a short-lived client of their
    own (built on ``transport`` when given), so the flow holds no connections
    and needs no closing. It never logs in: use :class:`Client` for that,
    sharing the store. Request retries are :class:`Client`'s job, not the flow's.
    """

    def __init__(
        self,
        base_url: str | httpx.URL,
        token_store: TokenStore | None = None,
        *,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        timeout: float | httpx.Timeout = 10.0,
    ) -> None:
        self._base_url = httpx.URL(str(base_url).rstrip("/"))
        if self._base_url.scheme not in ("http", "https") or not self._base_url.host:
            raise ValueError(f"base_url must be an absolute http(s) URL, got {str(base_url)!r}")
        self._store: TokenStore = token_store if token_store is not None else MemoryTokenStore()
        self._refresher = Refresher(
            self._url(REFRESH_PATH),
            retry=retry if retry is not None else RetryPolicy(),
            transport=transport,
            timeout=timeout,
        )
        self._keeper = TokenKeeper(self._store, self._refresher.refresh, self._refresher.arefresh)

    @property
    def token_store(self) -> TokenStore:
        """The store holding this session's tokens."""
        return self._store

    @property
    def base_url(self) -> httpx.URL:
        """The Gatehouse server this flow authenticates against."""
        return self._base_url

    def _url(self, path: str) -> httpx.URL:
        """Return the absolute URL of an API ``path`` under ``base_url``."""
        return httpx.URL(str(self._base_url) + "/" + path.lstrip("/"))

    # -- the flow -------------------------------------------------------------------------

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """Sync flow: see the module docstring."""
        if not self._same_origin(request):
            yield request
            return
        tokens = self._keeper.tokens_for_request()
        for attempt in (1, 2):
            _apply(request, tokens)
            response = yield request
            if tokens is None or response.status_code != 401:
                return
            response.read()
            code = problem_code(response)
            if code == "session_revoked":
                self._keeper.forget(tokens)
                raise error_from_response(response)
            if code not in REFRESHABLE_CODES or attempt == 2:
                return
            tokens = self._keeper.refresh_rejected(tokens)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Async flow: the twin of :meth:`sync_auth_flow`."""
        if not self._same_origin(request):
            yield request
            return
        tokens = await self._keeper.atokens_for_request()
        for attempt in (1, 2):
            _apply(request, tokens)
            response = yield request
            if tokens is None or response.status_code != 401:
                return
            await response.aread()
            code = problem_code(response)
            if code == "session_revoked":
                await self._keeper.aforget(tokens)
                raise error_from_response(response)
            if code not in REFRESHABLE_CODES or attempt == 2:
                return
            tokens = await self._keeper.arefresh_rejected(tokens)

    def _same_origin(self, request: httpx.Request) -> bool:
        url, base = request.url, self._base_url
        return (url.scheme, url.host, _port(url)) == (base.scheme, base.host, _port(base))

    def _use_http(
        self, http: httpx.Client | None = None, ahttp: httpx.AsyncClient | None = None
    ) -> None:
        """Let a :class:`Client`/:class:`AsyncClient` lend its connection pool for refreshes."""
        self._refresher.http = http
        self._refresher.ahttp = ahttp


def _apply(request: httpx.Request, tokens: TokenSet | None) -> None:
    # Without a session the request goes out as the caller built it.
    if tokens is not None:
        request.headers["Authorization"] = f"Bearer {tokens.access_token}"


def _port(url: httpx.URL) -> int | None:
    return url.port if url.port is not None else {"http": 80, "https": 443}.get(url.scheme)
