"""`gatehouse users import`: JSON or CSV rows with existing password hashes, all or none.

Any invalid row, or a row whose email already exists, aborts the whole import
before anything is written (`skip_existing` instead skips such rows, for
re-running an import). bcrypt and argon2 hashes are kept as they
are and upgraded to the current argon2id parameters at the next login.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatehouse.audit.service import Actor, record
from gatehouse.auth.passwords import is_supported_hash
from gatehouse.auth.rbac import ROLES
from gatehouse.errors import ValidationFailed
from gatehouse.store.db.models import User
from gatehouse.users.emails import checked_email

CSV_HEADER = ["email", "name", "password_hash", "roles"]
# JSON rows may also say the address is already verified (API.md §8); CSV rows start unverified.
JSON_KEYS = {*CSV_HEADER, "email_verified"}
BATCH = 500


@dataclass
class ImportRow:
    line: int
    email: str
    name: str
    password_hash: str
    roles: list[str]
    email_verified: bool = False


@dataclass
class ImportReport:
    imported: int = 0
    skipped: int = 0
    invalid: list[tuple[int, str]] = field(default_factory=list)


def _row(line: int, raw: dict[str, Any], problems: list[tuple[int, str]]) -> ImportRow | None:
    try:
        email = checked_email(str(raw.get("email") or ""))
    except ValidationFailed:
        problems.append((line, "email is missing or not a valid address"))
        return None
    password_hash = str(raw.get("password_hash") or "")
    if not is_supported_hash(password_hash):
        problems.append((line, "password_hash is not a bcrypt ($2a$/$2b$/$2y$) or argon2 hash"))
        return None
    roles_raw = raw.get("roles") or ["user"]
    roles = [r.strip() for r in roles_raw.split(";")] if isinstance(roles_raw, str) else roles_raw
    if not isinstance(roles, list) or not all(isinstance(r, str) and r in ROLES for r in roles):
        problems.append((line, f"roles must be among {', '.join(sorted(ROLES))}"))
        return None
    name = raw.get("name") or ""
    if not isinstance(name, str) or len(name) > 200:
        problems.append((line, "name must be text of at most 200 characters"))
        return None
    verified = raw.get("email_verified", False)
    if not isinstance(verified, bool):
        problems.append((line, "email_verified must be true or false"))
        return None
    return ImportRow(line, email, name, password_hash, [r for r in roles if r] or ["user"],
                     verified)


def parse_file(path: Path) -> tuple[list[ImportRow], list[tuple[int, str]]]:
    """Rows and problems (line numbers: CSV lines, or 1-based JSON array positions)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationFailed(f"cannot read {path.name}: {getattr(exc, 'strerror', None) or 'not UTF-8 text'}") from None
    problems: list[tuple[int, str]] = []
    rows: list[ImportRow] = []
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationFailed(f"{path.name} is not valid JSON (line {exc.lineno})") from None
        for i, item in enumerate(data, start=1):
            if not isinstance(item, dict) or set(item) - JSON_KEYS:
                problems.append((i, "must be an object with email, name, password_hash, roles "
                                    "(and optionally email_verified)"))
                continue
            if (row := _row(i, item, problems)) is not None:
                rows.append(row)
    else:
        reader = csv.DictReader(io.StringIO(text))
        if [h.strip() for h in (reader.fieldnames or [])] != CSV_HEADER:
            raise ValidationFailed(f"{path.name}: the CSV header must be {','.join(CSV_HEADER)}")
        for item in reader:
            if None in item or any(v is None for v in item.values()):
                problems.append((reader.line_num, "wrong number of columns"))
                continue
            if (row := _row(reader.line_num, item, problems)) is not None:
                rows.append(row)
    seen: dict[str, int] = {}
    for row in rows:
        if row.email in seen:
            problems.append((row.line, f"duplicate of the email on line {seen[row.email]}"))
        seen.setdefault(row.email, row.line)
    return rows, problems


class ExistingEmails(Exception):
    """Rows whose email already has an account; nothing was imported."""

    def __init__(self, lines: list[tuple[int, str]]) -> None:
        super().__init__(f"{len(lines)} row(s) name existing accounts")
        self.lines = lines


async def import_users(
    db: async_sessionmaker[AsyncSession], rows: list[ImportRow], actor: Actor,
    progress: Callable[[int], None] = lambda n: None, *, skip_existing: bool = False,
) -> ImportReport:
    """Insert every row in one transaction; an existing email aborts it unless `skip_existing`."""
    report = ImportReport()
    now = datetime.now(UTC)
    async with db.begin() as session:
        emails = [r.email for r in rows]
        existing: set[str] = set()
        for i in range(0, len(emails), BATCH):
            chunk = emails[i:i + BATCH]
            existing |= set((await session.scalars(select(User.email).where(User.email.in_(chunk)))).all())
        if existing and not skip_existing:
            raise ExistingEmails([(r.line, "an account with this email already exists")
                                  for r in rows if r.email in existing])
        fresh = [r for r in rows if r.email not in existing]
        report.skipped = len(rows) - len(fresh)
        progress(report.skipped)
        for i in range(0, len(fresh), BATCH):
            chunk = fresh[i:i + BATCH]
            await session.execute(insert(User), [
                {"id": str(uuid.uuid4()), "email": r.email, "name": r.name,
                 "password_hash": r.password_hash, "roles": r.roles, "disabled": False,
                 "email_verified": r.email_verified,
                 "created_at": now, "updated_at": now, "roles_changed_at": None}
                for r in chunk
            ])
            progress(len(chunk))
        report.imported = len(fresh)
        await record(session, "users.imported", actor, imported=report.imported,
                     skipped=report.skipped)
    return report
