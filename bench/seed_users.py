#!/usr/bin/env python3
"""Seed N users `user{i}@example.com` with one password, fast: hash once, `gatehouse users import`.

Run with Gatehouse's own interpreter (serve.sh does); the environment must carry
DATABASE_URL, JWT_SECRET and ENCRYPTION_KEY, and the database must be migrated.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from argon2 import PasswordHasher
from argon2_costs import costs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--fmt", default="user{i}@example.com")
    ap.add_argument("--password", default="correct-horse-battery-staple-1")
    ap.add_argument("--role", default="user")
    args = ap.parse_args()
    # The server's costs, so no login re-hashes (needs_rehash stays False).
    pw_hash = PasswordHasher(**costs()).hash(args.password)
    rows = [
        {
            "email": args.fmt.format(i=i),
            "name": f"Bench User {i}",
            "password_hash": pw_hash,
            "roles": [args.role],
        }
        for i in range(args.n)
    ]
    gatehouse = Path(sys.executable).with_name("gatehouse")
    with tempfile.TemporaryDirectory(prefix="gh-seed-") as tmp:
        path = Path(tmp) / "users.json"
        path.write_text(json.dumps(rows))
        r = subprocess.run(
            [str(gatehouse), "users", "import", str(path)],
            env=os.environ,
            capture_output=True,
            text=True,
            timeout=300,
        )
    if r.returncode != 0:
        sys.stderr.write(r.stdout + r.stderr)
        return r.returncode
    print(f"seeded {args.n} users ({args.fmt})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
