"""Python SDK for Gatehouse: sessions that do not log you out at random.

Quick start::

    from gatehouse.client import Client, FileTokenStore

    store = FileTokenStore("~/.gatehouse/tokens.json")
    with Client("http://127.0.0.1:8000", token_store=store) as gh:
        gh.login("ada@example.com", "correct horse battery staple")
        print(gh.profile())

Guarantees (see ``docs/sdk.md``): one refresh in flight per session across
threads, asyncio tasks and processes sharing a token file; the session ends
only when the server says so (``refresh_*``, ``session_revoked``); 403, 429,
5xx and network errors never log out; token expiry uses the local clock only.

Exceptions
----------
Every exception is an :class:`ApiError` and carries ``status``, ``code``,
``detail`` and ``request_id`` (``status`` and ``request_id`` are ``None`` when
no HTTP answer was received)::

    ApiError                  any failed call; the root to catch
    ├── TransportError        no HTTP answer after retries (connect error, timeout)
    ├── InvalidCredentials    401 invalid_credentials from login
    ├── NotAuthenticated      401 that does not end a session (token_missing, api_key_invalid, ...)
    │   ├── MfaRequired       login: password right, second factor needed; has mfa_token, methods
    │   ├── MfaInvalid        login_mfa: wrong or reused code; retry with the same mfa_token
    │   ├── MfaExpired        login_mfa: mfa_token spent or too old; log in again
    │   └── SessionExpired    the session is over: refresh_invalid, refresh_expired,
    │                         refresh_reused, session_revoked; the token store was cleared
    ├── LinkInvalid           400 link_invalid: a reset/verification token that is used,
    │                         superseded or expired; ask for a new email
    ├── Forbidden             403 (forbidden, csrf_failed, account_disabled): the session is kept
    │   └── EmailUnverified   login: right password, address not verified (server requires it)
    ├── RateLimited           429 (rate_limited, login_throttled) after retries; has retry_after
    └── ServiceUnavailable    502, 503, 504 after retries; has retry_after when the server sent one

Only :class:`SessionExpired` means "log in again"; nothing else clears the
token store (the second-factor and recovery errors never do).

This package imports only the standard library, ``httpx`` and ``filelock``
(``keyring`` on demand), never the Gatehouse server. Your own APIs verify
Gatehouse's access tokens with :mod:`gatehouse.client.resource` (which also
needs PyJWT; ``docs/protect-your-api.md``), imported only when you ask for it.
"""

from ._async_client import AsyncClient
from ._auth import GatehouseAuth
from ._client import Client
from ._exceptions import (
    ApiError,
    EmailUnverified,
    Forbidden,
    InvalidCredentials,
    LinkInvalid,
    MfaExpired,
    MfaInvalid,
    MfaRequired,
    NotAuthenticated,
    RateLimited,
    ServiceUnavailable,
    SessionExpired,
    TransportError,
)
from ._keyring import KeyringTokenStore
from ._retry import RetryPolicy
from ._stores import FileTokenStore, MemoryTokenStore, TokenStore
from ._tokens import TokenSet

__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "EmailUnverified",
    "FileTokenStore",
    "Forbidden",
    "GatehouseAuth",
    "InvalidCredentials",
    "KeyringTokenStore",
    "LinkInvalid",
    "MemoryTokenStore",
    "MfaExpired",
    "MfaInvalid",
    "MfaRequired",
    "NotAuthenticated",
    "RateLimited",
    "RetryPolicy",
    "ServiceUnavailable",
    "SessionExpired",
    "TokenSet",
    "TokenStore",
    "TransportError",
]

# Present the public classes as gatehouse.client.X (tracebacks, docs, repr).
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
