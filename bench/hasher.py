#!/usr/bin/env python3
"""The hasher alone: argon2id verifications per second on one thread (W3's ceiling on one core).

Same costs as the server's (argon2_costs.py: its defaults or GATEHOUSE_ARGON2_*) and as
the seeded users' hash, so this is exactly the work one correct-password login costs.
Prints one JSON line.
Run it pinned like the server: `taskset -c 0 .venv/bin/python bench/hasher.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from importlib.metadata import version

from argon2 import PasswordHasher
from argon2_costs import costs, label


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--max-count", type=int, default=100_000)
    args = ap.parse_args()
    ph = PasswordHasher(**costs())
    pw = "correct-horse-battery-staple-1"
    h = ph.hash(pw)
    ph.verify(h, pw)  # warm-up
    n, t0 = 0, time.perf_counter()
    cpu0 = time.process_time()
    while time.perf_counter() - t0 < args.seconds and n < args.max_count:
        ph.verify(h, pw)
        n += 1
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    print(
        json.dumps(
            {
                "verifications": n,
                "seconds": round(wall, 3),
                "per_s": round(n / wall, 2),
                "ms_each": round(wall / n * 1e3, 2),
                "cpu_util": round(cpu / wall, 3),
                "params": label(),
                "argon2_cffi": version("argon2-cffi"),
                "affinity": sorted(os.sched_getaffinity(0)),
            }
        )
    )


if __name__ == "__main__":
    main()
