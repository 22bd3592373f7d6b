"""Revocation state that access-token checks read from memory and the key-value store, never the database.

The facts, each kept only as long as an access token issued before it can still
be valid (the window: ACCESS_TOKEN_TTL plus clock leeway plus 5 s):
- session revoked (`rev:<session id>`) -> `session_revoked`;
- not-before (`nbf:<user id>`, and `nbf:*` for everyone; Keycloak's not-before
  policy): access tokens issued at or before it -> `session_revoked`, whether or
  not their session row still exists (a database restored from a backup). The
  per-user one may spare one session (a password change keeps the caller's);
- roles changed (`roles:<user id>`) -> tokens issued earlier answer
  `token_expired`, so clients refresh into the new roles.

"Issued at" is the millisecond in the token's UUIDv7 `jti` (integer-second `iat`
only for tokens without one), and not-before is stored to the microsecond: a token
issued in the same second as a logout-all, but before it, is refused, while a
login right after it works.

Where the facts live. The database is the source of truth: every revocation
commits there first. Each process keeps its own in-memory copy of the live facts,
loaded by `warm_up` from the database before the process answers any protected
route (until then `ensure_ready` answers 503 `service_unavailable`, and the
poller retries every POLL_INTERVAL) and followed every POLL_INTERVAL by `poll`.
The key-value store carries the same facts between instances sharing Redis. A
check reads memory only while the copy is fresh (its last load started less than
FRESH = 0.9 s ago, which the poller keeps true): a fact committed anywhere is then
in the copy within FRESH, inside API.md's 1 s, with no I/O on the request path (a
per-request MGET cost 0.2 ms of CPU, W1v 2,191/s against 3,9xx/s without it:
bench/RESULTS.md). When the poller falls behind (the database slow or unreachable
from this instance), a check adds one MGET of the key-value store, never the
database. So a Redis that comes back empty (FLUSHDB, a restart without
persistence, evicted keys) forgets nothing: the memory copy still holds every
live revocation, and an instance started afterwards warms up from the database.
(An "epoch" marker key in Redis was the alternative: it notices a flush but not
the eviction of single keys, and puts a database round trip on the request path
after a flush.) The copy costs about 100 bytes per revocation of the window.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gatehouse.auth.access_tokens import LEEWAY_SECONDS, AccessClaims, uuid7_ms
from gatehouse.auth.throttle import LoginThrottle
from gatehouse.errors import ServiceUnavailable, SessionRevoked, TokenExpired
from gatehouse.store.db.models import AuditEvent, Session, TokenNotBefore, User
from gatehouse.store.kv import KeyValueStore

POLL_INTERVAL = 0.5
FRESH = 0.9  # seconds since the copy's last load began during which it stands alone
POLL_OVERLAP = 10.0  # seconds re-read each poll: tolerates clock skew between processes
PRUNE_EVERY = 30.0  # seconds between sweeps of facts older than the window
WARM_UP_TIMEOUT = 3.0  # a request that warms up waits at most this long for the database
EVERYONE = "*"
log = structlog.get_logger("gatehouse")
NOT_READY = ("This instance has not loaded the live revocations yet (the database is "
             "unreachable); retry shortly.")


@dataclass(frozen=True, slots=True)
class NotBefore:
    """Access tokens of `subject` issued at or before `ms` are refused, except `keep_session`'s."""

    subject: str
    ms: int
    keep_session: str | None = None

    def refuses(self, issued_ms: int, sid: str) -> bool:
        return issued_ms <= self.ms and sid != self.keep_session

    def encode(self) -> str:
        return f"{self.ms} {self.keep_session}" if self.keep_session else str(self.ms)

    @classmethod
    def decode(cls, subject: str, value: str | None) -> NotBefore | None:
        if value is None:
            return None
        ms, _, keep = value.partition(" ")
        return cls(subject, int(ms), keep or None)


def ms_of(at: datetime) -> int:
    return int(at.timestamp() * 1000)


class RevokedSessions(list[str]):
    """Session ids revoked in one transaction, and the not-before it recorded, if any."""

    def __init__(self, ids: Iterable[str] = (), not_before: NotBefore | None = None) -> None:
        super().__init__(ids)
        self.not_before = not_before


