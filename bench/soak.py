#!/usr/bin/env python3
"""Soak: a mixed workload against a real `gatehouse serve` for a set time, with leak detection.

    .venv/bin/python bench/soak.py --duration 600                     # SQLite, 10 minutes
    .venv/bin/python bench/soak.py --db postgresql --redis-url redis://127.0.0.1:6379/13

Starts the server the way bench/run.py does (bench/server.py: fresh database, seeded
users, one worker pinned to `--server-cpu`, stopped by PID), with a short
ACCESS_TOKEN_TTL so that refreshes really happen. Then `--users` simulated users log
in, read with two tabs each, refresh single-flight before expiry and log out, while
`--api-clients` services call the admin API with an API key (bench/soak_load.py).

Reports error rate, requests/s, read latency p50/p95/p99 and login latency per time
bucket, and the server's RSS (VmRSS, sampled every 0.5 s) over time; writes a JSON
result and an SVG chart to `--outdir`. Exit 1 when any request failed (see
soak_load's docstring for what counts) or when RSS grew more than 5 % after warm-up:
the highest RSS of the last quarter of the run against the RSS at the end of warm-up,
the first 20 % of the run (soak_report's docstring says why these windows).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.dont_write_bytecode = True  # keep the tree clean of __pycache__

import httpx  # noqa: E402
import soak_report as sr  # noqa: E402
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from run import arun, console, machine_meta  # noqa: E402
from server import BENCH_DIR, CLK_TCK, REPO, GatehouseServer, kill_started, status_kb  # noqa: E402
from soak_load import Knobs, P, Recorder, run_mix  # noqa: E402
from workloads import own_cpu  # noqa: E402

PASSWORD = "correct-horse-battery-staple-1"
ADMIN = "soak-admin0@example.com"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--redis-url", default=None, help="also use Redis as the key-value store")
    ap.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    ap.add_argument("--users", type=int, default=40, help="simulated users (one session each)")
    ap.add_argument("--tabs", type=int, default=2, help="concurrent tabs per simulated user")
    ap.add_argument("--think", type=float, default=0.2, help="mean seconds between requests")
    ap.add_argument("--visit", type=float, default=40.0, help="mean seconds of a visit")
    ap.add_argument("--api-clients", type=int, default=4)
    ap.add_argument("--access-ttl", type=int, default=20, help="ACCESS_TOKEN_TTL of the server")
    ap.add_argument("--port", type=int, default=8140)
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--load-cpu", default="1")
    ap.add_argument("--datadir", default="/tmp/gatehouse-soak")
    ap.add_argument("--outdir", default=str(BENCH_DIR / "results"))
    ap.add_argument("--venv", default=str(REPO / ".venv"))
    return ap.parse_args(argv)


def seed_admin(server: GatehouseServer) -> None:
    """One admin (for the API key) on top of the users prepare() seeded (migrated already)."""
    subprocess.run([str(server.venv / "bin" / "python"), str(BENCH_DIR / "seed_users.py"),
                    "--n", "1", "--fmt", ADMIN.replace("0@", "{i}@"), "--password", PASSWORD,
                    "--role", "admin"],
                   cwd=server.datadir, env=server.env(), check=True, capture_output=True,
                   timeout=300)


async def api_key(base: str) -> tuple[str, str]:
    """A `users:read` API key made by the admin, and one user id for it to read."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        r = await http.post(f"{P}/auth/login", json={"email": ADMIN, "password": PASSWORD})
        r.raise_for_status()
        auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = await http.post(f"{P}/admin/api-keys", headers=auth,
                            json={"name": "soak", "scopes": ["users:read"]})
        r.raise_for_status()
        key = r.json()["key"]
        r = await http.get(f"{P}/admin/users", headers={"X-API-Key": key}, params={"limit": 1})
        r.raise_for_status()
        return key, r.json()["items"][0]["id"]


async def watch(server: GatehouseServer, rec: Recorder, duration: float, progress: Progress,
                rss: list[tuple[float, int]]) -> None:
    """RSS every 0.5 s; the progress line shows the last 5 s."""
    task = progress.add_task("soak", total=duration, info="")
    seen = 0
    while (t := time.monotonic() - rec.t0) < duration:
        kb = status_kb(server.pid, "VmRSS")
        if kb is not None:
            rss.append((round(t, 2), kb))
        recent = [s for s in rec.samples[seen:] if s[0] >= t - 5]
        seen = max(seen, len(rec.samples) - len(recent))
        p95 = sr.latency_summary([s[2] for s in recent if s[1] != "login"]).get("p95_ms", 0)
        progress.update(task, completed=t, info=(
            f"{len(recent) / 5:,.0f} req/s  p95 {p95:.1f} ms  errors {sum(rec.errors.values())}"
            f"  RSS {(kb or 0) / 1024:.0f} MB"))
        await asyncio.sleep(0.5)
    progress.update(task, completed=duration)


