"""docs/migration.md works as written: its `sh` blocks (fresh secrets, a bcrypt import, the `/api`
alias, a metrics key and `slo check`) run in order against `serve --dev` from the same folder."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests._docs_blocks import DOCS, dev_server, docs_env, fenced_blocks, run_blocks

DOC = DOCS / "migration.md"


@pytest.mark.slow
def test_shell_examples_run_as_written(tmp_path: Path) -> None:
    env = docs_env()
    with dev_server(tmp_path, env) as base:
        done = run_blocks(fenced_blocks(DOC, "sh"), base, tmp_path, env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert out.splitlines()[:2] == ["JWT_SECRET", "ENCRYPTION_KEY"]  # new-secrets.env's names
    assert "grace@example.com" in out  # `users list` after the import
    assert '"email":"ada@example.com"' in out  # profile through the /api alias
    assert "deprecation:" in out.lower()
    assert out.rstrip().splitlines()[-1].startswith("SLO ")  # `slo check` read the metrics
    # The imported bcrypt hash let Ada in, and her first login re-hashed it with argon2id;
    # Grace has not logged in yet, so hers is still the bcrypt hash of the export.
    with sqlite3.connect(tmp_path / "gatehouse.db") as db:
        hashes = dict(db.execute("SELECT email, password_hash FROM users"))
    assert hashes["ada@example.com"].startswith("$argon2id$")
    assert hashes["grace@example.com"].startswith("$2b$10$")