class Revocations:
    def __init__(
        self, kv: KeyValueStore, access_ttl: int,
        db: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self.kv = kv
        self.db = db
        self.window = access_ttl + LEEWAY_SECONDS + 5
        self.ready = False
        self._revoked: dict[str, float] = {}  # session id -> wall-clock time it may be forgotten
        self._not_before: dict[str, NotBefore] = {}
        self._roles: dict[str, int] = {}  # user id -> ms of the last role change
        self._loaded_at = 0.0  # wall-clock start of the last successful load
        self._pruned_at = time.monotonic()
        self._warming = False
        self._last_attempt = -POLL_INTERVAL

    # -- the check on every authenticated request ---------------------------------------

    async def ensure_ready(self) -> None:
        """503 until this process knows every live revocation (API.md §3).

        The poller warms up at start and retries every POLL_INTERVAL; a request finding
        it not done tries once itself (at most one attempt in flight, one per interval).
        """
        if self.ready:
            return
        now = time.monotonic()
        if self.db is None or self._warming or now - self._last_attempt < POLL_INTERVAL:
            raise ServiceUnavailable(1, NOT_READY)
        self._warming, self._last_attempt = True, now
        try:
            async with asyncio.timeout(WARM_UP_TIMEOUT), self.db() as db:
                restored = await self.warm_up(db)
            log.info("revocations_loaded", revocations_restored=restored)
        except Exception as exc:  # the database is still unreachable: not ready yet
            log.warning("revocations_warm_up_failed", error=type(exc).__name__)
            raise ServiceUnavailable(1, NOT_READY) from None
        finally:
            self._warming = False

    async def check(self, claims: AccessClaims) -> None:
        await self.ensure_ready()
        sub, sid = claims.sub, claims.sid
        if time.time() - self._loaded_at < FRESH:  # the copy holds every fact committed
            revoked = roles_changed = user_nbf = all_nbf = None  # before FRESH ago
        else:
            revoked, roles_changed, user_nbf, all_nbf = await self.kv.get_many(
                [f"rev:{sid}", f"roles:{sub}", f"nbf:{sub}", f"nbf:{EVERYONE}"]
            )
        issued = claims.issued_ms
        if revoked is not None or sid in self._revoked:
            raise SessionRevoked()
        for fact in (NotBefore.decode(sub, user_nbf), NotBefore.decode(EVERYONE, all_nbf),
                     self._not_before.get(sub), self._not_before.get(EVERYONE)):
            if fact is not None and fact.refuses(issued, sid):
                raise SessionRevoked()
        changed = max(int(roles_changed or 0), self._roles.get(sub, 0))
        if issued < changed:
            raise TokenExpired("Your roles changed; refresh the token to get the new ones.")

    def session_predates_not_before(self, user_id: str | None, session_id: str) -> bool:
        """True when a not-before recorded in this window covers the session's creation
        (the millisecond in its UUIDv7 id); refresh tokens then answer session_revoked."""
        created = uuid7_ms(session_id)
        if created is None:
            return False
        facts = (self._not_before.get(user_id) if user_id else None, self._not_before.get(EVERYONE))
        return any(f is not None and f.refuses(created, session_id) for f in facts)

    # -- publishing (after the database commit) -----------------------------------------

    async def revoke_sessions(self, session_ids: Iterable[str], reason: str) -> None:
        forget_at = time.time() + self.window
        for sid in session_ids:
            self._revoked[sid] = forget_at
            await self.kv.set(f"rev:{sid}", reason, self.window)
        not_before = getattr(session_ids, "not_before", None)
        if isinstance(not_before, NotBefore):
            await self.publish_not_before(not_before)

    async def publish_not_before(self, fact: NotBefore) -> None:
        self._remember_not_before(fact)
        await self.kv.set(f"nbf:{fact.subject}", fact.encode(), self.window)

    async def roles_changed(self, user_id: str, at: datetime) -> None:
        self._remember_roles(user_id, ms_of(at))
        await self.kv.set(f"roles:{user_id}", str(ms_of(at)), self.window)

    # -- loading from the database ------------------------------------------------------

    async def warm_up(self, db: AsyncSession) -> int:
        """Load every fact of the window from the database; the process is then ready.

        Returns how many facts were read.
        """
        count = await self._load(db, self.window)
        self.ready = True
        return count

    async def poll(self, db: AsyncSession) -> int:
        """Follow facts written by other processes (other instances, `gatehouse sessions
        revoke-all`, `users disable`): run every POLL_INTERVAL, so they apply within a second.

        Re-reads POLL_OVERLAP seconds, or everything since the last successful load when the
        database was unreachable for a while; a full warm-up while not ready yet.
        """
        if not self.ready:
            return await self.warm_up(db)
        gap = time.time() - self._loaded_at + POLL_OVERLAP
        count = await self._load(db, min(self.window, max(POLL_OVERLAP, gap)))
        if time.monotonic() - self._pruned_at >= PRUNE_EVERY:
            self._prune()
        return count

    async def _load(self, db: AsyncSession, window: float) -> int:
        started = time.time()
        since = datetime.now(UTC) - timedelta(seconds=window)
        sessions = (await db.execute(
            select(Session.id, Session.revoked_at).where(Session.revoked_at >= since)
        )).all()
        users = (await db.execute(
            select(User.id, User.roles_changed_at).where(User.roles_changed_at >= since)
        )).all()
        not_before = (await db.execute(
            select(TokenNotBefore.subject, TokenNotBefore.not_before, TokenNotBefore.keep_session)
            .where(TokenNotBefore.not_before >= since)
        )).all()
        for sid, revoked_at in sessions:
            self._revoked[sid] = max(self._revoked.get(sid, 0.0), revoked_at.timestamp() + self.window)
        for uid, changed in users:
            self._remember_roles(uid, ms_of(changed))
        for subject, at, keep in not_before:
            self._remember_not_before(NotBefore(subject, ms_of(at), keep))
        self._loaded_at = started
        return len(sessions) + len(users) + len(not_before)

    def _remember_not_before(self, fact: NotBefore) -> None:
        known = self._not_before.get(fact.subject)
        if known is None or fact.ms >= known.ms:
            self._not_before[fact.subject] = fact

    def _remember_roles(self, user_id: str, ms: int) -> None:
        self._roles[user_id] = max(self._roles.get(user_id, 0), ms)

    def _prune(self) -> None:
        """Forget facts no unexpired access token can be affected by any more."""
        now = time.time()
        self._pruned_at = time.monotonic()
        self._revoked = {sid: at for sid, at in self._revoked.items() if at > now}
        horizon_ms = int((now - self.window) * 1000)
        self._not_before = {k: f for k, f in self._not_before.items() if f.ms > horizon_ms}
        self._roles = {k: ms for k, ms in self._roles.items() if ms > horizon_ms}


async def apply_unlocks(db: AsyncSession, throttle: LoginThrottle, after_id: int) -> int:
    """Apply `user.unlocked` (and `password.reset`, which clears the account's throttling too)
    audit events newer than `after_id`; returns the newest id seen.

    The first call (after_id 0) only finds the current position: unlocks from
    before start-up concern counters this process never had.
    """
    if after_id == 0:
        newest = await db.scalar(select(func.max(AuditEvent.id)))
        return int(newest or 0) or -1
    # The high-water mark first, then the unlocks up to it: an unlock committed between
    # the two queries is then picked up by the next poll instead of being skipped.
    newest = await db.scalar(select(func.max(AuditEvent.id))) or after_id
    rows = (await db.execute(
        select(AuditEvent.id, AuditEvent.data)
        .where(AuditEvent.id > max(after_id, 0), AuditEvent.id <= newest,
               AuditEvent.type.in_(("user.unlocked", "password.reset")))
        .order_by(AuditEvent.id)
    )).all()
    for _, data in rows:
        target = data.get("target_user_id") if isinstance(data, dict) else None
        email = await db.scalar(select(User.email).where(User.id == target)) if target else None
        if email:
            await throttle.unlock(email)
    return int(newest)
