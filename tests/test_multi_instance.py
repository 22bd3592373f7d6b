"""Many instances, one truth (issue 12): two or three real `gatehouse serve` processes on one
PostgreSQL database and a `redis-server` the test starts, sharing their keys, keep every
promise one process makes: one successor per refresh, revocation everywhere within 1 s,
shared throttles and rate limits, no session lost when an instance is killed or rolled.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from gatehouse.auth.access_tokens import AccessTokens
from gatehouse.auth.jwks import KeyRing, write_new_key
from gatehouse.client import Client, RetryPolicy
from gatehouse.settings import Settings
from gatehouse.store.db.engine import sync_url
from tests._servers import (
    METRICS_TOKEN,
    RedisProcess,
    RoundRobin,
    refresh_counts,
    revoked_sessions,
    seed,
)
from tests.conftest import PASSWORD, Server, run_cli

P = "/api/v1"
RACES = 100
RACERS_PER_INSTANCE = 2
Start = Callable[..., list[Server]]


@pytest.fixture
def backend() -> str:
    """Several instances share PostgreSQL."""
    return "postgresql"


@pytest.fixture
def instances(make_server: Callable[..., Server]) -> Iterator[Start]:
    """`instances(n, **env)`: n servers started side by side on the test's database and on a
    `redis-server` of the test's own (killed after the test)."""
    redis = RedisProcess()
    redis.start()

    def start(count: int, **env: Any) -> list[Server]:
        # One issuer, as behind a load balancer (each Server has its own PUBLIC_API_URL).
        merged = {"REDIS_URL": redis.url, "GATEHOUSE_METRICS_TOKEN": METRICS_TOKEN,
                  "JWT_ISSUER": "http://127.0.0.1:8000", **env}
        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(lambda _: make_server(**merged), range(count)))

    try:
        yield start
    finally:
        redis.kill()


def login(server: Server, email: str) -> dict[str, Any]:
    r = httpx.post(f"{server.url}{P}/auth/login", json={"email": email, "password": PASSWORD},
                   timeout=10)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def answer(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, (r.json().get("code", "") if r.status_code >= 400 else "")


def validate(server: Server, access_token: str) -> tuple[int, str]:
    r = httpx.get(f"{server.url}{P}/auth/validate", timeout=10,
                  headers={"Authorization": f"Bearer {access_token}"})
    return answer(r)


def chain(database_url: str, session_id: str) -> list[tuple[int, bool]]:
    """(generation, still current) of every refresh token the session ever had, in order."""
    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT generation, superseded_at IS NULL FROM refresh_tokens "
                "WHERE session_id = :sid ORDER BY generation"), {"sid": session_id}).all()
    finally:
        engine.dispose()
    return [(int(g), bool(live)) for g, live in rows]


def test_a_hundred_refresh_races_across_three_instances_converge_without_a_fork(
    instances: Start, make_settings: Callable[..., Settings], database_url: str,
) -> None:
    """100 times, one refresh token is presented 6 times at once, 2 racers on each of 3
    instances: every racer gets 200 and the same successor (API.md §3: the losers get the
    session's current token), the session stays alive, and the database holds one chain of
    101 tokens with one current: exactly one rotation per race, across the instances."""
    env = {"GATEHOUSE_RATE_LIMITS": "off"}
    seed(make_settings(**env), ("racer@example.com", ["user"]))
    servers = instances(3, **env)
    tokens = login(servers[0], "racer@example.com")

    async def races() -> tuple[list[set[tuple[int, str]]], str, str]:
        outcomes: list[set[tuple[int, str]]] = []
        current = tokens["refresh_token"]
        access = tokens["access_token"]
        clients = [httpx.AsyncClient(base_url=s.url, timeout=30) for s in servers]
        try:
            for _ in range(RACES):
                body = {"refresh_token": current}
                answers = await asyncio.gather(*(
                    c.post(f"{P}/auth/refresh", json=body)
                    for c in clients for _ in range(RACERS_PER_INSTANCE)))
                outcomes.append({(r.status_code, r.json().get("refresh_token", r.text))
                                 for r in answers})
                (status, current), *_ = outcomes[-1]
                if status == 200:
                    access = answers[0].json()["access_token"]
        finally:
            for c in clients:
                await c.aclose()
        return outcomes, current, access

    outcomes, last, access = asyncio.run(races())
    forks = [o for o in outcomes if len(o) != 1 or next(iter(o))[0] != 200]
    assert forks == [], forks[:3]
    assert len({next(iter(o))[1] for o in outcomes}) == RACES  # each race moved the chain on
    assert [validate(s, access) for s in servers] == [(200, "")] * 3
    assert chain(database_url, tokens["session_id"]) == [(g, g == RACES) for g in range(RACES + 1)]
    counts = [refresh_counts(s.url) for s in servers]
    assert sum(c.get("success", 0) for c in counts) == RACES
    assert sum(c.get("grace", 0) for c in counts) == RACES * (3 * RACERS_PER_INSTANCE - 1)
    assert sum(c.get("reused", 0) for c in counts) == 0
    r = httpx.post(f"{servers[1].url}{P}/auth/refresh", json={"refresh_token": last}, timeout=10)
    assert r.status_code == 200, r.text


