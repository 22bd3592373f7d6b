"""argon2 verification on a kept per-thread block (auth/argon2_verify.py) gives argon2-cffi's
own verdicts, and a thread really keeps its block: no page faults after the first check."""

from __future__ import annotations

import resource
import threading
from collections.abc import Callable
from typing import Any

import pytest
from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from hypothesis import given, settings
from hypothesis import strategies as st

from gatehouse.auth import argon2_verify
from gatehouse.auth.passwords import PasswordHasher

COSTS = [(Type.ID, 64, 1, 1), (Type.ID, 256, 2, 2), (Type.I, 128, 3, 1), (Type.D, 512, 1, 4)]


def _cffi_verdict(encoded: str, password: str) -> bool:
    try:
        return Argon2Hasher().verify(encoded, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@pytest.mark.parametrize(("type_", "memory_kib", "time_cost", "lanes"), COSTS)
@settings(max_examples=15, deadline=None)
@given(password=st.text(max_size=40), other=st.text(max_size=40))
def test_verdicts_match_argon2_cffi(type_: Type, memory_kib: int, time_cost: int, lanes: int,
                                    password: str, other: str) -> None:
    encoded = Argon2Hasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=lanes,
                           type=type_).hash(password)
    assert argon2_verify.verify(encoded, password.encode()) is True
    assert argon2_verify.verify(encoded, other.encode()) is (other == password)
    assert _cffi_verdict(encoded, other) is (other == password)


@pytest.mark.parametrize("encoded", [
    "",
    "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ",  # no hash part
    "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$!!!!",  # not base64
    "$argon2id$v=16$m=64,t=1,p=1$c2FsdHNhbHQ$eO5Wm9c5FXv2pXfAe8IoXQ",  # version 1.0
    "$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$eO5Wm9c5FXv2pXfAe8IoXQ",  # memory below argon2's
])
def test_what_it_cannot_read_is_left_to_argon2_cffi(encoded: str) -> None:
    with pytest.raises(InvalidHashError):
        argon2_verify.verify(encoded, b"password")


def test_an_old_version_hash_still_verifies_through_the_hasher() -> None:
    """argon2 version 1.0 hashes (v=16) are not read here: the hasher asks argon2-cffi."""
    from argon2.low_level import hash_secret

    encoded = hash_secret(b"old-password", b"somesaltsomesalt", time_cost=1, memory_cost=64,
                          parallelism=1, hash_len=16, type=Type.ID, version=16).decode()
    hasher = PasswordHasher(time_cost=1, memory_kib=64, parallelism=1, workers=1)
    try:
        assert hasher.verify_sync(encoded, "old-password").ok
        assert not hasher.verify_sync(encoded, "wrong-password").ok
    finally:
        hasher.close()


def _faults_of_five_checks(check: Callable[[], bool]) -> int:
    """Page faults on a fresh thread for five checks after a first one."""
    faults: list[int] = []

    def checks() -> None:
        assert check()  # maps what it keeps, if anything
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        for _ in range(5):
            assert check()
        faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)

    thread = threading.Thread(target=checks)
    thread.start()
    thread.join()
    return faults[0]


def test_a_thread_keeps_its_block_between_verifications() -> None:
    """With the server's allocator setting (blocks go back to the OS when freed), argon2-cffi's
    own verify maps a 7 MiB block per check, about 1,800 page faults each; the kept block
    maps nothing after the first check."""
    PasswordHasher(time_cost=1, memory_kib=64, parallelism=1, workers=1).close()  # the setting
    encoded = Argon2Hasher(time_cost=1, memory_cost=7168, parallelism=1).hash("pw")
    assert _faults_of_five_checks(lambda: Argon2Hasher().verify(encoded, "pw")) > 5 * 1500
    assert _faults_of_five_checks(lambda: argon2_verify.verify(encoded, b"pw")) < 100


def test_a_block_too_large_to_keep_is_freed_after_its_check() -> None:
    """An imported hash with a cost above KEEP_AT_MOST verifies, and leaves no block behind."""
    memory_kib = (argon2_verify.KEEP_AT_MOST >> 10) + 1024
    encoded = Argon2Hasher(time_cost=1, memory_cost=memory_kib, parallelism=1).hash("pw")
    kept: list[Any] = []

    def check() -> None:
        assert argon2_verify.verify(encoded, b"pw")
        kept.append((getattr(argon2_verify._blocks, "block", None),
                     getattr(argon2_verify._blocks, "once", None)))

    thread = threading.Thread(target=check)
    thread.start()
    thread.join()
    assert kept == [(None, None)]
