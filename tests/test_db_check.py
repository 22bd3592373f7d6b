"""`gatehouse db check`: the live schema against the models, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from gatehouse.store.db import migrate
from tests.conftest import PG_ADMIN_URL, free_port, run_cli


@pytest.fixture
def scratch_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated database of its own: these tests alter the schema by hand."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'drift.db'}"
        migrate.upgrade(url)
        yield url
        return
    name = f"gatehouse_drift_{uuid.uuid4().hex[:8]}"
    admin_url = make_url(PG_ADMIN_URL.replace("postgres://", "postgresql://", 1))
    admin = create_engine(migrate.sync_url(admin_url.render_as_string(hide_password=False)),
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def alter(url: str, *statements: str) -> None:
    engine = create_engine(migrate.sync_url(url))
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))
    engine.dispose()


def test_freshly_migrated_database_matches_the_models(scratch_url: str, tmp_path: Path) -> None:
    """On a database migrated to head, db check prints that the schema matches and exits 0."""
    result = run_cli("db", "check", env={"DATABASE_URL": scratch_url}, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "schema matches the models"


def test_column_added_by_hand_is_reported(scratch_url: str, tmp_path: Path) -> None:
    """A column added with SQL outside the migrations makes db check exit 1 naming it."""
    alter(scratch_url, "ALTER TABLE users ADD COLUMN nickname VARCHAR(40)")
    result = run_cli("db", "check", env={"DATABASE_URL": scratch_url}, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "table users: column nickname in the database but not in the models" in result.stdout
    assert "1 difference(s)" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_column_dropped_by_hand_is_reported(scratch_url: str, tmp_path: Path) -> None:
    """A column dropped and a table added with SQL give exit 1 and one line per difference."""
    alter(scratch_url, "ALTER TABLE sessions DROP COLUMN user_agent",
          "CREATE TABLE leftovers (id INTEGER PRIMARY KEY)")
    result = run_cli("db", "check", env={"DATABASE_URL": scratch_url}, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line.strip() for line in result.stdout.splitlines() if line.startswith("  ")]
    assert lines == [
        "table leftovers: in the database but not in the models",
        "table sessions: column user_agent missing in the database",
    ]


def test_doctor_includes_the_schema_check(scratch_url: str, tmp_path: Path) -> None:
    """doctor --json has a `schema` check that passes on a migrated database and fails on drift."""
    env = {"DATABASE_URL": scratch_url}
    clean = json.loads(run_cli("doctor", "--json", env=env, cwd=tmp_path).stdout)
    checks = {c["name"]: c for c in clean["checks"]}
    assert checks["schema"]["ok"] is True, checks["schema"]
    alter(scratch_url, "ALTER TABLE users ADD COLUMN nickname VARCHAR(40)")
    drifted = run_cli("doctor", "--json", env=env, cwd=tmp_path)
    report = json.loads(drifted.stdout)
    schema = {c["name"]: c for c in report["checks"]}["schema"]
    assert drifted.returncode == 1 and report["ok"] is False
    assert schema["ok"] is False and "column nickname" in schema["detail"]
    assert "db check" in schema["hint"]


@pytest.mark.parametrize("url", [
    "postgresql://postgres@127.0.0.1:{port}/gatehouse",
    "sqlite:////nonexistent-dir-{port}/gatehouse.db",
])
def test_unreachable_database_is_one_line(url: str, tmp_path: Path) -> None:
    """db check on an unreachable database prints one error line, no traceback, exit non-zero."""
    env = {"DATABASE_URL": url.format(port=free_port())}
    result = run_cli("db", "check", env=env, cwd=tmp_path)
    assert result.returncode != 0
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "cannot reach the database" in result.stderr
