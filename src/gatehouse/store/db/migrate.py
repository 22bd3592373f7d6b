"""Migrations as functions, shared by the CLI, `serve --dev`, `/readyz` and `doctor`.

Alembic runs the migrations (`upgrade`, `downgrade`) and is imported only then. Where a
server only *reads* the state (`status`, `/readyz`, `serve`'s start-up check), the revision
graph comes from the migration files' `revision` / `down_revision` lines and the current
revision from the `alembic_version` table: Alembic with Mako and Pygments, which it pulls
in, is about 8 MB of every worker's RSS. tests/test_migrations.py checks these answers
against Alembic's own for every revision.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, create_engine, inspect, pool, text

from gatehouse.store.db.engine import private_sqlite_file, sync_url

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"
_REVISION_LINE = re.compile(r"""^(down_revision|revision)\s*=\s*(?:'([^']+)'|"([^"]+)"|None)\s*$""",
                            re.M)


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    private_sqlite_file(url)  # every migration command opens (and may create) the database
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Alembic's config is ConfigParser: a literal % in a password must be doubled.
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return cfg


@functools.cache
def revisions() -> dict[str, str | None]:
    """Each migration's revision and the one it follows, read from the files as text."""
    graph: dict[str, str | None] = {}
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        found = {name: one or two or None
                 for name, one, two in _REVISION_LINE.findall(path.read_text())}
        if "revision" not in found or "down_revision" not in found:
            raise RuntimeError(f"{path.name}: no plain `revision` / `down_revision` lines")
        graph[str(found["revision"])] = found["down_revision"]
    return graph


def head_revision() -> str | None:
    """The newest migration: the one no other follows (one head, as Alembic requires)."""
    graph = revisions()
    heads = set(graph) - set(graph.values())
    if len(heads) > 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads: {sorted(heads)}")
    return heads.pop() if heads else None


@dataclass(frozen=True)
class MigrationStatus:
    current: str | None
    head: str | None
    # False when the database is at a revision this code does not have (a newer release
    # migrated it): upgrading cannot help, and running could corrupt it.
    known: bool = True

    @property
    def at_head(self) -> bool:
        return self.current == self.head

    def serve_refusal(self) -> str | None:
        """Why `gatehouse serve` must not start on this database (one line), or None."""
        if not self.known:
            return (f"the database is at migration {self.current}, which this version of "
                    f"Gatehouse does not know (its newest is {self.head}): run the release that "
                    "migrated it, or restore a backup made with this one")
        if not self.at_head:
            return (f"the database is at migration {self.current or 'none (empty database)'}, "
                    f"this version needs {self.head}: run `gatehouse db upgrade`")
        return None


def is_known(revision: str | None) -> bool:
    """True when `revision` is None (empty database) or one of this code's migrations."""
    return revision is None or revision in revisions()


def current_revision(conn: Connection) -> str | None:
    """The database's revision (None: never migrated), as Alembic records it."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    if len(versions) > 1:
        raise RuntimeError(f"{VERSION_TABLE} holds {len(versions)} revisions: {versions}")
    return versions[0] if versions else None


def status(url: str) -> MigrationStatus:
    private_sqlite_file(url)
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            current = current_revision(conn)
    finally:
        engine.dispose()
    return MigrationStatus(current, head_revision(), is_known(current))


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "-1") -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)
