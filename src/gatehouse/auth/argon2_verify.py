"""argon2 verification that keeps one memory block per thread for the next verification.

argon2-cffi's `verify` lets the C library malloc the hash's memory cost (7 MiB by
default) and free it. Passwords.py makes glibc return such a block to the OS when it is
freed, so that a login storm leaves no memory behind; but then every verification maps
the block again and takes a page fault per 4 KiB page to zero it: 1,793 faults and 5 ms
of kernel time on a 20 ms check, a quarter of the login rate (bench/RESULTS.md,
2026-12-03 W3). Here each hash thread lends argon2 its own block through the context's
allocation callbacks (argon2-cffi's documented low-level `core`), so a thread maps its
block once and keeps it: a worker holds one block per hash thread it has used, which is
what its peak held anyway (one block per hash in flight).

Only verification goes this way (every login; hashing a new password is rare and keeps
argon2-cffi's `hash`). The encoded hash is read with argon2-cffi's `extract_parameters`
and the result compared in constant time; `tests/test_argon2_verify.py` checks the verdicts
against argon2-cffi's own `verify` for argon2id, argon2i and argon2d and other costs.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import threading

from argon2 import extract_parameters
from argon2.exceptions import InvalidHashError
from argon2.low_level import ARGON2_VERSION, core, ffi, lib

_blocks = threading.local()
# A thread keeps a block up to this size (the default cost is 7 MiB, OWASP's largest pair
# 46 MiB). A larger one, from an imported hash with an unusual cost, is lent for that one
# verification and freed after it, so one odd hash cannot pin its memory in every thread.
KEEP_AT_MOST = 64 << 20
_ALLOCATION_ERROR = -22  # ARGON2_MEMORY_ALLOCATION_ERROR


@ffi.callback("int(uint8_t **, size_t)", error=_ALLOCATION_ERROR)
def _lend_block(memory, size):  # type: ignore[no-untyped-def]
    block = getattr(_blocks, "block", None)
    if block is None or len(block) < size:
        block = ffi.new("uint8_t[]", size)
        if size <= KEEP_AT_MOST:
            _blocks.block = block
        else:
            _blocks.once = block
    memory[0] = block
    return 0  # ARGON2_OK


@ffi.callback("void(uint8_t *, size_t)")
def _keep_block(memory, size):  # type: ignore[no-untyped-def]
    """argon2 is done with the block: the thread keeps it for the next verification, unless
    it was lent for this one only."""
    _blocks.once = None


def _b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def verify(encoded: str, password: bytes) -> bool:
    """True when `password` matches the argon2 hash `encoded` (argon2id, argon2i, argon2d,
    version 19). InvalidHashError when `encoded` is not such a hash: the caller falls back
    to argon2-cffi's `verify`, which knows every form."""
    params = extract_parameters(encoded)
    try:
        salt, expected = (_b64(part) for part in encoded.rsplit("$", 2)[1:])
    except (binascii.Error, ValueError):
        raise InvalidHashError(encoded) from None
    if params.version != ARGON2_VERSION or len(expected) != params.hash_len:
        raise InvalidHashError(encoded)
    out = ffi.new("uint8_t[]", len(expected))
    pwd = ffi.new("uint8_t[]", password)
    csalt = ffi.new("uint8_t[]", salt)
    ctx = ffi.new("argon2_context *", {
        "version": params.version, "out": out, "outlen": len(expected),
        "pwd": pwd, "pwdlen": len(password), "salt": csalt, "saltlen": len(salt),
        "secret": ffi.NULL, "secretlen": 0, "ad": ffi.NULL, "adlen": 0,
        "t_cost": params.time_cost, "m_cost": params.memory_cost,
        "lanes": params.parallelism, "threads": params.parallelism,
        "allocate_cbk": _lend_block, "free_cbk": _keep_block,
        "flags": lib.ARGON2_DEFAULT_FLAGS,
    })
    if core(ctx, params.type.value) != lib.ARGON2_OK:
        raise InvalidHashError(encoded)
    return hmac.compare_digest(ffi.buffer(out)[:], expected)
