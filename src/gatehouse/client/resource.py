"""Protect your own API: verify Gatehouse access tokens in the services you already run.

A resource server (RFC 9068) checks each access token itself, with the
issuer's public keys from ``/.well-known/jwks.json``: no call to Gatehouse
per request. Quick start (``docs/protect-your-api.md`` has the FastAPI and
Express versions)::

    from gatehouse.client.resource import TokenVerifier

    verifier = TokenVerifier("https://auth.example.com")     # EdDSA, audience "gatehouse"
    principal = verifier.verify(access_token)                # or raises NotAuthenticated
    principal.user_id, principal.roles, principal.permissions

What it guarantees:

- the algorithm is pinned (``EdDSA`` by default, ``HS256`` only with
  ``secret=``); a token's ``alg`` is compared, never trusted, so ``none`` and
  HS256 signed with the public key are refused; ``iss``, ``aud`` and ``typ``
  must match;
- keys are cached for ``jwks_ttl`` seconds and fetched again when a token
  names an unknown ``kid`` (after ``gatehouse keys rotate``), at most once per
  ``min_refetch_interval``; a fetch that meets a pooled connection the
  issuer closed at that moment (its keep-alive timeout) is sent once more,
  at once, on a new connection;
- ``check_revocation=True`` asks ``/auth/validate`` too, caching each answer
  for ``revocation_ttl`` seconds, so a logout reaches your API within that
  time instead of when the token expires. Without it a revoked token is
  accepted until it expires (``ACCESS_TOKEN_TTL``, 15 minutes by default).

Failures raise the SDK's exceptions with the codes the server uses:
:class:`NotAuthenticated` (``token_invalid``, ``token_expired``,
``session_revoked``) and :class:`ServiceUnavailable` (``service_unavailable``:
the keys or the revocation answer could not be fetched; nothing is accepted
on a guess). :mod:`gatehouse.client.resource_fastapi` turns them into
problem+json answers.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Any, Final, Self

import httpx

from . import _clock
from ._resource_core import (
    ROLE_PERMISSIONS,
    KeyCache,
    Principal,
    RevocationCache,
    header_of,
    principal_of,
)

__all__ = ["ROLE_PERMISSIONS", "AsyncTokenVerifier", "Principal", "TokenVerifier"]

JWKS_PATH = "/.well-known/jwks.json"
VALIDATE_PATH = "/api/v1/auth/validate"
#: How a pooled keep-alive connection fails when the issuer closed it (its idle timeout, 5 s
#: under uvicorn) just as we reused it. Fetches are minutes apart, so the pool's connection
#: is often that old: one immediate retry, on a new connection, tells this from an issuer
#: that is down. Timeouts are not retried: they would double the wait of the caller's request.
_STALE_CONNECTION: Final = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


class _BaseVerifier:
    """Configuration and every decision; the subclasses only send the two HTTP requests."""

    def __init__(
        self,
        issuer_url: str,
        *,
        audience: str = "gatehouse",
        issuer: str | None = None,
        algorithm: str | None = None,
        secret: str | None = None,
        jwks_ttl: float = 300.0,
        min_refetch_interval: float = 5.0,
        leeway: float = 30.0,
        check_revocation: bool = False,
        revocation_ttl: float = 5.0,
    ) -> None:
        if secret is not None and algorithm not in (None, "HS256"):
            raise ValueError("secret= means HS256; pass no algorithm, or algorithm='HS256'")
        if secret is None and (algorithm or "").upper().startswith(("HS", "NONE")):
            raise ValueError("HS256 needs secret= (JWT_SECRET); 'none' is never accepted")
        self.algorithm = "HS256" if secret is not None else algorithm or "EdDSA"
        self.audience = audience
        #: JWT_ISSUER on the server; it defaults to PUBLIC_API_URL, as here.
        self.issuer = issuer if issuer is not None else issuer_url
        self.leeway = leeway
        self._base = issuer_url.rstrip("/")
        self._secret = secret
        self._keys = KeyCache(self.algorithm, jwks_ttl, min_refetch_interval)
        self._revocations = RevocationCache(revocation_ttl) if check_revocation else None

    def _kid(self, token: str) -> str | None:
        kid: str | None = header_of(token, self.algorithm).get("kid")
        return kid

    def _needs_keys(self, kid: str | None) -> bool:
        return self._secret is None and self._keys.should_fetch(kid, _clock.monotonic())

    def _principal(self, token: str, kid: str | None) -> Principal:
        key = self._secret if self._secret is not None else self._keys.key(kid, _clock.monotonic())
        return principal_of(token, key, algorithm=self.algorithm, issuer=self.issuer,
                            audience=self.audience, leeway=self.leeway)

    def _needs_validate(self, token: str) -> bool:
        """True when the issuer must be asked; raises the cached answer of a dead session."""
        return self._revocations is not None and not self._revocations.known_live(
            token, _clock.monotonic())

    def _settle_validate(self, token: str, response: httpx.Response | None) -> None:
        assert self._revocations is not None
        self._revocations.store(token, response, _clock.monotonic())


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class TokenVerifier(_BaseVerifier):
    """Verify access tokens in threads (Flask, Django, workers); see the module docstring.

    ``transport`` and ``timeout`` go to the :class:`httpx.Client` that fetches
    the keys and, with ``check_revocation``, asks ``/auth/validate``.
    """

    def __init__(self, issuer_url: str, *, transport: httpx.BaseTransport | None = None,
                 timeout: float = 5.0, **options: Any) -> None:
        super().__init__(issuer_url, **options)
        self._http = httpx.Client(transport=transport, timeout=timeout)
        self._lock = threading.Lock()

    def verify(self, token: str) -> Principal:
        """Return who the token belongs to, or raise (see the module docstring)."""
        kid = self._kid(token)
        if self._needs_keys(kid):
            with self._lock:  # one fetch for all threads that met the new kid
                if self._needs_keys(kid):
                    self._keys.store(self._get(JWKS_PATH), _clock.monotonic())
        principal = self._principal(token, kid)
        if self._needs_validate(token):
            self._settle_validate(token, self._get(VALIDATE_PATH, _bearer(token)))
        return principal

    def _get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response | None:
        url = self._base + path
        try:
            return self._http.get(url, headers=headers)
        except _STALE_CONNECTION:
            pass  # once more, on a new connection
        except httpx.HTTPError:
            return None
        try:
            return self._http.get(url, headers=headers)
        except httpx.HTTPError:
            return None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncTokenVerifier(_BaseVerifier):
    """The asyncio twin of :class:`TokenVerifier` (FastAPI, Starlette): ``await verify(token)``."""

    def __init__(self, issuer_url: str, *, transport: httpx.AsyncBaseTransport | None = None,
                 timeout: float = 5.0, **options: Any) -> None:
        super().__init__(issuer_url, **options)
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout)
        self._lock = asyncio.Lock()

    async def verify(self, token: str) -> Principal:
        """Return who the token belongs to, or raise (see the module docstring)."""
        kid = self._kid(token)
        if self._needs_keys(kid):
            async with self._lock:  # one fetch for all tasks that met the new kid
                if self._needs_keys(kid):
                    self._keys.store(await self._get(JWKS_PATH), _clock.monotonic())
        principal = self._principal(token, kid)
        if self._needs_validate(token):
            self._settle_validate(token, await self._get(VALIDATE_PATH, _bearer(token)))
        return principal

    async def _get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response | None:
        url = self._base + path
        try:
            return await self._http.get(url, headers=headers)
        except _STALE_CONNECTION:
            pass  # once more, on a new connection
        except httpx.HTTPError:
            return None
        try:
            return await self._http.get(url, headers=headers)
        except httpx.HTTPError:
            return None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
