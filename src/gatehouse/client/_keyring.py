"""A token store in the operating system's keyring (needs the optional ``keyring`` package)."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
from types import ModuleType
from typing import Any

import filelock

from ._stores import LOCK_TIMEOUT
from ._tokens import TokenSet


class KeyringTokenStore:
    """Keeps tokens in the system keyring (Keychain, Secret Service, Windows Credential Locker).

    Needs ``pip install keyring``; constructing it without raises
    ``ImportError``. The keyring has no locks of its own, so processes that
    share one entry should pass a common ``lock_path``: it is then used as a
    cross-process file lock exactly like :class:`FileTokenStore`'s.
    """

    def __init__(
        self,
        service: str = "gatehouse",
        username: str = "default",
        *,
        lock_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self._keyring = _import_keyring()
        self._service = service
        self._username = username
        self._file_lock = (
            filelock.FileLock(lock_path, timeout=LOCK_TIMEOUT, mode=0o600, thread_local=False)
            if lock_path is not None
            else None
        )
        # The last raw value read or written and its tokens: keeps the precise
        # monotonic anchor of tokens this process obtained and saves parsing.
        self._cached: tuple[str, TokenSet] | None = None

    def load(self) -> TokenSet | None:
        """Return the tokens in the keyring entry, or ``None`` if missing or unreadable."""
        raw = self._keyring.get_password(self._service, self._username)
        if raw is None:
            return None
        cached = self._cached
        if cached is not None and cached[0] == raw:
            return cached[1]
        try:
            tokens = TokenSet.from_dict(json.loads(raw))
        except (ValueError, TypeError, AttributeError):
            return None
        self._cached = (raw, tokens)
        return tokens

    def save(self, tokens: TokenSet) -> None:
        """Replace the keyring entry with ``tokens``."""
        raw = json.dumps(tokens.to_dict(), separators=(",", ":"))
        self._keyring.set_password(self._service, self._username, raw)
        self._cached = (raw, tokens)

    def clear(self) -> None:
        """Delete the keyring entry."""
        self._cached = None
        errors: Any = importlib.import_module("keyring.errors")
        with contextlib.suppress(errors.PasswordDeleteError):
            self._keyring.delete_password(self._service, self._username)

    def lock(self) -> contextlib.AbstractContextManager[object]:
        """Return the ``lock_path`` file lock, or a no-op lock when none was given."""
        return self._file_lock if self._file_lock is not None else contextlib.nullcontext()

    def __repr__(self) -> str:
        return f"KeyringTokenStore(service={self._service!r}, username={self._username!r})"


def _import_keyring() -> ModuleType:
    try:
        return importlib.import_module("keyring")
    except ImportError as exc:
        raise ImportError(
            "KeyringTokenStore needs the optional 'keyring' package: pip install keyring"
        ) from exc
