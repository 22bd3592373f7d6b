"""Single-flight token refresh: the rules, plus thin sync and async drivers.

The rules (:func:`plan_refresh` and :meth:`TokenKeeper._settle`) do no I/O.
The drivers take the store's locks (see ``_locks.py``), re-read the store,
ask :func:`plan_refresh` what to do, and call the injected refresh function.

Why re-read after locking: every caller remembers the token set it saw
before waiting. If the store holds a different refresh token once the lock
is ours, another thread, task or process refreshed meanwhile, and its tokens
are used as they are. So N callers that see one expired token cause exactly
one refresh, and nobody ever presents a rotated refresh token.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from . import _clock
from ._exceptions import ApiError, SessionExpired
from ._locks import state_for
from ._stores import TokenStore
from ._tokens import TokenSet, expiry_margin

#: Wait after a failed early refresh when the server gave no Retry-After.
DEFAULT_COOLDOWN = 5.0

#: ``refresh(refresh_token, stop_when)``: see :meth:`Refresher.refresh`.
SyncRefresh = Callable[[str, Callable[[], bool] | None], TokenSet]
AsyncRefresh = Callable[[str, Callable[[], bool] | None], Awaitable[TokenSet]]


class Action(enum.Enum):
    """What to do once the locks are held."""

    USE = "use"  # use ``tokens`` (possibly None: not logged in) as they are
    REFRESH = "refresh"  # refresh ``tokens``
    ENDED = "ended"  # the store was cleared while we waited: the session is over


@dataclass(frozen=True)
class Plan:
    """The decision :func:`plan_refresh` made."""

    action: Action
    tokens: TokenSet | None
    #: True for an early refresh while the access token still works: a
    #: failure then keeps the old token instead of failing the request, as
    #: long as the old token is still usable (see :class:`WorkingToken`).
    optional: bool = False


def plan_refresh(
    seen: TokenSet | None, current: TokenSet | None, *, forced: bool, now: float, not_before: float
) -> Plan:
    """Decide, with the locks held, whether ``current`` must be refreshed.

    ``seen`` is what the caller saw before waiting for the locks; ``forced``
    means the server refused ``seen``'s access token (401 token_expired or
    token_invalid); ``not_before`` is the cool-down after a failed early refresh.
    """
    if current is None:
        return Plan(Action.ENDED if seen is not None else Action.USE, None)
    if seen is not None and current.refresh_token != seen.refresh_token:
        # Someone else refreshed (or logged in) while we waited: reuse theirs.
        forced = False
    if forced or current.expired(now):
        return Plan(Action.REFRESH, current)
    if current.refresh_due(now) and now >= not_before:
        return Plan(Action.REFRESH, current, optional=True)
    return Plan(Action.USE, current)


class WorkingToken:
    """The fallback of an early refresh: the access token that still works.

    Called by the refresh's retry schedule before each retry, it answers
    whether to give up and keep using ``tokens``: yes while they are usable,
    no once they have expired (meanwhile, say during a slow failed attempt),
    because then the refresh is needed and is retried like any idempotent
    call. It remembers that it chose the fallback, so the outcome is judged
    at the moment the retries stopped, not a few instructions later.
    """

    def __init__(self, tokens: TokenSet) -> None:
        self._tokens = tokens
        self._chosen = False

    def __call__(self) -> bool:
        self._chosen = not self._tokens.expired(_clock.monotonic())
        return self._chosen

    def usable(self, now: float) -> bool:
        """Whether a failed refresh may fall back to the working token."""
        return self._chosen or not self._tokens.expired(now)


class TokenKeeper:
    """Hands out usable tokens for one store, refreshing at most once at a time."""

    def __init__(self, store: TokenStore, refresh: SyncRefresh, arefresh: AsyncRefresh) -> None:
        self.store = store
        self._state = state_for(store)
        self._refresh = refresh
        self._arefresh = arefresh

    # -- rules shared by both drivers -------------------------------------------------

    def _fast_path(self) -> tuple[bool, TokenSet | None]:
        """Return (done, tokens): done when no lock is needed."""
        tokens = self.store.load()
        now = _clock.monotonic()
        if tokens is None or not tokens.refresh_due(now):
            return True, tokens
        if not tokens.expired(now) and now < self._state.refresh_not_before:
            return True, tokens  # early refresh failed recently: keep the working token
        return False, tokens

    def _plan(self, seen: TokenSet | None, forced: bool) -> Plan:
        plan = plan_refresh(
            seen,
            self.store.load(),
            forced=forced,
            now=_clock.monotonic(),
            not_before=self._state.refresh_not_before,
        )
        if plan.action is Action.ENDED:
            raise SessionExpired(
                "the session was ended by another request sharing this token store",
                status=None,
                code="session_ended",
            )
        return plan

    @staticmethod
    def _fallback(plan: Plan) -> WorkingToken | None:
        """The working token an early refresh may fall back to; none for a needed refresh."""
        return WorkingToken(plan.tokens) if plan.optional and plan.tokens is not None else None

    def _settle(
        self, plan: Plan, outcome: TokenSet | ApiError, fallback: WorkingToken | None
    ) -> TokenSet:
        """Store a refresh result, or decide what a failed refresh means."""
        assert plan.tokens is not None
        if isinstance(outcome, TokenSet):
            self.store.save(outcome)
            self._state.refresh_not_before = 0.0
            return outcome
        if isinstance(outcome, SessionExpired):
            # Only refresh_* and session_revoked get here (see _problem.py).
            self.store.clear()
            raise outcome
        now = _clock.monotonic()
        if fallback is not None and fallback.usable(now):
            # Transient failure of an early refresh: keep using the working
            # token and try again after a cool-down that ends before it expires.
            usable_for = plan.tokens.remaining(now) - expiry_margin(plan.tokens.expires_in)
            wait = outcome.retry_after if outcome.retry_after is not None else DEFAULT_COOLDOWN
            self._state.refresh_not_before = now + min(wait, max(0.0, usable_for) / 2)
            return plan.tokens
        raise outcome

    # -- sync driver ------------------------------------------------------------------

    def tokens_for_request(self) -> TokenSet | None:
        """Return tokens to send now, refreshing first if they are (nearly) expired."""
        done, tokens = self._fast_path()
        return tokens if done else self._locked_refresh(tokens, forced=False)

    def refresh_rejected(self, sent: TokenSet) -> TokenSet:
        """The server refused ``sent``'s access token: return a refreshed set (once)."""
        tokens = self._locked_refresh(sent, forced=True)
        assert tokens is not None
        return tokens

    def _locked_refresh(self, seen: TokenSet | None, *, forced: bool) -> TokenSet | None:
        with self._state.hold(self.store):
            plan = self._plan(seen, forced)
            if plan.action is Action.USE or plan.tokens is None:
                return plan.tokens
            fallback = self._fallback(plan)
            outcome: TokenSet | ApiError
            try:
                outcome = self._refresh(plan.tokens.refresh_token, fallback)
            except ApiError as error:
                outcome = error
            return self._settle(plan, outcome, fallback)

    def save(self, tokens: TokenSet) -> None:
        """Store the tokens of a new login."""
        with self._state.hold(self.store):
            self.store.save(tokens)
            self._state.refresh_not_before = 0.0

    def forget(self, session: TokenSet) -> None:
        """Clear the store if it still holds ``session`` (and not a newer login)."""
        with self._state.hold(self.store):
            if session.same_session(self.store.load()):
                self.store.clear()

    # -- async driver -----------------------------------------------------------------

    async def atokens_for_request(self) -> TokenSet | None:
        """Async twin of :meth:`tokens_for_request`."""
        done, tokens = self._fast_path()
        return tokens if done else await self._alocked_refresh(tokens, forced=False)

    async def arefresh_rejected(self, sent: TokenSet) -> TokenSet:
        """Async twin of :meth:`refresh_rejected`."""
        tokens = await self._alocked_refresh(sent, forced=True)
        assert tokens is not None
        return tokens

    async def _alocked_refresh(self, seen: TokenSet | None, *, forced: bool) -> TokenSet | None:
        async with self._state.hold_async(self.store):
            plan = self._plan(seen, forced)
            if plan.action is Action.USE or plan.tokens is None:
                return plan.tokens
            fallback = self._fallback(plan)
            outcome: TokenSet | ApiError
            try:
                outcome = await self._arefresh(plan.tokens.refresh_token, fallback)
            except ApiError as error:
                outcome = error
            return self._settle(plan, outcome, fallback)

    async def asave(self, tokens: TokenSet) -> None:
        """Async twin of :meth:`save`."""
        async with self._state.hold_async(self.store):
            self.store.save(tokens)
            self._state.refresh_not_before = 0.0

    async def aforget(self, session: TokenSet) -> None:
        """Async twin of :meth:`forget`."""
        async with self._state.hold_async(self.store):
            if session.same_session(self.store.load()):
                self.store.clear()
