"""PostgreSQL stopped and started under a running instance (issue 12, DESIGN.md "Failure rules").

The test makes a throwaway cluster with the installed server's `initdb` and `pg_ctl` on a free
port (as the `postgres` user when run as root, since initdb refuses root), migrates it with
`gatehouse db upgrade`, and stops it with `pg_ctl stop -m fast` under steady SDK traffic.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gatehouse.client import Client, MemoryTokenStore
from gatehouse.settings import load_settings
from tests._servers import revoked_sessions, seed
from tests.conftest import BASE_ENV, PASSWORD, Server, free_port, run_cli

P = "/api/v1"
EMAIL = "pg@example.com"


class Cluster:
    """A PostgreSQL cluster in a temporary directory of its own, on a free loopback port."""

    def __init__(self) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        assert bins, "no PostgreSQL server installed under /usr/lib/postgresql"
        self.bin = bins[-1].parent
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="gatehouse-pg-"))
        self.data = self.dir / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.as_postgres = os.geteuid() == 0  # initdb refuses to run as root
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"{tool}: {done.stderr[-1000:]}"

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-N")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-o", options,
                  "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    pg = Cluster()
    try:
        pg.init()
        pg.start()
        yield pg
    finally:
        if pg.running():
            pg.stop()
        shutil.rmtree(pg.dir, ignore_errors=True)


def answer(r: httpx.Response) -> tuple[int, str, str | None]:
    code = r.json().get("code", "") if r.status_code >= 400 else ""
    return r.status_code, code, r.headers.get("retry-after")


def statuses(server: Server) -> list[int]:
    """Every status in the server's access log."""
    found = []
    for line in server.logs().splitlines():
        try:
            entry: dict[str, Any] = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "request":
            found.append(int(entry["status"]))
    return found


def test_postgres_stopped_and_started_under_sdk_traffic(cluster: Cluster, tmp_path: Path) -> None:
    """`pg_ctl stop -m fast` under SDK traffic: routes that need the database answer 503
    service_unavailable with Retry-After (never 500), still-valid access tokens keep
    validating, and the SDK rides it out; `pg_ctl start`: the same process serves every route
    again, and every session opened before the outage refreshes (none was lost)."""
    migrated = run_cli("db", "upgrade", env={"DATABASE_URL": cluster.url}, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    seed(load_settings(**BASE_ENV, DATABASE_URL=cluster.url), (EMAIL, ["user"]))
    server = Server({"DATABASE_URL": cluster.url, "GATEHOUSE_RETRY_AFTER": "1",
                     "ACCESS_TOKEN_TTL": "3", "GATEHOUSE_RATE_LIMITS": "off"}, tmp_path).start()
    stores = [MemoryTokenStore() for _ in range(3)]
    clients = [Client(server.url, token_store=store) for store in stores]
    failures: list[BaseException] = []
    done = [0]
    stop = threading.Event()

    def traffic(gh: Client) -> None:
        while not stop.is_set():
            try:
                assert gh.get(f"{P}/auth/validate").json()["active"] is True
                assert gh.profile()["email"] == EMAIL
                done[0] += 1
            except BaseException as exc:  # every failure is a lost request or session
                failures.append(exc)
            time.sleep(0.05)

    try:
        for gh in clients:
            gh.login(EMAIL, PASSWORD)
        threads = [threading.Thread(target=traffic, args=(gh,)) for gh in clients]
        for t in threads:
            t.start()
        time.sleep(1.0)
        tokens = httpx.post(f"{server.url}{P}/auth/login", timeout=10,
                            json={"email": EMAIL, "password": PASSWORD}).json()
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        with httpx.Client(base_url=server.url, timeout=10) as raw:
            cluster.stop()
            validated = answer(raw.get(f"{P}/auth/validate", headers=bearer))
            listing = answer(raw.get(f"{P}/auth/sessions", headers=bearer))
            refresh = answer(raw.post(f"{P}/auth/refresh",
                                      json={"refresh_token": tokens["refresh_token"]}))
            login = answer(raw.post(f"{P}/auth/login", json={"email": EMAIL, "password": PASSWORD}))
            logout = answer(raw.post(f"{P}/auth/logout", headers=bearer))
            ready = raw.get("/readyz").status_code
            time.sleep(1.0)
            during = done[0]
            cluster.start()
            started = time.monotonic()
            while raw.get(f"{P}/auth/sessions", headers=bearer).status_code != 200:
                assert time.monotonic() - started < 15, "no recovery without a restart"
                time.sleep(0.1)
            recovered_in = time.monotonic() - started
            time.sleep(1.5)
            stop.set()
            for t in threads:
                t.join(timeout=60)
            # Every session opened before the outage, the raw one included, goes on.
            current = [tokens["refresh_token"], *(s.load().refresh_token for s in stores)]
            refreshed = [raw.post(f"{P}/auth/refresh", json={"refresh_token": t}).status_code
                         for t in current]
        server_alive = server.proc is not None and server.proc.poll() is None
    finally:
        stop.set()
        for gh in clients:
            gh.close()
        server.stop()
    unavailable = (503, "service_unavailable", "1")
    assert (validated, listing, refresh, login, logout, ready) == (
        (200, "", None), unavailable, unavailable, unavailable, unavailable, 503)
    assert failures == []
    assert done[0] > during > 0
    assert refreshed == [200] * 4
    assert server_alive  # recovered without a restart
    assert recovered_in < 10
    logged = statuses(server)
    assert logged.count(503) >= 4
    assert [s for s in logged if s >= 500 and s != 503] == []
    assert revoked_sessions(cluster.url) == 0
