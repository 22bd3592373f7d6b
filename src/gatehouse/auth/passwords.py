"""Password hashing (argon2id, bcrypt imports) off the event loop, and the password policy.

Hashing runs in a thread pool sized to the cores: argon2-cffi and bcrypt
release the GIL, so a login storm uses the cores without stalling token
validation on the event loop. The pool's queue is bounded: at most
`queue_max` jobs wait for a thread (GATEHOUSE_HASH_QUEUE_MAX, default 64 per
worker); beyond that `hash` and `verify` raise ServiceUnavailable at once
(503 with Retry-After), so a login flood costs a fixed amount of memory and
every admitted attempt still answers within a bounded time, rather than a
queue that grows without end and answers everyone too late.

The policy follows NIST SP 800-63B §5.1.1.2:
a minimum length, long passphrases allowed, no composition rules, and
common or context-specific passwords refused (zxcvbn's dictionaries).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import threading
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gatehouse.auth import argon2_verify
from gatehouse.errors import ServiceUnavailable, WeakPassword

MAX_PASSWORD_BYTES = 1024
BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
# zxcvbn is super-linear in the input length; what follows the first 100
# characters of a passphrase adds strength, never weakness, so it is not scored.
_ZXCVBN_MAX_CHARS = 100
T = TypeVar("T")
QUEUE_PER_WORKER = 64  # the default GATEHOUSE_HASH_QUEUE_MAX is this many jobs per thread
_M_MMAP_THRESHOLD = -3  # glibc <malloc.h>
# OWASP Password Storage Cheat Sheet: argon2id (p=1) pairs of memory (KiB) and time cost that
# give an equal defence. Gatehouse's default is the last one: the least memory per hash in
# flight (RSS under a login storm) for the same strength, and the fastest of the five here.
OWASP_ARGON2ID = ((47_104, 1), (19_456, 2), (12_288, 3), (9_216, 4), (7_168, 5))
_MMAP_ABOVE = 1 << 20


def _give_hash_memory_back() -> None:
    """Make glibc return each argon2 block (its memory cost, 19 MiB) to the OS when the hash ends.

    glibc serves a block that large with mmap the first time, then raises its mmap
    threshold to the block's size, so every later block came from a per-thread arena
    and stayed resident: a worker kept ~19 MiB per hash thread after a login storm and
    ~17 MB more from start-up's dummy hash (bench/RESULTS.md, 2026-12-02 memory). A
    fixed threshold turns that adaptation off: blocks above 1 MiB are always mapped and
    unmapped. That now serves hashing a new password; a verification (every login) runs
    on its thread's own kept block (argon2_verify.py), which costs no page faults. Not
    glibc (musl, macOS): nothing to do.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, _MMAP_ABOVE)


def usable_cores() -> int:
    """Cores this process may run on (a worker pinned with taskset gets 1, not the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 2


def _lower_priority(nice: int) -> None:
    """Run this (hash) thread `nice` steps below the process: when a login storm and token
    checks compete for a core, the event loop wins and logins wait in the queue. Linux
    schedules threads on their own, so the thread's id sets it; elsewhere nothing changes."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    # Not allowed (a sandbox): the thread keeps the process's priority.
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))


def below_owasp(memory_kib: int, time_cost: int) -> str | None:
    """Why argon2id with these costs is weaker than every OWASP pair, or None if it is not."""
    needed = min((m for m, t in OWASP_ARGON2ID if t <= time_cost), default=None)
    if needed is None or memory_kib < needed:
        pairs = ", ".join(f"m={m} t={t}" for m, t in OWASP_ARGON2ID)
        return (f"argon2id m={memory_kib} KiB t={time_cost} is below OWASP's minimums "
                f"(any of {pairs}, p=1)")
    return None


@dataclass(frozen=True)
class Verification:
    ok: bool
    needs_rehash: bool = False


