"""The soak's mixed workload: simulated users with sessions, tabs and API-key clients.

Each simulated user is one device (its own httpx client, keep-alive) that loops over
*visits*: log in, run `tabs` concurrent tabs that read the profile, validate the token
and list sessions with think times in between, then log out (three visits in four) or
walk away (the session stays until it expires, as in real life). The tabs share one
session, so its access token is refreshed by whichever tab notices first that it
expires within `margin` seconds, while the other tabs wait for that same refresh
(single flight: one refresh at a time per session, never a race with itself). A tab
that still gets 401 `token_expired` refreshes and retries once, as API.md §2 tells
clients to. Logout happens only once every tab of the visit has stopped, so no tab
ever uses a revoked token. API-key clients call the admin API with `X-API-Key`.

Every answer is recorded (time, operation, latency, ok). An answer is an error unless
it is the status the operation promises (200, 204 for logout); a `token_expired`
that the retry repaired is counted apart (`expired_retried`), not as an error.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

P = "/api/v1"
# Idle keep-alive connections are dropped by the client after 2 s, well before uvicorn's
# 5 s server-side timeout. With equal timeouts (httpx's default is 5 s too) a request sent
# on a connection the server is closing at that moment fails with "server disconnected"
# before the server ever reads it (RFC 9112 §9.6): a race of the two timers, not a server
# fault, that a starved machine makes frequent (43 in 10 minutes at load average 10).
CLIENT_LIMITS = httpx.Limits(keepalive_expiry=2.0)
TAB_MIX = (("profile", 75), ("validate", 15), ("sessions", 10))
READS = {"profile": f"{P}/users/profile", "validate": f"{P}/auth/validate",
         "sessions": f"{P}/auth/sessions"}


@dataclass
class Knobs:
    users: list[str]
    password: str
    tabs: int = 2
    think: float = 0.2  # mean seconds between a tab's requests (exponential)
    visit: float = 40.0  # mean seconds a visit lasts
    margin: float = 5.0  # refresh when the access token expires within this many seconds
    api_clients: int = 4
    api_key: str = ""
    api_user_id: str = ""


@dataclass
class Recorder:
    """Every answer as (seconds since start, operation, latency s, ok); errors by kind."""

    t0: float = field(default_factory=time.monotonic)
    samples: list[tuple[float, str, float, bool]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    expired_retried: int = 0

    def record(self, op: str, start: float, r: httpx.Response | None, want: int,
               exc: BaseException | None = None) -> bool:
        now = time.monotonic()
        ok = r is not None and r.status_code == want
        self.samples.append((now - self.t0, op, now - start, ok))
        if not ok:
            self.errors[f"{op} {error_kind(r, exc)}"] += 1
        return ok


def error_kind(r: httpx.Response | None, exc: BaseException | None) -> str:
    if r is None:
        return type(exc).__name__ if exc else "no answer"
    code = ""
    if r.headers.get("content-type", "").startswith("application/problem+json"):
        code = str(r.json().get("code", ""))
    return f"{r.status_code} {code}".strip()


def problem_code(r: httpx.Response) -> str:
    return error_kind(r, None).partition(" ")[2]


async def timed(http: httpx.AsyncClient, rec: Recorder, op: str, method: str, url: str,
                want: int, repairable: bool = False, **kw: Any) -> httpx.Response | None:
    """One request, recorded; transport errors are recorded errors, not exceptions.
    With `repairable`, a 401 token_expired is left unrecorded for the caller's retry."""
    start = time.monotonic()
    try:
        r = await http.request(method, url, **kw)
    except httpx.HTTPError as exc:
        rec.record(op, start, None, want, exc)
        return None
    if repairable and r.status_code == 401 and problem_code(r) == "token_expired":
        return r
    rec.record(op, start, r, want)
    return r


