"""Where a session's tokens live: the :class:`TokenStore` protocol and its backends.

A store only keeps one :class:`TokenSet`. Single-flight refresh is not the
store's job except for one hook: :meth:`TokenStore.lock` returns the lock that
other *processes* sharing the same storage also take. The SDK holds it across
"read → refresh → write" and re-reads the store after taking it, so a refresh
done by another process is reused instead of repeated.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

import filelock

from ._tokens import TokenSet

#: How long to wait for another process's refresh before giving up. A refresh
#: holds the lock for at most one retry budget, far less than this.
LOCK_TIMEOUT = 120.0


@runtime_checkable
class TokenStore(Protocol):
    """Storage for one session's tokens.

    ``load``, ``save`` and ``clear`` must each be atomic: a reader never sees
    half a write. ``lock`` returns a context manager that excludes other
    processes using the same storage (``contextlib.nullcontext()`` when the
    storage is private to this process); the SDK may enter it on one thread
    and exit it on another, and never enters it twice at once.
    """

    def load(self) -> TokenSet | None:
        """Return the stored tokens, or ``None`` when logged out."""

    def save(self, tokens: TokenSet) -> None:
        """Replace the stored tokens."""

    def clear(self) -> None:
        """Forget the stored tokens (a no-op when there are none)."""

    def lock(self) -> contextlib.AbstractContextManager[object]:
        """Return the cross-process lock held while refreshing."""


class MemoryTokenStore:
    """Keeps tokens in this process only; the default store."""

    def __init__(self, tokens: TokenSet | None = None) -> None:
        self._tokens = tokens

    def load(self) -> TokenSet | None:
        """Return the stored tokens, or ``None`` when logged out."""
        return self._tokens

    def save(self, tokens: TokenSet) -> None:
        """Replace the stored tokens."""
        self._tokens = tokens

    def clear(self) -> None:
        """Forget the stored tokens."""
        self._tokens = None

    def lock(self) -> contextlib.AbstractContextManager[object]:
        """No other process can see this store, so there is nothing to lock."""
        return contextlib.nullcontext()

    def __repr__(self) -> str:
        return f"MemoryTokenStore(logged_in={self._tokens is not None})"


class FileTokenStore:
    """Keeps tokens in a JSON file shared by every process that opens the same path.

    The file is created with mode 0600 (its directory, if created, 0700) and
    replaced atomically (write a temporary file, fsync, rename), so readers
    see the old or the new tokens, never a mix. ``path + ".lock"`` is the
    cross-process lock the SDK holds while refreshing. A corrupt or unreadable
    file reads as "logged out".
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path).expanduser()
        self._lock_path = self._path.with_name(self._path.name + ".lock")
        # One FileLock per store; the SDK's per-store thread lock makes sure
        # only one thread uses it at a time, so it may be shared across threads
        # (thread_local=False lets an asyncio task release it from the loop
        # thread after taking it in a worker thread).
        self._file_lock = filelock.FileLock(
            self._lock_path,
            timeout=LOCK_TIMEOUT,
            mode=0o600,
            thread_local=False,
            poll_interval=0.01,
        )
        # Cache of the last tokens read or written, keyed by the file's identity,
        # so unchanged files are not parsed on every request and keep the
        # precise monotonic anchor of tokens this process obtained.
        self._cached: tuple[tuple[int, int, int], TokenSet] | None = None
        self._io_lock = threading.Lock()

    @property
    def path(self) -> Path:
        """The token file."""
        return self._path

    def load(self) -> TokenSet | None:
        """Return the tokens in the file, or ``None`` if it is missing or unreadable."""
        try:
            signature = _signature(os.stat(self._path))
        except FileNotFoundError:
            return None
        cached = self._cached
        if cached is not None and cached[0] == signature:
            return cached[1]
        try:
            with open(self._path, encoding="utf-8") as handle:
                signature = _signature(os.fstat(handle.fileno()))
                tokens = TokenSet.from_dict(json.load(handle))
        except (OSError, ValueError, TypeError, AttributeError):
            return None
        self._cached = (signature, tokens)
        return tokens

    def save(self, tokens: TokenSet) -> None:
        """Atomically replace the file with ``tokens`` (mode 0600)."""
        data = json.dumps(tokens.to_dict(), separators=(",", ":")).encode()
        directory = self._path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._io_lock:
            # mkstemp creates the file with mode 0600 before any secret is written.
            fd, tmp_name = tempfile.mkstemp(
                prefix=f".{self._path.name}.", suffix=".tmp", dir=directory
            )
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp_name, self._path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)
                raise
            _fsync_directory(directory)
            self._cached = (_signature(os.stat(self._path)), tokens)

    def clear(self) -> None:
        """Delete the token file."""
        with self._io_lock:
            self._cached = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)

    def lock(self) -> contextlib.AbstractContextManager[object]:
        """Return the ``path + ".lock"`` file lock shared with other processes."""
        return self._file_lock

    def __repr__(self) -> str:
        return f"FileTokenStore({str(self._path)!r})"


def _signature(stat: os.stat_result) -> tuple[int, int, int]:
    # An atomic replace always brings a new inode, so this changes on every save.
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _fsync_directory(directory: Path) -> None:
    # Make the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
