"""`gatehouse db`: migrations and backups on SQLite or PostgreSQL."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import typer
from sqlalchemy.engine import make_url

from gatehouse.cli.common import fail, out, settings_or_exit
from gatehouse.store.db import migrate

app = typer.Typer(help="Database migrations and backups.", no_args_is_help=True)


def _migration_call(action: str, func: object, *args: str) -> None:
    try:
        func(*args)  # type: ignore[operator]
    except Exception as exc:
        from gatehouse.store.db.engine import is_database_outage

        if is_database_outage(exc):
            fail(f"cannot reach the database ({type(exc).__name__}); check DATABASE_URL")
        if type(exc).__name__ in {"CommandError", "ResolutionError"}:
            fail(f"{action} failed: {str(exc).splitlines()[0]}")
        raise


@app.command()
def status(
    check: bool = typer.Option(False, "--check", help="Exit 1 when migrations are pending (for deploy scripts)."),
) -> None:
    """Show the current and head migration revisions."""
    settings = settings_or_exit()
    result: list[migrate.MigrationStatus] = []
    _migration_call("status", lambda: result.append(migrate.status(settings.database_url)))
    st = result[0]
    out.print(f"current: {st.current or '(empty database)'}")
    out.print(f"head:    {st.head}")
    if not st.known:
        out.print("the database is ahead of this code: run the release that migrated it")
        raise typer.Exit(1)
    if not st.at_head:
        out.print("pending migrations: run `gatehouse db upgrade`")
        if check:
            raise typer.Exit(1)
        return
    out.print("up to date")


@app.command()
def check() -> None:
    """Compare the live schema with the models: exit 1 with one line per difference."""
    from gatehouse.store.db import drift

    settings = settings_or_exit()
    found: list[list[str]] = []
    _migration_call("check", lambda: found.append(drift.differences(settings.database_url)))
    if not found[0]:
        out.print("schema matches the models")
        return
    out.print(f"schema drift: {len(found[0])} difference(s) between the database and the models",
              soft_wrap=True)
    for line in found[0]:
        out.print(f"  {line}", soft_wrap=True, markup=False)
    out.print("if migrations are pending run `gatehouse db upgrade`; otherwise the database "
              "was changed by hand: restore it or write a migration", soft_wrap=True)
    raise typer.Exit(1)


@app.command()
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply migrations up to REVISION (default: head)."""
    settings = settings_or_exit()
    _migration_call("upgrade", migrate.upgrade, settings.database_url, revision)
    out.print(f"database at {migrate.status(settings.database_url).current}")


@app.command()
def downgrade(revision: str = typer.Argument("-1", help="Target revision, `-1` or `base`.")) -> None:
    """Revert migrations down to REVISION (default: one step)."""
    settings = settings_or_exit()
    _migration_call("downgrade", migrate.downgrade, settings.database_url, revision)
    out.print(f"database at {migrate.status(settings.database_url).current or '(empty)'}")


@app.command()
def backup(path: Path = typer.Argument(..., help="File to write the backup to.")) -> None:
    """Write a consistent backup: SQLite online backup, or pg_dump for PostgreSQL."""
    settings = settings_or_exit()
    if path.exists():
        fail(f"{path} already exists; choose a new file (backups never overwrite)")
    if not path.parent.exists():
        fail(f"directory {path.parent} does not exist")
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        source = url.database or ""
        if not source or source == ":memory:" or not Path(source).exists():
            fail(f"SQLite database {source or '(memory)'} does not exist")
        os.close(_create_private(path))
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        dst = sqlite3.connect(path)  # an empty 0600 file: SQLite writes into it, mode kept
        try:
            src.backup(dst)  # online backup API: consistent while the server writes
        except sqlite3.Error as exc:
            path.unlink(missing_ok=True)
            fail(f"backup failed: {exc}")
        finally:
            dst.close()
            src.close()
    else:
        pg_dump = shutil.which("pg_dump")
        if pg_dump is None:
            fail("pg_dump is not installed (Debian: apt-get install postgresql-client)")
        env = dict(os.environ)
        if url.password:
            env["PGPASSWORD"] = url.password  # never on the command line, where `ps` shows it
        cmd = [pg_dump, "--format=custom", "--no-password",
               "--host", url.host or "localhost", "--port", str(url.port or 5432),
               "--username", url.username or "postgres", url.database or "postgres"]
        # pg_dump writes to a descriptor we opened 0600 (with --file it would create the
        # file under the umask, readable by every local user until a chmod).
        with os.fdopen(_create_private(path), "wb") as dump:
            result = subprocess.run(cmd, env=env, stdout=dump, stderr=subprocess.PIPE,  # noqa: S603
                                    text=True, check=False)
        if result.returncode != 0:
            path.unlink(missing_ok=True)
            first = (result.stderr.strip().splitlines() or ["unknown error"])[0]
            fail(f"pg_dump failed: {first}")
    out.print(f"backup written to {path} ({path.stat().st_size} bytes)")


def _create_private(path: Path) -> int:
    """Create `path` with mode 0600 (never an existing file); return its descriptor."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        fail(f"{path} already exists; choose a new file (backups never overwrite)")
    except OSError as exc:
        fail(f"cannot create {path}: {exc.strerror}")
    if hasattr(os, "fchmod"):  # POSIX; Windows has no such modes
        os.fchmod(fd, 0o600)  # exactly 0600 whatever the umask
    return fd
