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

from . import _calls
from ._base import PROFILE_PATH, BaseClient
from ._calls import Call
from ._exceptions import ApiError
from ._refresh import LOGOUT_PATH
from ._retry import RetryPolicy
from ._send import send_with_retries
from ._stores import TokenStore
from ._tokens import TokenSet


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
        for a wrong email or password, :class:`MfaRequired` (with ``mfa_token``)
        when the account has a second factor, :class:`Forbidden` for a disabled
        account (:class:`EmailUnverified` for an unverified address when the
        server requires one) and :class:`RateLimited` when login is throttled.
        """
        if not force and (user := self._stored_user(email)) is not None:
            return user
        return self._sign_in(_calls.login(email, password))

    def login_mfa(self, mfa_token: str, code: str) -> dict[str, Any]:
        """Finish a login that raised :class:`MfaRequired`; store the session and return the user.

        ``code`` is a TOTP code or a recovery code. Raises :class:`MfaInvalid`
        for a wrong or reused code (try again with the same ``mfa_token``) and
        :class:`MfaExpired` when the ``mfa_token`` is spent (log in again); the
        token store is left as it was.
        """
        return self._sign_in(_calls.login_mfa(mfa_token, code))

    def forgot_password(self, email: str) -> None:
        """Ask for a password-reset email; the server answers the same for unknown addresses."""
        self._call(_calls.forgot_password(email))

    def reset_password(self, token: str, new_password: str) -> None:
        """Set a new password with the token of a reset email; every session of the user ends.

        Raises :class:`LinkInvalid` for a used, superseded or expired token.
        """
        self._call(_calls.reset_password(token, new_password))

    def request_email_verification(self, email: str | None = None) -> None:
        """Ask for a verification email: for the signed-in user, or for ``email`` (no session)."""
        self._call(_calls.request_email_verification(email))

    def verify_email(self, token: str) -> None:
        """Mark the address verified with a verification email's token (:class:`LinkInvalid`)."""
        self._call(_calls.verify_email(token))

    def mfa_setup(self) -> dict[str, Any]:
        """Start TOTP enrolment for the signed-in user; return ``{"secret", "otpauth_uri"}``."""
        result: dict[str, Any] = self._call(_calls.mfa_setup())
        return result

    def mfa_confirm(self, code: str) -> list[str]:
        """Turn MFA on with an authenticator code; return the recovery codes (shown once)."""
        result: list[str] = self._call(_calls.mfa_confirm(code))
        return result

    def mfa_disable(self, code: str) -> None:
        """Turn MFA off, proven with a TOTP or recovery code."""
        self._call(_calls.mfa_disable(code))

    def mfa_recovery_codes(self, code: str) -> list[str]:
        """Replace the recovery codes (the old set stops working); return the new ones."""
        result: list[str] = self._call(_calls.mfa_recovery_codes(code))
        return result

    def _call(self, call: Call) -> Any:
        request = self._build_call(self._http, call)
        response = send_with_retries(
            self._http,
            request,
            auth=self._call_auth(call),
            policy=self._retry,
            idempotent=call.idempotent,
        )
        return call.parse(response)

    def _sign_in(self, call: Call) -> dict[str, Any]:
        tokens: TokenSet = self._call(call)
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
