"""The refresh path's units of work: prebuilt Core statements on a sync Connection.

The refresh is the busiest write in the service, so it runs no ORM unit of work
and builds no statement per call. `UnitRunner` runs each unit in one trip: a
writer thread on SQLite, the async driver's greenlet bridge on PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select, text, update

from gatehouse.store.db.models import RefreshToken, Session, User
from gatehouse.store.db.units import upsert_per_dialect

_RT, _S, _U = RefreshToken.__table__, Session.__table__, User.__table__
_LOOKUP = (
    select(_RT.c.generation, _RT.c.superseded_at, _S.c.expires_at, _S.c.last_used_at,
           _S.c.revoked_at, _S.c.reuse_token_hash, _U.c.id, _U.c.email, _U.c.name, _U.c.roles,
           _U.c.disabled, _U.c.created_at, _U.c.email_verified, _U.c.mfa_enabled)
    # Outer join: a deleted user's revoked sessions remain, detached, and must still be found.
    .select_from(_RT.join(_S, _S.c.id == _RT.c.session_id)
                 .join(_U, _U.c.id == _S.c.user_id, isouter=True))
    .where(_RT.c.token_hash == bindparam("h"), _RT.c.session_id == bindparam("sid"))
)
_SUPERSEDE = (
    update(_RT).where(_RT.c.token_hash == bindparam("h"), _RT.c.superseded_at.is_(None))
    .values(superseded_at=bindparam("at"))
)
_TOUCH = update(_S).where(_S.c.id == bindparam("sid")).values(
    last_used_at=bindparam("at"), ip=bindparam("client_ip"), user_agent=bindparam("agent")
)
_CURRENT = select(_RT.c.token_hash, _RT.c.generation).where(
    _RT.c.session_id == bindparam("sid"), _RT.c.superseded_at.is_(None)
)
_INSERT_IGNORE = upsert_per_dialect(lambda dialect: dialect.insert(_RT).on_conflict_do_nothing())
# On PostgreSQL the three writes of a rotation are one statement (data-modifying CTEs):
# one round trip instead of five with BEGIN and COMMIT, and atomic on its own. A racer
# that loses waits on the row lock, then finds superseded_at set: `sup` is empty, so
# nothing is inserted or touched and the count is 0, exactly as in the SQLite path.
_ROTATE_PG = text("""
WITH sup AS (
    UPDATE refresh_tokens SET superseded_at = CAST(:at AS timestamptz)
    WHERE token_hash = :h AND superseded_at IS NULL
    RETURNING session_id
), ins AS (
    INSERT INTO refresh_tokens (token_hash, session_id, generation, created_at, superseded_at)
    SELECT CAST(:new_hash AS varchar), session_id, CAST(:generation AS integer),
           CAST(:at AS timestamptz), NULL
    FROM sup
    ON CONFLICT DO NOTHING
), touch AS (
    UPDATE sessions SET last_used_at = CAST(:at AS timestamptz),
                        ip = CAST(:client_ip AS varchar), user_agent = CAST(:agent AS varchar)
    WHERE id IN (SELECT session_id FROM sup)
)
SELECT count(*) FROM sup
""")


def lookup(conn: Connection, token_hash: str, sid: str) -> Any:
    return conn.execute(_LOOKUP, {"h": token_hash, "sid": sid}).one_or_none()


def current(conn: Connection, sid: str) -> Any:
    return conn.execute(_CURRENT, {"sid": sid}).first()


def rotate(
    conn: Connection, token_hash: str, now: datetime, successor: dict[str, Any],
    touch: dict[str, Any],
) -> bool:
    # Both writes are idempotent: every racer converges on one successor.
    if conn.dialect.name == "postgresql":
        return bool(conn.execute(_ROTATE_PG, {
            "h": token_hash, "at": now, "new_hash": successor["token_hash"],
            "generation": successor["generation"], "client_ip": touch["client_ip"],
            "agent": touch["agent"],
        }).scalar())
    if not conn.execute(_SUPERSEDE, {"h": token_hash, "at": now}).rowcount:
        # The winner inserted the successor in the same transaction: nothing to do,
        # and its successor may itself be superseded by now (caller walks the chain).
        return False
    conn.execute(_INSERT_IGNORE[conn.dialect.name], successor)
    conn.execute(_TOUCH, touch)
    return True
