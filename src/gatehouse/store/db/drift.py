"""Schema drift: the live database compared with the SQLAlchemy models (`gatehouse db check`).

Alembic's autogenerate compare does the work; this module turns its diff into one
readable line per difference. The Alembic version table and SQLite's own tables are
not part of the models and never reported.
"""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, pool

from gatehouse.store.db.engine import sync_url
from gatehouse.store.db.models import Base

IGNORED_TABLES = {"alembic_version"}


def _include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    if type_ == "table" and name is not None:
        return name not in IGNORED_TABLES and not name.startswith("sqlite_")
    return True


def differences(url: str) -> list[str]:
    """One line per difference between the database at `url` and the models; [] when they match.

    Connection failures propagate (the caller words them: `engine.is_database_outage`).
    """
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={
                "compare_type": True,
                "include_name": _include_name,
            })
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    lines: list[str] = []
    for entry in diff:
        # Column modifications come as a list of tuples, everything else as one tuple.
        for item in entry if isinstance(entry, list) else [entry]:
            lines.append(describe(item))
    return sorted(lines)


def _table_of(obj: Any) -> str:
    table = getattr(obj, "table", None)
    return str(getattr(table, "name", "?"))


def _columns(obj: Any) -> str:
    return ", ".join(c.name for c in getattr(obj, "columns", []))


def describe(item: tuple[Any, ...]) -> str:
    """One line for one autogenerate difference, naming the table and what differs."""
    kind = item[0]
    missing, extra = "missing in the database", "in the database but not in the models"
    if kind in ("add_table", "remove_table"):
        return f"table {item[1].name}: {missing if kind == 'add_table' else extra}"
    if kind in ("add_column", "remove_column"):
        _, _, table, column = item
        return f"table {table}: column {column.name} {missing if kind == 'add_column' else extra}"
    if kind in ("add_index", "remove_index"):
        index = item[1]
        return (f"table {_table_of(index)}: index {index.name} ({_columns(index)}) "
                f"{missing if kind == 'add_index' else extra}")
    if kind in ("add_constraint", "remove_constraint"):
        constraint = item[1]
        name = constraint.name or f"({_columns(constraint)})"
        return (f"table {_table_of(constraint)}: {type(constraint).__name__} {name} "
                f"{missing if kind == 'add_constraint' else extra}")
    if kind in ("add_fk", "remove_fk"):
        fk = item[1]
        return (f"table {_table_of(fk)}: foreign key ({_columns(fk)}) -> {fk.referred_table.name} "
                f"{missing if kind == 'add_fk' else extra}")
    if kind == "modify_nullable":
        _, _, table, column, _, db_value, model_value = item
        def word(nullable: bool) -> str:
            return "nullable" if nullable else "NOT NULL"
        return (f"table {table}: column {column} is {word(db_value)} in the database, "
                f"{word(model_value)} in the models")
    if kind == "modify_type":
        _, _, table, column, _, db_type, model_type = item
        return (f"table {table}: column {column} is {db_type} in the database, "
                f"{model_type} in the models")
    if kind == "modify_default":
        _, _, table, column, _, db_default, model_default = item
        return (f"table {table}: column {column} default differs "
                f"(database {db_default!r}, models {model_default!r})")
    if kind.startswith("modify_") and len(item) >= 4:
        return f"table {item[2]}: column {item[3]} {kind.removeprefix('modify_')} differs"
    return f"{kind.replace('_', ' ')}: {item[1:]!r}"