def refused_within(server: Server, access_token: str, limit: float) -> float:
    """Seconds until `server` answers session_revoked for the token; fails past `limit`."""
    started = time.monotonic()
    while (got := validate(server, access_token)) != (401, "session_revoked"):
        elapsed = time.monotonic() - started
        assert got == (200, ""), got
        assert elapsed <= limit, f"still accepted after {elapsed:.2f} s"
        time.sleep(0.02)
    return time.monotonic() - started


def test_logout_on_one_instance_is_refused_on_the_other_within_a_second(
    instances: Start, make_settings: Callable[..., Settings],
) -> None:
    """A token validated on B, logged out on A, is refused by B within 1 s; and a logout-all
    on B reaches A as fast, for every session of the user."""
    seed(make_settings(), ("two@example.com", ["user"]))
    a, b = instances(2)
    first, second, third = (login(s, "two@example.com") for s in (a, b, a))
    assert validate(b, first["access_token"]) == (200, "")
    bearer = {"Authorization": f"Bearer {first['access_token']}"}
    assert httpx.post(f"{a.url}{P}/auth/logout", headers=bearer, timeout=10).status_code == 204
    assert refused_within(b, first["access_token"], 1.0) <= 1.0
    assert validate(a, second["access_token"]) == (200, "")
    bearer = {"Authorization": f"Bearer {third['access_token']}"}
    assert httpx.post(f"{b.url}{P}/auth/logout-all", headers=bearer, timeout=10).status_code == 204
    assert refused_within(a, second["access_token"], 1.0) <= 1.0
    assert refused_within(a, third["access_token"], 1.0) <= 1.0


