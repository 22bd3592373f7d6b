"""The security events users are told about (API.md §10), and how services raise them.

A service calls `notify_after_commit(db, user_id, event)` inside the transaction that makes
the change, next to its audit `record()`. Nothing leaves then: the notice waits in the
session's `info` and goes to the dispatcher from the session's `after_commit` hook, so a
change that rolls back notifies nobody, and nobody hears of a change before it is real.
The dispatcher reaches the session through the session factory's `info`
(`attach(sessionmaker, dispatcher)` in Context.build); a session without one (a test
building a service by hand) notifies nobody. A unit of work on a bare Connection
(`store/db/units.py`) calls `notify_committed(sessionmaker, user_id, event)` once it has
committed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

DISPATCHER = "gatehouse.notify.dispatcher"
_PENDING = "gatehouse.notify.pending"
_HOOKED = "gatehouse.notify.hooked"

# Title and body of each event; `{ip}` and `{device}` come from its facts.
TEXTS = {
    "login.new_device": (
        "New sign-in to your account",
        "Someone signed in from a new device ({device}, IP {ip}). If it was not you, "
        "change your password and sign out your other sessions.",
    ),
    "password.changed": (
        "Your password was changed",
        "The password of your account was changed and your other sessions were signed "
        "out. If you did not do this, reset your password now.",
    ),
    "password.reset": (
        "Your password was reset",
        "The password of your account was reset through an email link and every session "
        "was signed out. If you did not do this, reset your password now.",
    ),
    "refresh.reuse_detected": (
        "A session was ended to protect your account",
        "A sign-in token of one of your sessions was used twice, which can mean it was "
        "stolen, so that session was signed out. Sign in again; if this repeats, change "
        "your password.",
    ),
    "mfa.disabled": (
        "Two-step verification was turned off",
        "Two-step verification is now off for your account. If you did not do this, "
        "change your password and turn it on again.",
    ),
    "mfa.reset": (
        "Two-step verification was reset",
        "An administrator turned off two-step verification for your account. Set it up "
        "again from your account page.",
    ),
}
EVENTS = frozenset(TEXTS)


@dataclass(frozen=True)
class Notice:
    """One event for one user; `facts` are short and never secret (an IP, a browser)."""

    user_id: str
    type: str
    at: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    facts: dict[str, str] = field(default_factory=dict)

    def text(self) -> tuple[str, str]:
        title, body = TEXTS[self.type]
        return title, body.format_map({"ip": "?", "device": "?", **self.facts})

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> Notice:
        data: dict[str, Any] = json.loads(raw)
        return cls(user_id=str(data["user_id"]), type=str(data["type"]), at=str(data["at"]),
                   facts={str(k): str(v) for k, v in dict(data.get("facts") or {}).items()})


class Publisher(Protocol):
    def publish(self, notice: Notice) -> None: ...


def attach(sessions: async_sessionmaker[AsyncSession], dispatcher: Publisher) -> None:
    """Every session `sessions` makes can raise notices, delivered by `dispatcher`."""
    sessions.configure(info={DISPATCHER: dispatcher})


def notify_after_commit(db: AsyncSession, user_id: str, type_: str, **facts: str | None) -> None:
    """Tell `user_id` about `type_` once the transaction of `db` has committed."""
    assert type_ in EVENTS, type_
    session = db.sync_session
    if session.info.get(DISPATCHER) is None:
        return
    if not session.info.get(_HOOKED):
        session.info[_HOOKED] = True
        event.listen(session, "after_commit", _publish)
        event.listen(session, "after_rollback", _forget)
    notice = Notice(user_id, type_, facts={k: v for k, v in facts.items() if v})
    session.info.setdefault(_PENDING, []).append(notice)


def notify_committed(
    sessions: async_sessionmaker[AsyncSession], user_id: str, type_: str, **facts: str | None
) -> None:
    """Tell `user_id` about `type_`, made real by a unit of work that has committed outside any
    ORM session (`store/db/units.py`): the dispatcher is the one `attach` gave `sessions`."""
    assert type_ in EVENTS, type_
    dispatcher: Publisher | None = sessions.kw.get("info", {}).get(DISPATCHER)
    if dispatcher is not None:
        dispatcher.publish(Notice(user_id, type_, facts={k: v for k, v in facts.items() if v}))


def _publish(session: Session) -> None:
    dispatcher: Publisher = session.info[DISPATCHER]
    for notice in session.info.pop(_PENDING, []):
        dispatcher.publish(notice)


def _forget(session: Session) -> None:
    session.info.pop(_PENDING, None)
