"""Load-test your own Gatehouse deployment with Locust: the soak's mixed workload.

    pip install 'locust>=2.30,<3'
    GH_LOAD_PASSWORD=... GH_LOAD_API_KEY=gh_... \\
        locust -f bench/locustfile.py --host https://auth.example.com \\
        --headless -u 50 -r 5 -t 10m --csv load

Each simulated user logs in as one of `GH_LOAD_ACCOUNTS` accounts (`GH_LOAD_EMAIL_FORMAT`
with `{i}` = 0, 1, ...; all with the password `GH_LOAD_PASSWORD`), reads its profile,
validates its token, loads a "dashboard" (profile and sessions fetched in parallel, as a
page does), and now and then logs out and back in. With `GH_LOAD_API_KEY` (a key with the
`users:read` scope), `GH_LOAD_API_CLIENTS` (default 1) of the `-u` users are services
that list and read users with it. `GH_LOAD_THINK` is the mean pause between tasks (1 s).

Tokens are handled as a good client does (docs/sdk.md): the access token is refreshed
ahead of expiry (a quarter of its lifetime before, at most 30 s), one refresh at a time
per user (the dashboard's parallel requests wait for the one refresh in flight instead of
racing it), and a request answered 401 `token_expired` anyway is refreshed and retried
once; the first answer then shows as `token_expired (retried)` in the statistics, not as
a failure. Every other unexpected status is a failure, with its problem code.

Gatehouse rate-limits per client IP (`GATEHOUSE_RATE_LIMIT`, `GATEHOUSE_AUTH_RATE_LIMIT`):
one load generator is one IP, so raise the limits (or `GATEHOUSE_RATE_LIMITS=off`) on the
deployment under test, or expect 429 `rate_limited` failures. See docs/operations.md.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from typing import Any

import gevent
from gevent.lock import Semaphore
from locust import HttpUser, between, task

P = "/api/v1"
EMAIL_FORMAT = os.environ.get("GH_LOAD_EMAIL_FORMAT", "user{i}@example.com")
ACCOUNTS = int(os.environ.get("GH_LOAD_ACCOUNTS", "40"))
PASSWORD = os.environ.get("GH_LOAD_PASSWORD", "")
API_KEY = os.environ.get("GH_LOAD_API_KEY", "")
THINK = float(os.environ.get("GH_LOAD_THINK", "1.0"))  # mean seconds between tasks
_accounts = itertools.count()


def problem_code(response: Any) -> str:
    try:
        return str(response.json().get("code", ""))
    except ValueError:
        return ""


class GatehouseUser(HttpUser):
    """One person on one device: a session, refreshed single-flight ahead of expiry."""

    wait_time = between(THINK / 2, THINK * 1.5)

    def on_start(self) -> None:
        if not PASSWORD:
            raise RuntimeError("set GH_LOAD_PASSWORD (the seeded accounts' password)")
        self.email = EMAIL_FORMAT.format(i=next(_accounts) % ACCOUNTS)
        self.refresh_lock = Semaphore()
        self.access = ""
        self.login()

    def on_stop(self) -> None:
        if self.access:
            self.client.post(f"{P}/auth/logout", headers=self.bearer(), name="logout")

    def bearer(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.access}"}

    def store(self, pair: dict[str, Any]) -> None:
        self.access, self.refresh_token = pair["access_token"], pair["refresh_token"]
        self.expires_at = time.monotonic() + pair["expires_in"]
        self.margin = min(30.0, pair["expires_in"] / 4)

    def login(self) -> None:
        with self.client.post(f"{P}/auth/login", name="login", catch_response=True,
                              json={"email": self.email, "password": PASSWORD}) as r:
            if r.status_code == 200:
                self.store(r.json())
            else:
                self.access = ""
                r.failure(f"{r.status_code} {problem_code(r)}")

    def refresh(self, stale: str) -> None:
        """One refresh at a time; a caller whose token another refresh already replaced
        just takes the new one."""
        with self.refresh_lock:
            if self.access != stale:
                return
            with self.client.post(f"{P}/auth/refresh", name="refresh", catch_response=True,
                                  json={"refresh_token": self.refresh_token}) as r:
                if r.status_code == 200:
                    self.store(r.json())
                    return
                r.failure(f"{r.status_code} {problem_code(r)}")
            self.login()  # the session is over (API.md §2): sign in again

    def get(self, path: str, name: str) -> None:
        if not self.access:
            self.login()
            if not self.access:
                return
        if self.expires_at - time.monotonic() < self.margin:
            self.refresh(self.access)
        token = self.access
        with self.client.get(path, headers=self.bearer(token), name=name,
                             catch_response=True) as r:
            if r.status_code == 200:
                return
            if r.status_code != 401 or problem_code(r) != "token_expired":
                r.failure(f"{r.status_code} {problem_code(r)}")
                return
            r.success()  # repaired below: counted apart, not as a failure
            r.request_meta["name"] = "token_expired (retried)"
        self.refresh(token)
        with self.client.get(path, headers=self.bearer(), name=name, catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code} {problem_code(r)} after refresh")

    @task(10)
    def profile(self) -> None:
        self.get(f"{P}/users/profile", "profile")

    @task(3)
    def validate(self) -> None:
        self.get(f"{P}/auth/validate", "validate")

    @task(3)
    def dashboard(self) -> None:
        """A page load: two requests in parallel, sharing the session (and its refresh)."""
        gevent.joinall([gevent.spawn(self.get, f"{P}/users/profile", "profile"),
                        gevent.spawn(self.get, f"{P}/auth/sessions", "sessions")])

    @task(1)
    def sign_out_and_in(self) -> None:
        if self.access:
            with self.client.post(f"{P}/auth/logout", headers=self.bearer(), name="logout",
                                  catch_response=True) as r:
                if r.status_code != 204:
                    r.failure(f"{r.status_code} {problem_code(r)}")
        self.login()


class ApiKeyClient(HttpUser):
    """A service integrating with an API key (`users:read`): lists users, reads one."""

    abstract = not API_KEY
    fixed_count = int(os.environ.get("GH_LOAD_API_CLIENTS", "1"))  # started first, then users
    wait_time = between(THINK / 2, THINK * 1.5)

    def on_start(self) -> None:
        self.client.headers["X-API-Key"] = API_KEY
        self.user_ids: list[str] = []

    @task
    def list_and_read(self) -> None:
        with self.client.get(f"{P}/admin/users", params={"limit": 20}, name="apikey_list",
                             catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code} {problem_code(r)}")
                return
            self.user_ids = [u["id"] for u in r.json()["items"]]
        if self.user_ids:
            self.client.get(f"{P}/admin/users/{random.choice(self.user_ids)}",
                            name="apikey_get")
