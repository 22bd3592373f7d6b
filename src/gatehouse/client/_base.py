"""What :class:`Client` and :class:`AsyncClient` share: configuration, request building, results."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

import httpx

from ._auth import GatehouseAuth
from ._calls import Call
from ._exceptions import ApiError, NotAuthenticated, SessionExpired
from ._problem import error_from_response
from ._retry import RetryPolicy, is_idempotent
from ._stores import TokenStore

PROFILE_PATH = "/api/v1/users/profile"


class BaseClient:
    """Configuration and I/O-free helpers of the sync and async clients."""

    def __init__(
        self,
        base_url: str,
        *,
        token_store: TokenStore | None,
        retry: RetryPolicy | None,
        timeout: float | httpx.Timeout,
    ) -> None:
        self._retry = retry if retry is not None else RetryPolicy()
        self._auth = GatehouseAuth(base_url, token_store, retry=self._retry, timeout=timeout)
        self._keeper = self._auth._keeper

    @property
    def base_url(self) -> httpx.URL:
        """The one Gatehouse URL every path is relative to."""
        return self._auth.base_url

    @property
    def token_store(self) -> TokenStore:
        """Where this client keeps its session's tokens."""
        return self._auth.token_store

    @property
    def auth(self) -> GatehouseAuth:
        """The ``httpx.Auth`` flow this client uses; share it with plain httpx clients."""
        return self._auth

    def _api_url(self, path: str) -> httpx.URL:
        return self._auth._url(path)

    def _build_request(
        self,
        http: httpx.Client | httpx.AsyncClient,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None,
        json: Any,
        content: bytes | str | None,
        headers: Mapping[str, str] | None,
    ) -> httpx.Request:
        # Absolute URLs are refused so that a bearer token can only ever be
        # sent to the configured server.
        if httpx.URL(path).is_absolute_url or path.startswith("//"):
            raise ValueError(f"paths are relative to {self.base_url}; got an absolute URL {path!r}")
        return http.build_request(
            method.upper(),
            self._api_url(path),
            params=params,
            json=json,
            content=content,
            headers=headers,
        )

    @staticmethod
    def _idempotent(method: str, idempotent: bool | None) -> bool:
        return is_idempotent(method) if idempotent is None else idempotent

    @staticmethod
    def _result(response: httpx.Response) -> httpx.Response:
        """Return a successful response; raise the matching :class:`ApiError` otherwise."""
        if response.is_error:
            raise error_from_response(response)
        return response

    def _stored_user(self, email: str) -> dict[str, Any] | None:
        """The user of a stored session for ``email``, if there is one to reuse."""
        tokens = self.token_store.load()
        if tokens is None:
            return None
        stored_email = (tokens.user or {}).get("email")
        if isinstance(stored_email, str) and not _same_email(stored_email, email):
            return None  # the store holds somebody else's session
        return dict(tokens.user or {})

    def _build_call(self, http: httpx.Client | httpx.AsyncClient, call: Call) -> httpx.Request:
        return http.build_request(call.method, self._api_url(call.path), json=call.json)

    def _call_auth(self, call: Call) -> httpx.Auth | None:
        # Only calls that act on the signed-in user carry (and may refresh) the session.
        return self._auth if call.authenticated else None

    @staticmethod
    def _logout_error(response: httpx.Response) -> ApiError | None:
        """The error to raise for a logout answer; a 401 means the session is already over."""
        if response.is_error and response.status_code != 401:
            return error_from_response(response)
        return None

    @staticmethod
    def _swallowed_by_logout(error: ApiError) -> bool:
        # The session is over either way: that is what logout wanted.
        return isinstance(error, (SessionExpired, NotAuthenticated))


def _same_email(a: str, b: str) -> bool:
    # The server compares NFKC-normalised, lower-cased emails (API.md §1).
    return _normalise(a) == _normalise(b)


def _normalise(email: str) -> str:
    return unicodedata.normalize("NFKC", email).strip().lower()
