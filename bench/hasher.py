#!/usr/bin/env python3
"""The hasher alone: argon2id verifications per second on one thread (W3's ceiling on one core).

Same costs as the server's (argon2_costs.py: its defaults or GATEHOUSE_ARGON2_*) and as
the seeded users' hash, so this is exactly the work one correct-password login costs.
Prints one JSON line, with the user and kernel CPU and page faults per verification.
Run it pinned like the server: `taskset -c 0 .venv/bin/python bench/hasher.py`.

    --give-back    glibc setting of the server: blocks over 1 MiB go back to the OS when freed
    --kept-block   verify as the server does (gatehouse.auth.argon2_verify: one block kept
                   per thread) instead of argon2-cffi's `verify`
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import time
from collections.abc import Callable
from importlib.metadata import version

from argon2 import PasswordHasher
from argon2_costs import costs, label


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--max-count", type=int, default=100_000)
    ap.add_argument("--give-back", action="store_true")
    ap.add_argument("--kept-block", action="store_true")
    args = ap.parse_args()
    if args.give_back:
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD, as auth/passwords.py
    ph = PasswordHasher(**costs())
    pw = "correct-horse-battery-staple-1"
    h = ph.hash(pw)
    verify: Callable[[], object] = lambda: ph.verify(h, pw)  # noqa: E731
    if args.kept_block:
        from gatehouse.auth import argon2_verify

        verify = lambda: argon2_verify.verify(h, pw.encode())  # noqa: E731
    verify()  # warm-up
    n, t0 = 0, time.perf_counter()
    cpu0 = time.process_time()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    while time.perf_counter() - t0 < args.seconds and n < args.max_count:
        verify()
        n += 1
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "verifications": n,
                "seconds": round(wall, 3),
                "per_s": round(n / wall, 2),
                "ms_each": round(wall / n * 1e3, 2),
                "cpu_util": round(cpu / wall, 3),
                "user_ms_each": round((usage.ru_utime - usage0.ru_utime) / n * 1e3, 2),
                "sys_ms_each": round((usage.ru_stime - usage0.ru_stime) / n * 1e3, 2),
                "faults_each": round((usage.ru_minflt - usage0.ru_minflt) / n),
                "mode": ("kept block" if args.kept_block else "argon2-cffi")
                + (", give-back" if args.give_back else ""),
                "params": label(),
                "argon2_cffi": version("argon2-cffi"),
                "affinity": sorted(os.sched_getaffinity(0)),
            }
        )
    )


if __name__ == "__main__":
    main()
