#!/usr/bin/env python3
"""Per-request cost of one route, in process: the app without the HTTP server or the network.

Why: wall-clock load tests on a shared 2-core VM move by ±10 % with the neighbours,
so a 5 % change in the request path cannot be seen with wrk alone. This script calls
the ASGI app directly (the same scope uvicorn builds for `wrk -H 'Authorization: ...'`)
and reports what is repeatable:

* `--mode cpu`: CPU seconds per request (process time, best of `--rounds`);
* `--mode profile`: a cProfile of `--n` requests, top functions by own and total time;
* `--mode count`: run `--n` requests under `valgrind --tool=callgrind --collect-atstart=no`:
  collection is switched on for the requests only (a 3-line C helper built with gcc and
  valgrind's callgrind.h, loaded with ctypes), so the instruction count divided by n is
  the cost of one request, the same on a busy machine as on a quiet one.

It migrates a fresh SQLite database with `gatehouse db upgrade` from the interpreter's
own import path, so it measures another checkout with `PYTHONPATH=<checkout>/src`.
Rate limits off and the access log to a file, as `bench/run.py` runs the server.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PASSWORD = "bench-Correct-Horse-Battery-7"
ROUTES = {"W1": "/api/v1/users/profile", "W1v": "/api/v1/auth/validate",
          "W2": "/api/v1/auth/refresh"}  # W2: POST, each with the newest refresh token


def _env(tmp: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": f"sqlite:///{tmp}/gatehouse.db",
        "JWT_SECRET": secrets.token_urlsafe(48),
        "ENCRYPTION_KEY": secrets.token_urlsafe(24)[:32],
        "GATEHOUSE_RATE_LIMITS": "off",
        "GATEHOUSE_LOG_FILE": str(tmp / "access.log"),
    }


_TOGGLE_C = '#include <valgrind/callgrind.h>\nvoid toggle(void) { CALLGRIND_TOGGLE_COLLECT; }\n'


def callgrind_toggle(tmp: Path) -> Any:
    """A function that switches callgrind's collection on or off (a no-op outside valgrind)."""
    import ctypes

    (tmp / "toggle.c").write_text(_TOGGLE_C)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(tmp / "toggle.so"),
                    str(tmp / "toggle.c")], check=True, timeout=60)
    return ctypes.CDLL(str(tmp / "toggle.so")).toggle


class Caller:
    """Sends one request straight into an ASGI app and collects the answer."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, method: str, path: str, headers: list[tuple[bytes, bytes]],
                       body: bytes = b"") -> tuple[int, bytes]:
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1", "method": method, "scheme": "http", "path": path,
            "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"host", b"127.0.0.1:8130"), *headers],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8130), "state": {},
        }
        sent = False
        status = 0
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(chunks)


async def _lifespan(app: Any) -> tuple[asyncio.Task[None], asyncio.Event]:
    started, stop = asyncio.Event(), asyncio.Event()
    first = True

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "lifespan.startup"}
        await stop.wait()
        return {"type": "lifespan.shutdown"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()
        elif message["type"].endswith("failed"):
            raise RuntimeError(message)

    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                   receive, send))
    await asyncio.wait_for(started.wait(), 60)
    return task, stop


async def run(args: argparse.Namespace, tmp: Path) -> None:
    from gatehouse.app import create_app
    from gatehouse.audit.service import Actor
    from gatehouse.ops.logging import configure_logging
    from gatehouse.settings import Settings

    configure_logging("info", tmp / "access.log")  # what `gatehouse serve` does with LOG_FILE
    app = create_app(Settings())  # type: ignore[call-arg]
    task, stop = await _lifespan(app)
    ctx = app.state.ctx
    await ctx.accounts.create(email="bench@example.com", password=PASSWORD, name="Bench",
                              roles=["user"], actor=Actor(user_id=None, ip="cli"))
    call = Caller(app)
    body = f'{{"email": "bench@example.com", "password": "{PASSWORD}"}}'.encode()
    status, answer = await call("POST", "/api/v1/auth/login", [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        body)
    assert status == 200, answer
    token = json.loads(answer)["access_token"]
    refresh = json.loads(answer)["refresh_token"]
    headers = [(b"authorization", f"Bearer {token}".encode())]
    path = ROUTES.get(args.route, args.route)

    async def rotate() -> tuple[int, bytes]:
        """W2: one rotating refresh, carrying the newest refresh token."""
        nonlocal refresh
        body = json.dumps({"refresh_token": refresh}).encode()
        status, answer = await call("POST", path, [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode())], body)
        if status == 200:
            refresh = json.loads(answer)["refresh_token"]
        return status, answer

    async def one() -> tuple[int, bytes]:
        return await (rotate() if args.route == "W2" else call("GET", path, headers))

    for _ in range(200):  # warm caches (user cache, regexes, metrics children)
        status, answer = await one()
        assert status == 200, (status, answer)

    async def batch(n: int) -> None:
        for _ in range(n):
            await one()

    if args.mode == "profile":
        prof = cProfile.Profile()
        prof.enable()
        await batch(args.n)
        prof.disable()
        if args.save:
            prof.dump_stats(args.save)
        stats = pstats.Stats(prof)
        stats.sort_stats(args.sort).print_stats(args.top)
    elif args.mode == "cpu":
        best = float("inf")
        for _ in range(args.rounds):
            t0 = time.process_time()
            await batch(args.n)
            best = min(best, (time.process_time() - t0) / args.n)
        print(f"{args.route}: {best * 1e6:.1f} µs CPU per request "
              f"(best of {args.rounds} x {args.n})")
    else:
        toggle = callgrind_toggle(tmp)
        toggle()
        await batch(args.n)
        toggle()
        print(f"{args.route}: {args.n} requests (callgrind collected these only)")
    sys.stdout.flush()
    stop.set()
    try:  # older checkouts could hang at shutdown (fixed in 738910d); the numbers are out
        await asyncio.wait_for(task, 10)
    except TimeoutError:
        print("shutdown timed out; exiting without it", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
        os._exit(0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--route", default="W1", help="W1, W1v, W2 (rotating refreshes) or a path (GET with the Bearer token)")
    ap.add_argument("--mode", choices=["cpu", "profile", "count"], default="cpu")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sort", default="tottime")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--save", help="--mode profile: also write the pstats file here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gh-inproc-") as name:
        tmp = Path(name)
        os.environ.update(_env(tmp))
        subprocess.run([sys.executable, "-m", "gatehouse", "db", "upgrade"], check=True,
                       capture_output=True, timeout=300)
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(run(args, tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
