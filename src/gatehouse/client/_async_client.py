"""``AsyncClient``: the asyncio twin of :class:`Client`, method for method.

Only the I/O differs (``await`` instead of a blocking call); every decision
is made by the same shared code as the sync client.
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
from ._send import asend_with_retries
from ._stores import TokenStore
from ._tokens import TokenSet


class AsyncClient(BaseClient):
    """The asyncio twin of :class:`Client`: same arguments, same methods, awaited."""

    def __init__(
        self,
        base_url: str,
        *,
        token_store: TokenStore | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | httpx.Timeout = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(base_url, token_store=token_store, retry=retry, timeout=timeout)
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout, headers=headers)
        self._auth._use_http(ahttp=self._http)

    async def login(self, email: str, password: str, *, force: bool = False) -> dict[str, Any]:
        """Log in and store the session; return the user (see :meth:`Client.login`)."""
        if not force and (user := self._stored_user(email)) is not None:
            return user
        return await self._sign_in(_calls.login(email, password))

    async def login_mfa(self, mfa_token: str, code: str) -> dict[str, Any]:
        """Finish a login that raised :class:`MfaRequired` (see :meth:`Client.login_mfa`)."""
        return await self._sign_in(_calls.login_mfa(mfa_token, code))

    async def forgot_password(self, email: str) -> None:
        """Ask for a password-reset email (see :meth:`Client.forgot_password`)."""
        await self._call(_calls.forgot_password(email))

    async def reset_password(self, token: str, new_password: str) -> None:
        """Set a new password with a reset token (see :meth:`Client.reset_password`)."""
        await self._call(_calls.reset_password(token, new_password))

    async def request_email_verification(self, email: str | None = None) -> None:
        """Ask for a verification email (see :meth:`Client.request_email_verification`)."""
        await self._call(_calls.request_email_verification(email))

    async def verify_email(self, token: str) -> None:
        """Mark the address verified (see :meth:`Client.verify_email`)."""
        await self._call(_calls.verify_email(token))

    async def mfa_setup(self) -> dict[str, Any]:
        """Start TOTP enrolment (see :meth:`Client.mfa_setup`)."""
        result: dict[str, Any] = await self._call(_calls.mfa_setup())
        return result

    async def mfa_confirm(self, code: str) -> list[str]:
        """Turn MFA on; return the recovery codes (see :meth:`Client.mfa_confirm`)."""
        result: list[str] = await self._call(_calls.mfa_confirm(code))
        return result

    async def mfa_disable(self, code: str) -> None:
        """Turn MFA off (see :meth:`Client.mfa_disable`)."""
        await self._call(_calls.mfa_disable(code))

    async def mfa_recovery_codes(self, code: str) -> list[str]:
        """Replace the recovery codes (see :meth:`Client.mfa_recovery_codes`)."""
        result: list[str] = await self._call(_calls.mfa_recovery_codes(code))
        return result

    async def _call(self, call: Call) -> Any:
        request = self._build_call(self._http, call)
        response = await asend_with_retries(
            self._http,
            request,
            auth=self._call_auth(call),
            policy=self._retry,
            idempotent=call.idempotent,
        )
        return call.parse(response)

    async def _sign_in(self, call: Call) -> dict[str, Any]:
        tokens: TokenSet = await self._call(call)
        await self._keeper.asave(tokens)
        return dict(tokens.user or {})

    async def logout(self) -> None:
        """End the session on the server and forget it locally (see :meth:`Client.logout`)."""
        tokens = self.token_store.load()
        if tokens is None:
            return
        try:
            request = self._http.build_request("POST", self._api_url(LOGOUT_PATH))
            response = await asend_with_retries(
                self._http, request, auth=self._auth, policy=self._retry, idempotent=True
            )
            if (error := self._logout_error(response)) is not None:
                raise error
        except ApiError as error:
            if not self._swallowed_by_logout(error):
                raise
        finally:
            await self._keeper.aforget(tokens)

    async def request(
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
        """Send an authenticated request (see :meth:`Client.request`)."""
        request = self._build_request(
            self._http, method, path, params=params, json=json, content=content, headers=headers
        )
        response = await asend_with_retries(
            self._http,
            request,
            auth=self._auth,
            policy=self._retry,
            idempotent=self._idempotent(method, idempotent),
        )
        return self._result(response)

    async def get(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a GET request (retried on transient failures)."""
        return await self.request("GET", path, params=params, headers=headers)

    async def post(
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
        return await self.request(
            "POST",
            path,
            params=params,
            json=json,
            content=content,
            headers=headers,
            idempotent=idempotent,
        )

    async def put(
        self,
        path: str,
        *,
        json: Any = None,
        content: bytes | str | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a PUT request (retried on transient failures)."""
        return await self.request(
            "PUT", path, params=params, json=json, content=content, headers=headers
        )

    async def patch(
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
        return await self.request(
            "PATCH",
            path,
            params=params,
            json=json,
            content=content,
            headers=headers,
            idempotent=idempotent,
        )

    async def delete(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a DELETE request (retried on transient failures)."""
        return await self.request("DELETE", path, params=params, headers=headers)

    async def profile(self) -> dict[str, Any]:
        """Return the logged-in user (``GET /api/v1/users/profile``)."""
        body: dict[str, Any] = (await self.get(PROFILE_PATH)).json()
        return body

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    aclose = close  # the name httpx users expect

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
