"""``Client``: the synchronous Gatehouse client, a thin I/O layer over the shared core.

Everything that decides something lives elsewhere (``_base.py``, ``_auth.py``,
``_session.py``, ``_retry.py``, ``_problem.py``); this class only sends and
sleeps. ``_async_client.py`` mirrors it method for method.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import httpx

from ._base import PROFILE_PATH, BaseClient
from ._exceptions import ApiError
from ._refresh import LOGIN_PATH, LOGOUT_PATH, read_token_pair
from ._retry import RetryPolicy
from ._send import send_with_retries
from ._stores import TokenStore


class Client(BaseClient):
    """A synchronous Gatehouse client; safe to share between threads.

    ``base_url`` is the server (``http://127.0.0.1:8000``); request paths are
    relative to it. Tokens live in ``token_store`` (a :class:`MemoryTokenStore`
    by default); a store that already holds a session is used without logging
    in again. ``transport`` replaces httpx's network transport (for tests).
    """

    def __init__(
        self,
        base_url: str,
        *,
        token_store: TokenStore | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | httpx.Timeout = 10.0,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(base_url, token_store=token_store, retry=retry, timeout=timeout)
        self._http = httpx.Client(transport=transport, timeout=timeout, headers=headers)
        self._auth._use_http(http=self._http)

    def login(self, email: str, password: str, *, force: bool = False) -> dict[str, Any]:
        """Log in and store the session; return the user.

        If the store already holds a session for this email it is reused and
        no request is made, unless ``force``. Raises :class:`InvalidCredentials`
        for a wrong email or password, :class:`Forbidden` for a disabled account
        and :class:`RateLimited` when login is throttled.
        """
        if not force and (user := self._stored_user(email)) is not None:
            return user
        request = self._http.build_request(
            "POST", self._api_url(LOGIN_PATH), json=self._login_body(email, password)
        )
        response = send_with_retries(
            self._http, request, auth=None, policy=self._retry, idempotent=False
        )
        tokens = read_token_pair(response)
        self._keeper.save(tokens)
        return dict(tokens.user or {})

    def logout(self) -> None:
        """End the session on the server and forget it locally.

        The local store is cleared whatever happens. A 401 (the session was
        already over) is not an error; a network or server failure is raised
        after clearing, because the server may still consider the session live.
        """
        tokens = self.token_store.load()
        if tokens is None:
            return
        try:
            request = self._http.build_request("POST", self._api_url(LOGOUT_PATH))
            response = send_with_retries(
                self._http, request, auth=self._auth, policy=self._retry, idempotent=True
            )
            if (error := self._logout_error(response)) is not None:
                raise error
        except ApiError as error:
            if not self._swallowed_by_logout(error):
                raise
        finally:
            self._keeper.forget(tokens)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send an authenticated request to ``base_url + path``; return the 2xx/3xx response.

        ``idempotent`` (default: true for GET, HEAD, OPTIONS, PUT, DELETE)
        allows retries after the request may have reached the server.
        Raises an :class:`ApiError` subclass for any 4xx/5xx answer.
        """
        request = self._build_request(
            self._http, method, path, params=params, json=json, content=content, headers=headers
        )
        response = send_with_retries(
            self._http,
            request,
            auth=self._auth,
            policy=self._retry,
            idempotent=self._idempotent(method, idempotent),
        )
        return self._result(response)

    def get(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a GET request (retried on transient failures)."""
        return self.request("GET", path, params=params, headers=headers)

    def post(
        self,
        path: str,
        *,
        json: Any = None,
        content: bytes | str | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = False,
    ) -> httpx.Response:
        """Send a POST request (retried only if it never reached the server, or ``idempotent``)."""
        return self.request(
            "POST",
            path,
            params=params,
            json=json,
            content=content,
            headers=headers,
            idempotent=idempotent,
        )

    def put(
        self,
        path: str,
        *,
        json: Any = None,
        content: bytes | str | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a PUT request (retried on transient failures)."""
        return self.request("PUT", path, params=params, json=json, content=content, headers=headers)

    def patch(
        self,
        path: str,
        *,
        json: Any = None,
        content: bytes | str | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = False,
    ) -> httpx.Response:
        """Send a PATCH request (retried only if it never reached the server, or ``idempotent``)."""
        return self.request(
            "PATCH",
            path,
            params=params,
            json=json,
            content=content,
            headers=headers,
            idempotent=idempotent,
        )

    def delete(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a DELETE request (retried on transient failures)."""
        return self.request("DELETE", path, params=params, headers=headers)

    def profile(self) -> dict[str, Any]:
        """Return the logged-in user (``GET /api/v1/users/profile``)."""
        body: dict[str, Any] = self.get(PROFILE_PATH).json()
        return body

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
