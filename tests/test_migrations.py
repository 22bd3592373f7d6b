"""Migrations: up -> down -> up leaves the same schema, on SQLite and PostgreSQL, and matches the models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect

from gatehouse.store.db import migrate
from gatehouse.store.db.models import Base
from tests.conftest import PostgresDatabases


def schema(url: str) -> dict[str, Any]:
    """Tables with their columns, keys, indexes and constraints, as comparable data."""
    engine = create_engine(migrate.sync_url(url))
    try:
        insp = inspect(engine)
        out: dict[str, Any] = {}
        for table in sorted(insp.get_table_names()):
            if table == "alembic_version":
                continue
            out[table] = {
                "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)],
                "pk": insp.get_pk_constraint(table)["constrained_columns"],
                "fks": sorted((tuple(f["constrained_columns"]), f["referred_table"],
                               f.get("options", {}).get("ondelete")) for f in insp.get_foreign_keys(table)),
                "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                                  for i in insp.get_indexes(table)),
                "unique": sorted((u["name"], tuple(u["column_names"]))
                                 for u in insp.get_unique_constraints(table)),
            }
        return out
    finally:
        engine.dispose()


def round_trip(url: str) -> None:
    migrate.upgrade(url)
    first = schema(url)
    assert migrate.status(url).at_head
    migrate.downgrade(url, "base")
    assert schema(url) == {}
    assert migrate.status(url).current is None
    migrate.upgrade(url)
    assert schema(url) == first
    assert set(first) == set(Base.metadata.tables)


def test_sqlite_round_trip_restores_the_same_schema(tmp_path: Path) -> None:
    """On SQLite, downgrading to base removes every table and upgrading rebuilds the same schema."""
    round_trip(f"sqlite:///{tmp_path / 'm.db'}")


def test_postgresql_round_trip_restores_the_same_schema(postgres: PostgresDatabases) -> None:
    """On PostgreSQL, downgrading to base removes every table and upgrading rebuilds the same schema."""
    url = postgres.fresh()
    migrate.downgrade(url, "base")
    postgres.migrated = False
    round_trip(url)
    postgres.migrated = True


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_migrated_schema_matches_the_models(database_url: str) -> None:
    """Alembic's autogenerate finds no difference between the migrated database and the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = create_engine(migrate.sync_url(database_url))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_token_core_tables_exist_after_the_first_migration(tmp_path: Path) -> None:
    """The first migration creates users, sessions, refresh tokens, API keys, audit events and push subscriptions."""
    url = f"sqlite:///{tmp_path / 'first.db'}"
    migrate.upgrade(url, "0001")
    assert sorted(schema(url)) == sorted(
        ["users", "sessions", "refresh_tokens", "api_keys", "audit_events", "push_subscriptions"]
    )


def test_status_read_without_alembic_is_alembics_answer(tmp_path: Path) -> None:
    """The revision graph read from the migration files and the revision read from the version
    table (what `serve`, `/readyz` and `db status` use, so a worker never imports Alembic) are
    exactly Alembic's answers, at every revision from empty to head and back."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    assert migrate.head_revision() == script.get_current_head()
    assert migrate.revisions() == {r.revision: r.down_revision for r in script.walk_revisions()}
    assert not migrate.is_known("9999") and migrate.is_known(None)
    url = f"sqlite:///{tmp_path / 'm.db'}"
    engine = create_engine(migrate.sync_url(url))
    order = [r.revision for r in reversed(list(script.walk_revisions()))]

    def both() -> tuple[str | None, str | None]:
        with engine.connect() as conn:
            return migrate.current_revision(conn), MigrationContext.configure(conn) \
                .get_current_revision()

    try:
        assert both() == (None, None)  # no version table at all
        for revision in order:
            migrate.upgrade(url, revision)
            assert both() == (revision, revision)
        migrate.downgrade(url, "base")
        assert both() == (None, None)  # the table is there, empty
    finally:
        engine.dispose()
