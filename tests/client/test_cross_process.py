"""Processes that share a token file refresh once per expiry and never replay a rotated token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from gatehouse.client import Client, FileTokenStore

if TYPE_CHECKING:
    from conftest import FakeGatehouse

SRC = Path(__file__).resolve().parents[2] / "src"
DURATION = 4.0
THREADS_PER_PROCESS = 4

# Each process runs several threads, each with its own Client on one shared
# FileTokenStore, calling the profile route as fast as it can across expiries.
HAMMER = """
import json, sys, threading, time
from gatehouse.client import ApiError, Client, FileTokenStore

url, path, email, password, duration, threads = sys.argv[1:7]
store = FileTokenStore(path)
ok, errors = [], []

def hammer():
    with Client(url, token_store=store) as client:
        client.login(email, password)  # reuses the session already in the file
        end = time.monotonic() + float(duration)
        while time.monotonic() < end:
            try:
                client.profile()
                ok.append(1)
            except ApiError as error:
                errors.append(repr(error))
            time.sleep(0.002)

workers = [threading.Thread(target=hammer) for _ in range(int(threads))]
for w in workers:
    w.start()
for w in workers:
    w.join()
print(json.dumps({"ok": len(ok), "errors": errors}))
"""


def test_two_processes_share_one_file_store_without_reuse(
    live_server: tuple[str, FakeGatehouse], tmp_path: Path
) -> None:
    """Two processes hammer one token file across 2 s expiries: no reuse, one refresh per expiry."""
    url, fake = live_server
    path = tmp_path / "tokens.json"
    with Client(url, token_store=FileTokenStore(path)) as client:
        client.login(fake.email, fake.password)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    args = [url, str(path), fake.email, fake.password, str(DURATION), str(THREADS_PER_PROCESS)]
    started = time.monotonic()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    reports = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
        reports.append(json.loads(stdout))
    elapsed = time.monotonic() - started

    assert [r["errors"] for r in reports] == [[], []]
    assert all(r["ok"] > 50 for r in reports)
    assert fake.stats["login"] == 1
    # Nobody ever presented a superseded refresh token: no grace answer, no reuse.
    assert (fake.stats["grace_hits"], fake.stats["reuse_detected"]) == (0, 0)
    assert len(set(fake.refresh_tokens_presented)) == len(fake.refresh_tokens_presented)
    assert fake.stats["rotations"] == fake.stats["refresh_calls"]
    # A 2 s token is refreshed once it is 1.6 s old: about once per 1.6 s, never more.
    assert 2 <= fake.stats["refresh_calls"] <= elapsed / 1.6 + 1
