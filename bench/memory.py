#!/usr/bin/env python3
"""Where a worker's memory goes: imports by package, then a real `gatehouse serve` in a login storm.

    .venv/bin/python bench/memory.py                       # breakdown + storm, 16 clients, 10 s
    .venv/bin/python bench/memory.py --env GATEHOUSE_HASH_WORKERS=1 --no-breakdown

1. Breakdown (a child interpreter, the server's environment): RSS after importing what
   `gatehouse serve` imports and after building the app, and the RSS each top-level
   package added while it was imported (its own nested imports of other packages excluded).
2. Storm: one `gatehouse serve` worker (SQLite, seeded users, rate limits off), RSS after
   start and after a few profile reads, then `--clients` closed-loop logins for
   `--seconds` while VmRSS is sampled every 50 ms; VmHWM (the peak) at the end.
   argon2id allocates its memory cost (19 MiB by default) per hash in flight, so the
   peak depends on how many hashes run at once: GATEHOUSE_HASH_WORKERS, default the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.dont_write_bytecode = True

import workloads as wl  # noqa: E402
from httpc import Conn  # noqa: E402
from server import REPO, GatehouseServer, kill_started, status_kb  # noqa: E402

BREAKDOWN = r"""
import collections, importlib._bootstrap as boot, json, sys
def rss():
    with open('/proc/self/status') as f:
        return int(next(l for l in f if l.startswith('VmRSS')).split()[1])
# RSS growth while each module is imported, minus what its own nested imports added:
# exclusive kB per top-level package (C extensions' pages count too, unlike tracemalloc).
by, stack, original = collections.Counter(), [], boot._find_and_load
def find_and_load(name, import_):
    stack.append(0)
    before = rss()
    try:
        return original(name, import_)
    finally:
        grown = rss() - before
        by[name.split('.')[0]] += grown - stack.pop()
        if stack:
            stack[-1] += grown
boot._find_and_load = find_and_load
start = rss()
from gatehouse.cli.main import serve_app
serve_app()  # what `gatehouse serve` builds before uvicorn
import uvicorn, uvicorn.protocols.http.httptools_impl, uvicorn.loops.uvloop
after_imports = rss()
from gatehouse.app import create_app
from gatehouse.settings import Settings
before_app = rss()
app = create_app(Settings())
after_app = rss()
by['(create_app: context, routes, hasher)'] += after_app - before_app
print(json.dumps({'start_kb': start, 'after_imports_kb': after_imports, 'after_app_kb': after_app,
                  'modules': len(sys.modules), 'packages_kb': by.most_common(int(sys.argv[1]))}))
"""


def breakdown(env: dict[str, str], cwd: Path, top: int = 30) -> dict[str, Any]:
    r = subprocess.run([str(REPO / ".venv/bin/python"), "-c", BREAKDOWN, str(top)], env=env,
                       cwd=cwd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    result: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    return result


def mem(pid: int) -> dict[str, int | None]:
    return {k: status_kb(pid, k) for k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads")}


async def storm(cfg: wl.Cfg, pid: int, seconds: float, samples: list[int]) -> dict[str, Any]:
    lat: list[float] = []
    kinds: Counter[str] = Counter()
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            samples.append(status_kb(pid, "VmRSS") or 0)
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    t0 = time.monotonic()
    await wl._login_loop(cfg, t0 + seconds, lat, kinds)
    elapsed = time.monotonic() - t0
    stop.set()
    await sampler
    return {"logins": len(lat), "logins_per_s": round(len(lat) / elapsed, 1), "errors": dict(kinds)}


async def profile_reads(cfg: wl.Cfg, n: int) -> None:
    token = await wl.access_token(cfg, cfg.user(0))
    c = Conn(cfg.port)
    try:
        for _ in range(n):
            r = await c.request("GET", "/api/v1/users/profile",
                                headers={"authorization": f"Bearer {token}"})
            assert r.ok, r.kind()
    finally:
        c.close()


def mb(kb: int | None) -> str:
    return f"{(kb or 0) / 1024:.0f} MB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--cpu", default="0,1",
                    help="taskset CPU list for the server (the hash pool is sized to it)")
    ap.add_argument("--env", action="append", default=[], help="K=V for the server, repeatable")
    ap.add_argument("--no-breakdown", action="store_true")
    ap.add_argument("--top", type=int, default=30, help="packages listed in the breakdown")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    extra = dict(kv.split("=", 1) for kv in args.env)
    with socket.socket() as probe:  # a free loopback port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="gh-mem-") as tmp:
        server = GatehouseServer(db="sqlite", port=port, cpu=args.cpu, datadir=Path(tmp) / "data",
                                 n_users=args.clients, password=wl.Cfg.password,
                                 user_fmt=wl.Cfg.user_fmt, extra_env=extra)
        out: dict[str, Any] = {"env": extra, "cpu": args.cpu, "clients": args.clients,
                               "seconds": args.seconds}
        try:
            server.prepare()
            if not args.no_breakdown:
                out["breakdown"] = breakdown(server.env(), server.datadir, args.top)
            server.start()
            out["after_start"] = mem(server.pid)
            cfg = wl.Cfg(port=port, n_users=args.clients, w3_vus=args.clients)
            asyncio.run(profile_reads(cfg, 500))
            out["after_reads"] = mem(server.pid)
            samples: list[int] = []
            out["storm"] = asyncio.run(storm(cfg, server.pid, args.seconds, samples))
            out["during_storm_max_rss_kb"] = max(samples, default=0)
            out["after_storm"] = mem(server.pid)
        finally:
            server.stop()
            kill_started()
    report(out)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


def report(out: dict[str, Any]) -> None:
    b = out.get("breakdown")
    if b:
        print(f"child interpreter: start {mb(b['start_kb'])}, after serve's imports "
              f"{mb(b['after_imports_kb'])} ({b['modules']} modules), after create_app "
              f"{mb(b['after_app_kb'])}; RSS added while importing, by top-level package:")
        for name, kb in b["packages_kb"][:25]:
            print(f"  {kb / 1024:6.1f} MB  {name}")
    print(f"server (cpu {out['cpu']}, env {out['env'] or 'default'}):")
    for key in ("after_start", "after_reads", "after_storm"):
        m = out[key]
        print(f"  {key:12} VmRSS {mb(m['VmRSS'])} (anonymous {mb(m.get('RssAnon'))}, files "
              f"{mb(m.get('RssFile'))}), VmHWM {mb(m['VmHWM'])}, threads {m['Threads']}")
    s = out["storm"]
    print(f"  storm: {out['clients']} clients x {out['seconds']} s, {s['logins']} logins "
          f"({s['logins_per_s']}/s), errors {s['errors'] or 0}; max VmRSS sampled "
          f"{mb(out['during_storm_max_rss_kb'])}; peak (VmHWM) {mb(out['after_storm']['VmHWM'])}")


if __name__ == "__main__":
    sys.exit(main())
