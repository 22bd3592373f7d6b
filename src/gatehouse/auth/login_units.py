"""The login path's units of work: prebuilt Core statements on a sync Connection.

A login used to be an ORM read of the user and then an ORM transaction of five or six
statements (session, device lookup and upsert, refresh token, audit event), each a hop
to aiosqlite's thread and back through the event loop. On the event loop that was about
as much work as the password check's own bookkeeping: with a 7 MiB argon2id hash the
login's other work was a third of its time on one core. As for the refresh
(`refresh_units`), `UnitRunner` now runs the read in one trip and the writes as one
transaction in one trip (the SQLite writer thread; on PostgreSQL the async driver's
greenlet bridge), and builds no statement per call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select

from gatehouse.audit import service as audit
from gatehouse.auth.known_devices import sign_in_is_new_device
from gatehouse.store.db.models import RefreshToken, Session, User

_U = User.__table__
_BY_EMAIL = select(_U).where(_U.c.email == bindparam("email"))
_INSERT_SESSION = insert(Session.__table__)
_INSERT_TOKEN = insert(RefreshToken.__table__)


def user_by_email(conn: Connection, email: str) -> User | None:
    """The user with this (normalized) email, as a detached `User`, or None."""
    row = conn.execute(_BY_EMAIL, {"email": email}).one_or_none()
    return None if row is None else User(**row._asdict())


@dataclass(frozen=True, slots=True)
class NewSession:
    """Everything a login writes, computed before the unit runs."""

    session: dict[str, Any]
    refresh_token: dict[str, Any]
    audit_event: dict[str, Any]


def open_session(conn: Connection, new: NewSession, now: datetime) -> bool:
    """Write the session, its first refresh token, its device and its audit event in the
    caller's transaction; True when the sign-in is from a new device."""
    conn.execute(_INSERT_SESSION, new.session)
    session = new.session
    is_new = sign_in_is_new_device(
        conn, session["user_id"], session["user_agent"], session["ip"], now)
    conn.execute(_INSERT_TOKEN, new.refresh_token)
    conn.execute(audit.INSERT, new.audit_event)
    return is_new


def record(conn: Connection, event: dict[str, Any]) -> None:
    """One audit event in a unit of its own (a failed or throttled login)."""
    conn.execute(audit.INSERT, event)