class Session:
    """One login of one simulated user; refreshes are single-flight across its tabs."""

    def __init__(self, http: httpx.AsyncClient, rec: Recorder, knobs: Knobs, pair: dict[str, Any]):
        self.http, self.rec, self.knobs = http, rec, knobs
        self._store(pair)
        self._inflight: asyncio.Task[None] | None = None

    def _store(self, pair: dict[str, Any]) -> None:
        self.access, self.refresh_token = pair["access_token"], pair["refresh_token"]
        self.expires_at = time.monotonic() + float(pair["expires_in"])

    async def refresh(self, stale: str) -> None:
        """Refresh unless another tab already replaced `stale`; join a refresh in flight."""
        if self.access != stale:
            return
        if self._inflight is None:
            self._inflight = asyncio.create_task(self._do_refresh())
            self._inflight.add_done_callback(lambda _t: setattr(self, "_inflight", None))
        await asyncio.shield(self._inflight)

    async def _do_refresh(self) -> None:
        r = await timed(self.http, self.rec, "refresh", "POST", f"{P}/auth/refresh", 200,
                        json={"refresh_token": self.refresh_token})
        if r is not None and r.status_code == 200:
            self._store(r.json())

    async def call(self, op: str) -> None:
        if self.expires_at - time.monotonic() < self.knobs.margin:
            await self.refresh(self.access)
        token = self.access
        r = await timed(self.http, self.rec, op, "GET", READS[op], 200, repairable=True,
                        headers={"Authorization": f"Bearer {token}"})
        if r is not None and r.status_code == 401 and problem_code(r) == "token_expired":
            self.rec.expired_retried += 1
            await self.refresh(token)
            await timed(self.http, self.rec, op, "GET", READS[op], 200,
                        headers={"Authorization": f"Bearer {self.access}"})


async def tab(session: Session, until: float, rng: random.Random) -> None:
    ops, weights = zip(*TAB_MIX, strict=True)
    while time.monotonic() < until:
        await asyncio.sleep(rng.expovariate(1 / session.knobs.think))
        if time.monotonic() < until:
            await session.call(rng.choices(ops, weights)[0])


async def simulated_user(base: str, email: str, knobs: Knobs, rec: Recorder, deadline: float,
                         seed: int) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=CLIENT_LIMITS) as http:
        await asyncio.sleep(rng.uniform(0, 3))  # stagger the first logins
        while time.monotonic() < deadline:
            r = await timed(http, rec, "login", "POST", f"{P}/auth/login", 200,
                            json={"email": email, "password": knobs.password})
            if r is None or r.status_code != 200:
                await asyncio.sleep(1)
                continue
            session = Session(http, rec, knobs, r.json())
            until = min(deadline, time.monotonic() + rng.uniform(0.5, 1.5) * knobs.visit)
            await asyncio.gather(*(tab(session, until, rng) for _ in range(knobs.tabs)))
            if rng.random() < 0.75 and time.monotonic() < deadline:
                await timed(http, rec, "logout", "POST", f"{P}/auth/logout", 204,
                            headers={"Authorization": f"Bearer {session.access}"})
            await asyncio.sleep(rng.uniform(0.5, 2))


async def api_client(base: str, knobs: Knobs, rec: Recorder, deadline: float, seed: int) -> None:
    """A service holding an API key: lists users and reads one, as an integration would."""
    rng = random.Random(seed)
    headers = {"X-API-Key": knobs.api_key}
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=headers,
                                 limits=CLIENT_LIMITS) as http:
        while time.monotonic() < deadline:
            await asyncio.sleep(rng.expovariate(1 / knobs.think))
            if rng.random() < 0.5:
                await timed(http, rec, "apikey_list", "GET", f"{P}/admin/users",
                            200, params={"limit": 20})
            else:
                await timed(http, rec, "apikey_get", "GET",
                            f"{P}/admin/users/{knobs.api_user_id}", 200)


async def run_mix(base: str, knobs: Knobs, rec: Recorder, duration: float) -> None:
    """All simulated users and API-key clients until `duration` seconds after rec.t0."""
    deadline = rec.t0 + duration
    tasks = [simulated_user(base, u, knobs, rec, deadline, i) for i, u in enumerate(knobs.users)]
    tasks += [api_client(base, knobs, rec, deadline, 10_000 + i) for i in range(knobs.api_clients)]
    await asyncio.gather(*tasks)