async def soak(args: argparse.Namespace, server: GatehouseServer) -> dict[str, Any]:
    base = f"http://127.0.0.1:{args.port}"
    key, user_id = await api_key(base)
    knobs = Knobs(users=[f"user{i}@example.com" for i in range(args.users)], password=PASSWORD,
                  tabs=args.tabs, think=args.think, visit=args.visit,
                  margin=max(1.0, args.access_ttl / 4), api_clients=args.api_clients,
                  api_key=key, api_user_id=user_id)
    rec, rss = Recorder(), []
    progress = Progress(TextColumn("{task.description}"), BarColumn(),
                        TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                        TextColumn("{task.fields[info]}"), console=console, refresh_per_second=2)
    cpu0 = own_cpu(), server.cpu_ticks()
    with progress:
        await asyncio.gather(run_mix(base, knobs, rec, args.duration),
                             watch(server, rec, args.duration, progress, rss))
    wall = max(args.duration, max((s[0] for s in rec.samples), default=0))
    cpu = {"load_generator": round((own_cpu() - cpu0[0]) / wall, 3),
           "server": round((server.cpu_ticks() - cpu0[1]) / CLK_TCK / wall, 3)}
    errors = sum(rec.errors.values())
    width = max(5.0, args.duration / 20)
    return {
        "duration_s": args.duration,
        "totals": {"requests": len(rec.samples), "errors": errors,
                   "error_rate": round(errors / max(1, len(rec.samples)), 6),
                   "rps": round(len(rec.samples) / wall, 1),
                   "expired_retried": rec.expired_retried},
        "cpu_cores": cpu,
        "errors_by_kind": dict(rec.errors),
        "operations": sr.per_operation(rec.samples, wall),
        "bucket_s": width,
        "buckets": sr.buckets(rec.samples, args.duration, width),
        "rss_kb": rss,
        "rss_verdict": sr.rss_verdict(rss, args.duration),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.sched_setaffinity(0, {int(c) for c in args.load_cpu.split(",")})
    atexit.register(kill_started)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: (kill_started(), sys.exit(130)))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    server = GatehouseServer(
        db=args.db, port=args.port, cpu=args.server_cpu,
        datadir=Path(args.datadir) / args.db, n_users=args.users, password=PASSWORD,
        user_fmt="user{i}@example.com", redis_url=args.redis_url, venv=Path(args.venv),
        extra_env={"ACCESS_TOKEN_TTL": str(args.access_ttl)},
    )
    res: dict[str, Any] = {"db": args.db, "redis": bool(args.redis_url), "stamp": stamp,
                           "argv": ["bench/soak.py", *sys.argv[1:]] if argv is None else argv,
                           "args": vars(args), "meta": machine_meta(Path(args.venv) / "bin/python")}
    console.print(f"[bold]Gatehouse soak[/] db={args.db} redis={bool(args.redis_url)} "
                  f"{args.duration:g} s, {args.users} users x {args.tabs} tabs, "
                  f"{args.api_clients} API-key clients, ACCESS_TOKEN_TTL={args.access_ttl}")
    try:
        server.prepare()
        seed_admin(server)
        server.start()
        res |= arun(soak(args, server))
        res["server_alive"] = server.alive()
        res["vm_hwm_kb"] = status_kb(server.pid, "VmHWM")
        res["loadavg_end"] = Path("/proc/loadavg").read_text().strip()
    finally:
        res["server_output_tail"] = server.output()[-2000:]
        server.stop()
    res["ok"] = bool(res["server_alive"] and res["totals"]["errors"] == 0
                     and res["rss_verdict"]["ok"])
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    name = f"soak-{args.db}{'-redis' if args.redis_url else ''}-{stamp}"
    (outdir / f"{name}.json").write_text(json.dumps(res, indent=1))
    (outdir / f"{name}.svg").write_text(sr.chart_svg(res))
    print_summary(res, outdir / name)
    return 0 if res["ok"] else 1


def print_summary(res: dict[str, Any], stem: Path) -> None:
    t, v = res["totals"], res["rss_verdict"]
    console.print(f"{t['requests']:,} requests, {t['rps']:,.1f}/s, errors {t['errors']} "
                  f"({t['error_rate']:.4%}) {res['errors_by_kind'] or ''}; CPU (cores) "
                  f"server {res['cpu_cores']['server']}, load {res['cpu_cores']['load_generator']}")
    for op, o in res["operations"].items():
        console.print(f"  {op:<12} {o['count']:>8,} {o['per_s']:>8.1f}/s  p50 {o['p50_ms']:.1f}"
                      f"  p95 {o['p95_ms']:.1f}  p99 {o['p99_ms']:.1f} ms  errors {o['errors']}")
    console.print(f"RSS floor {v.get('baseline_kb', 0) / 1024:.1f} MB at end of warm-up, "
                  f"highest {v.get('last_quarter_max_kb', 0) / 1024:.1f} MB in the last quarter: "
                  f"{v.get('growth_pct', 'n/a')} % (bound {sr.RSS_BOUND:.0%}); raw peak "
                  f"{v.get('peak_kb', 0) / 1024:.1f} MB (logins in flight hold argon2's buffer)")
    verdict = "[green]PASS" if res["ok"] else "[red]FAIL"
    console.print(f"{verdict}[/]  {stem}.json, {stem}.svg")


if __name__ == "__main__":
    sys.exit(main())
