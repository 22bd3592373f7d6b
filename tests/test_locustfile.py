"""bench/locustfile.py, the load-test kit users point at their deployment (issue 15).

Locust runs in a subprocess, as a user runs it: importing it here would let gevent
monkey-patch the whole pytest process (sockets, threads, asyncio's selectors).
"""

from __future__ import annotations

import asyncio
import csv
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gatehouse.context import Context
from tests.conftest import PASSWORD, Server, create_user, login

LOCUSTFILE = Path(__file__).resolve().parent.parent / "bench" / "locustfile.py"
P = "/api/v1"


async def users_read_key(server: Server) -> str:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        tokens = await login(client, "root@example.com")
        r = await client.post(f"{P}/admin/api-keys",
                              json={"name": "load", "scopes": ["users:read"]},
                              headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert r.status_code == 201, r.text
        return str(r.json()["key"])


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"])  # the kit's behaviour, not the database's
@pytest.mark.asyncio
async def test_short_headless_run_has_the_whole_mix_and_no_failures(
    make_server: Callable[..., Server], ctx: Context, admin: Any, tmp_path: Path
) -> None:
    """Five Locust users for 10 s against a real server with 3-s access tokens: logins,
    reads, parallel dashboard reads, refreshes and API-key calls all succeed, and Locust
    exits 0."""
    for i in range(3):
        await create_user(ctx, f"load{i}@example.com", name=f"Load {i}")
    server = make_server(ACCESS_TOKEN_TTL=3, GATEHOUSE_RATE_LIMITS="off")
    key = await users_read_key(server)
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path),
           "GH_LOAD_EMAIL_FORMAT": "load{i}@example.com", "GH_LOAD_ACCOUNTS": "3",
           "GH_LOAD_PASSWORD": PASSWORD, "GH_LOAD_API_KEY": key, "GH_LOAD_THINK": "0.3"}
    r = await asyncio.to_thread(
        subprocess.run,
        [str(Path(sys.executable).with_name("locust")), "-f", str(LOCUSTFILE), "--headless",
         "-u", "5", "-r", "5", "-t", "10s", "--host", server.url, "--csv", str(tmp_path / "run"),
         "--only-summary", "--stop-timeout", "5"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    with (tmp_path / "run_stats.csv").open() as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    failures = {name: row["Failure Count"] for name, row in rows.items()
                if row["Failure Count"] != "0"}
    assert failures == {}, r.stderr[-3000:]
    assert {"login", "profile", "validate", "sessions", "refresh", "apikey_list",
            "apikey_get"} <= set(rows), sorted(rows)
    assert r.returncode == 0, r.stderr[-3000:]
