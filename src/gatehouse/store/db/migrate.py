"""Migrations as functions, shared by the CLI, `serve --dev`, `/readyz` and `doctor`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import ResolutionError
from alembic.util import CommandError
from sqlalchemy import Connection, create_engine, pool

from gatehouse.store.db.engine import private_sqlite_file, sync_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    private_sqlite_file(url)  # every migration command opens (and may create) the database
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Alembic's config is ConfigParser: a literal % in a password must be doubled.
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


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
    if revision is None:
        return True
    try:
        return ScriptDirectory.from_config(alembic_config("sqlite://")).get_revision(revision) \
            is not None
    except (CommandError, ResolutionError):
        return False


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


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
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "-1") -> None:
    command.downgrade(alembic_config(url), revision)
