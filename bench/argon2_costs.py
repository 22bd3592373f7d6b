"""The argon2id costs the server uses: its settings' defaults, or GATEHOUSE_ARGON2_* of the
environment (the bench runs the server with the same environment). The seeded users' hash and
the hasher-alone bound use them, so a login costs what production's does and never re-hashes.
"""

from __future__ import annotations

import os

from gatehouse.settings import Settings

NAMES = {"argon2_time_cost": "time_cost", "argon2_memory_kib": "memory_cost",
         "argon2_parallelism": "parallelism"}


def costs() -> dict[str, int]:
    """Keyword arguments for argon2-cffi's PasswordHasher."""
    fields = Settings.model_fields
    return {arg: int(os.environ.get(fields[name].alias or "", fields[name].default))
            for name, arg in NAMES.items()}


def label() -> str:
    c = costs()
    return f"argon2id m={c['memory_cost']} KiB t={c['time_cost']} p={c['parallelism']}"