class PasswordHasher:
    """argon2id hashing plus bcrypt verification for imported hashes."""

    def __init__(
        self, *, time_cost: int, memory_kib: int, parallelism: int, workers: int | None = None,
        nice: int = 0, queue_max: int | None = None, retry_after: int = 5,
    ) -> None:
        _give_hash_memory_back()  # before the first hash (the dummy one below)
        self._argon2 = Argon2Hasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        workers = workers or usable_cores()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gatehouse-hash",
                                        initializer=_lower_priority, initargs=(nice,))
        # Jobs admitted (running or waiting): at most one per thread plus the queue.
        queue = QUEUE_PER_WORKER * workers if queue_max is None else queue_max
        self.max_pending = workers + queue
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._retry_after = retry_after
        # A real hash of a random password: unknown emails are verified against
        # it so that their timing matches a wrong password for a real account.
        self._dummy_hash = self._argon2.hash(secrets.token_urlsafe(24))

    def hash_sync(self, password: str) -> str:
        return self._argon2.hash(password)

    def verify_sync(self, stored_hash: str | None, password: str) -> Verification:
        if stored_hash is None:
            self._verify_argon2(self._dummy_hash, password)
            return Verification(ok=False)
        if stored_hash.startswith(BCRYPT_PREFIXES):
            return self._verify_bcrypt(stored_hash, password)
        if not self._verify_argon2(stored_hash, password):
            return Verification(ok=False)
        return Verification(ok=True, needs_rehash=self._argon2.check_needs_rehash(stored_hash))

    def _verify_argon2(self, stored_hash: str, password: str) -> bool:
        try:
            return argon2_verify.verify(stored_hash, password.encode())
        except InvalidHashError:
            pass  # not one it reads (an old argon2 version, say): argon2-cffi decides
        try:
            return self._argon2.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    @staticmethod
    def _verify_bcrypt(stored_hash: str, password: str) -> Verification:
        import bcrypt  # for imported bcrypt hashes only: most workers never meet one

        # The $2y$ (PHP) variant is the same algorithm as $2b$.
        normalised = "$2b$" + stored_hash[4:] if stored_hash.startswith("$2y$") else stored_hash
        raw = password.encode()
        if len(raw) > 72:
            # bcrypt only ever read the first 72 bytes; the imported hash was made that way.
            raw = raw[:72]
        try:
            ok = bcrypt.checkpw(raw, normalised.encode())
        except ValueError:
            ok = False
        return Verification(ok=ok, needs_rehash=ok)

    async def hash(self, password: str) -> str:
        return await self._run(self.hash_sync, password)

    async def verify(self, stored_hash: str | None, password: str) -> Verification:
        return await self._run(self.verify_sync, stored_hash, password)

    async def _run(self, job: Callable[..., T], *args: Any) -> T:
        """Run `job` on the pool if the queue has room; ServiceUnavailable (503) at once if not."""
        with self._pending_lock:
            if self._pending >= self.max_pending:
                raise ServiceUnavailable(
                    self._retry_after, "Too many password checks at once; retry shortly.")
            self._pending += 1
        try:
            future = self._pool.submit(job, *args)
        except RuntimeError:  # the pool is shut down (the app is closing)
            self._release()
            raise
        # The place is given back when the job is done, never earlier: a request whose client
        # went away leaves its job running (shielded), so the pool's queue never holds more
        # than `max_pending` jobs, cancelled or not.
        future.add_done_callback(self._release)
        return await asyncio.shield(asyncio.wrap_future(future))

    def _release(self, _: object = None) -> None:
        with self._pending_lock:  # runs on the pool's threads too
            self._pending -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def is_supported_hash(value: str) -> bool:
    """True for argon2 (`$argon2id$`, `$argon2i$`, `$argon2d$`) and bcrypt hashes."""
    if value.startswith(BCRYPT_PREFIXES):
        return len(value) == 60
    return value.startswith(("$argon2id$", "$argon2i$", "$argon2d$")) and value.count("$") >= 4


def check_password_policy(
    password: str, *, min_length: int, email: str = "", name: str = "", field: str = "password"
) -> None:
    """Raise WeakPassword with the reason when the password is refused."""
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise WeakPassword(f"Password is too long (at most {MAX_PASSWORD_BYTES} bytes).", field)
    # Count user-perceived characters the way NIST asks (normalised code points).
    length = len(unicodedata.normalize("NFKC", password))
    if length < min_length:
        raise WeakPassword(f"Password is too short (at least {min_length} characters).", field)
    lowered = password.strip().lower()
    local = email.split("@", 1)[0]
    if email and (lowered == email.lower() or lowered == local.lower()):
        raise WeakPassword("Password must not be your email address.", field)
    # zxcvbn's dictionaries cost ~12 MB: loaded on the first password set, not at start-up.
    from zxcvbn import zxcvbn

    inputs = [v for v in (email, local, name, "gatehouse") if v]
    # zxcvbn raises ValueError above its own max_length (72 by default): pass ours.
    result = zxcvbn(password[:_ZXCVBN_MAX_CHARS], user_inputs=inputs,
                    max_length=_ZXCVBN_MAX_CHARS)
    if result["score"] < 2:
        warning = result["feedback"].get("warning") or "It is too easy to guess."
        raise WeakPassword(f"Password is too common or guessable: {warning}", field)