def test_login_throttle_and_rate_limit_hit_through_one_instance_hold_on_the_other(
    instances: Start, make_settings: Callable[..., Settings],
) -> None:
    """Failed logins through A lock the client IP out of B too (429 login_throttled, even with
    the right password), and an API rate limit spent on A answers 429 rate_limited on B."""
    env = {"GATEHOUSE_LOGIN_IP_CEILING": 2, "GATEHOUSE_RATE_LIMIT": "5/minute"}
    seed(make_settings(**env), ("three@example.com", ["user"]))
    a, b = instances(2, **env)
    wrong = {"email": "three@example.com", "password": "not-the-password-123"}
    right = {"email": "three@example.com", "password": PASSWORD}
    with httpx.Client(timeout=10) as client:
        failed = [answer(client.post(f"{a.url}{P}/auth/login", json=wrong)) for _ in range(3)]
        throttled = client.post(f"{b.url}{P}/auth/login", json=right)
        spent = [client.get(f"{a.url}{P}/users/profile").status_code for _ in range(5)]
        limited = client.get(f"{b.url}{P}/users/profile")
    assert failed == [(401, "invalid_credentials")] * 3
    assert answer(throttled) == (429, "login_throttled")
    assert int(throttled.headers["retry-after"]) >= 1
    assert spent == [401] * 5
    assert answer(limited) == (429, "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1


class RefreshLoop(threading.Thread):
    """One session refreshed back to back, each refresh on the next instance; a refresh cut
    off by a dead instance is retried at once with the same token on the next one."""

    def __init__(self, servers: list[Server], tokens: dict[str, Any], offset: int) -> None:
        super().__init__()
        self.urls = [s.url for s in servers]
        self.turn = offset
        self.tokens = tokens
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.cut_off = 0  # refreshes whose answer never came (the instance died)
        self.retry_took: list[float] = []  # seconds from the cut-off attempt to the 200

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set() and not self.failures:
                self.refresh_once(client)

    def refresh_once(self, client: httpx.Client) -> None:
        body = {"refresh_token": self.tokens["refresh_token"]}
        first_try: float | None = None
        while True:
            url = self.urls[self.turn % len(self.urls)]
            self.turn += 1
            try:
                r = client.post(f"{url}{P}/auth/refresh", json=body)
            except httpx.TransportError:
                if first_try is None:
                    self.cut_off += 1
                    first_try = time.monotonic()
                continue
            if r.status_code != 200:
                self.failures.append(r.text)
                return
            if first_try is not None:
                self.retry_took.append(time.monotonic() - first_try)
            self.tokens = r.json()
            return


def test_instance_killed_during_a_refresh_storm_loses_no_session(
    instances: Start, make_settings: Callable[..., Settings], database_url: str,
) -> None:
    """Three instances under a refresh storm (12 sessions refreshed back to back, round-robin,
    plus SDK clients on 1 s access tokens behind a round-robin transport); one instance is
    SIGKILLed: every refresh cut off is retried with the same token on another instance and
    succeeds within the grace window, no SDK call fails, and no session ends."""
    grace = 5
    env = {"GATEHOUSE_RATE_LIMITS": "off", "REFRESH_GRACE_SECONDS": grace, "ACCESS_TOKEN_TTL": 1}
    seed(make_settings(**env), ("storm@example.com", ["user"]))
    servers = instances(3, **env)
    loops = [RefreshLoop(servers, login(servers[n % 3], "storm@example.com"), n)
             for n in range(12)]
    sdk_failures: list[BaseException] = []
    stop = threading.Event()
    sdks = [Client(servers[0].url, transport=RoundRobin(servers),
                   retry=RetryPolicy(backoff=0.1, budget=grace)) for _ in range(3)]

    def sdk_traffic(gh: Client) -> None:
        while not stop.is_set():
            try:
                assert gh.get(f"{P}/auth/validate").json()["active"] is True
            except BaseException as exc:  # every failure is a lost request or session
                sdk_failures.append(exc)
            time.sleep(0.05)

    for gh in sdks:
        gh.login("storm@example.com", PASSWORD)
    sdk_threads = [threading.Thread(target=sdk_traffic, args=(gh,)) for gh in sdks]
    try:
        for t in [*loops, *sdk_threads]:
            t.start()
        time.sleep(1.5)
        victim = servers[2].proc
        assert victim is not None
        victim.kill()  # SIGKILL: no graceful shutdown, answers in flight are lost
        victim.wait(timeout=10)
        time.sleep(2.5)  # the SDK's 1 s tokens expire twice meanwhile
    finally:
        stop.set()
        for loop in loops:
            loop.stop.set()
        for t in [*loops, *sdk_threads]:
            t.join(timeout=30)
        for gh in sdks:
            gh.close()
    servers[2].proc = None
    assert [f for loop in loops for f in loop.failures] == []
    assert sdk_failures == []
    assert sum(loop.cut_off for loop in loops) >= 1  # the kill did cut refreshes off
    assert max(t for loop in loops for t in loop.retry_took) < grace
    assert revoked_sessions(database_url) == 0
    for loop in loops:
        assert [live for _, live in chain(database_url, loop.tokens["session_id"])].count(True) == 1
        for server in servers[:2]:
            assert validate(server, loop.tokens["access_token"]) in {(200, ""),
                                                                     (401, "token_expired")}
        r = httpx.post(f"{servers[0].url}{P}/auth/refresh", timeout=10,
                       json={"refresh_token": loop.tokens["refresh_token"]})
        assert r.status_code == 200, r.text


def kid_of(access_token: str) -> str:
    header = access_token.split(".")[0]
    kid: str = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
    return kid


def test_a_key_rotated_in_moments_ago_verifies_on_a_running_instance_at_once(
    tmp_path: Path,
) -> None:
    """An instance that read JWT_KEYS_DIR a moment ago verifies a token signed with a key that
    `keys rotate` added since (the first instance restarted in a roll signs with it at once):
    it re-reads the directory when an unknown kid arrives and the directory changed, instead
    of refusing such tokens as token_invalid for up to the reload interval."""
    keys = tmp_path / "keys"
    write_new_key(keys)

    def instance() -> AccessTokens:
        return AccessTokens(keys=KeyRing("EdDSA", keys_dir=keys), issuer="gh", audience="gh",
                            ttl=60)

    running = instance()
    old, _ = running.issue(user_id="u", session_id="s", roles=[])
    write_new_key(keys)
    restarted = instance()
    new, _ = restarted.issue(user_id="u", session_id="s", roles=[])
    assert kid_of(new) != kid_of(old)
    assert running.verify(new).sid == "s"
    assert restarted.verify(old).sid == "s"


def test_rolling_deploy_with_a_rotated_key_ends_no_session(
    instances: Start, make_settings: Callable[..., Settings], tmp_path: Path,
) -> None:
    """EdDSA keys in a shared JWT_KEYS_DIR: `gatehouse keys rotate` adds a key, then the two
    instances restart one at a time under SDK traffic through a round-robin transport. Tokens
    signed with the old key and the new one validate on both instances at every step, the
    SDK sees no failure and keeps its session, and sessions opened before the roll refresh."""
    keys = tmp_path / "keys"
    write_new_key(keys)
    # Tokens live long enough that every one issued during the roll is still valid at its end.
    env = {"JWT_ALGORITHM": "EdDSA", "JWT_KEYS_DIR": str(keys), "ACCESS_TOKEN_TTL": 60,
           "GATEHOUSE_RATE_LIMITS": "off"}
    seed(make_settings(**env), ("roll@example.com", ["user"]))
    a, b = instances(2, **env)
    before = [login(s, "roll@example.com") for s in (a, b)]
    old_kid = kid_of(before[0]["access_token"])
    failures: list[BaseException] = []
    stop = threading.Event()
    gh = Client(a.url, transport=RoundRobin([a, b]), retry=RetryPolicy(backoff=0.1, budget=60))
    gh.login("roll@example.com", PASSWORD)
    sid = gh.get(f"{P}/auth/validate").json()["session_id"]

    def traffic() -> None:
        while not stop.is_set():
            try:
                assert gh.get(f"{P}/auth/validate").json()["session_id"] == sid
            except BaseException as exc:  # every failure is a defect here
                failures.append(exc)
            time.sleep(0.05)

    def everyone_validates_everywhere(issued: list[dict[str, Any]]) -> None:
        for tokens in issued:
            for server in (a, b):
                assert validate(server, tokens["access_token"]) == (200, ""), server.url

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        rotated = run_cli("keys", "rotate", env={k: str(v) for k, v in env.items()})
        assert rotated.returncode == 0, rotated.stderr
        issued = list(before)
        for server in (a, b):  # the roll: one instance at a time
            server.stop()
            server.start()
            fresh = login(server, "roll@example.com")
            assert kid_of(fresh["access_token"]) != old_kid  # the new key signs
            issued.append(fresh)
            everyone_validates_everywhere(issued)
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=60)
        gh.close()
    assert failures == []
    for tokens, server in zip(before, (b, a), strict=True):
        r = httpx.post(f"{server.url}{P}/auth/refresh", timeout=10,
                       json={"refresh_token": tokens["refresh_token"]})
        assert r.status_code == 200, r.text
