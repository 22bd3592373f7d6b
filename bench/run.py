#!/usr/bin/env python3
"""Gatehouse benchmark: DESIGN.md's workloads against a real `gatehouse serve`.

    .venv/bin/python bench/run.py --db sqlite
    .venv/bin/python bench/run.py --db postgresql
    .venv/bin/python bench/run.py --db sqlite --profile W1      # + py-spy during W1

One server worker pinned to CPU 0 (`taskset -c 0`), this load generator and wrk
pinned to CPU 1. Fresh database per run (SQLite file, or a PostgreSQL database
created and dropped here), users seeded with one argon2id hash, rate limits off,
access logs to a file in the data directory. Raw JSON goes to bench/out/, the
tables to bench/RESULTS.md (bench/report.py). Every server started here is
stopped by PID, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.dont_write_bytecode = True  # keep the tree clean of __pycache__

import workloads as wl  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from server import REPO, GatehouseServer, kill_started  # noqa: E402

try:
    import uvloop

    arun = uvloop.run
except ImportError:  # pragma: no cover
    arun = asyncio.run

BENCH_DIR = Path(__file__).resolve().parent
ALL = ["hasher", "W1", "W1v", "W2", "W3", "W3storm", "probe", "W4"]
console = Console(stderr=True)


def sh(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_meta(python: Path) -> dict[str, Any]:
    versions = sh(
        [
            str(python),
            "-c",
            "import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
            "['fastapi','starlette','uvicorn','uvloop','httptools','sqlalchemy','aiosqlite','asyncpg',"
            "'pyjwt','argon2-cffi','structlog','prometheus-client','pydantic']}))",
        ]
    )
    return {
        "git_rev": sh(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "git_dirty": bool(sh(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"])),
        # identifies the uncommitted server code measured (others edit src/ while we measure)
        "src_diff_sha1": sh(["sh", "-c", f"git -C {REPO} diff HEAD -- src | sha1sum | cut -c1-12"]),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cpu": sh(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]),
        "ncpu": os.cpu_count(),
        "loadavg": open("/proc/loadavg").read().strip(),
        "wrk": sh(["sh", "-c", "wrk -v 2>&1 | head -1"]),
        "postgres": sh(
            ["psql", "postgresql://postgres@127.0.0.1:5432/postgres", "-Atc", "show server_version"]
        ),
        "packages": json.loads(versions) if versions.startswith("{") else versions,
    }


class Profiler:
    """py-spy record of the server during one workload (sampling pauses the server: numbers of a
    profiled workload are not comparable; the run marks them)."""

    def __init__(self, args: argparse.Namespace, outdir: Path, stamp: str) -> None:
        self.args, self.outdir, self.stamp = args, outdir, stamp
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, pid: int, workload: str, seconds: float) -> None:
        pyspy = Path(self.args.venv) / "bin" / "py-spy"
        if not pyspy.exists():
            raise SystemExit(f"{pyspy} missing: {self.args.venv}/bin/pip install py-spy")
        self.path = (
            self.outdir
            / f"profile-{self.args.db}-{workload}-{self.args.profile_mode}-{self.stamp}.txt"
        )
        cmd = [
            str(pyspy),
            "record",
            "-p",
            str(pid),
            "-d",
            str(int(seconds)),
            "-r",
            str(self.args.profile_rate),
            "-f",
            "raw",
            "--threads",
            "-o",
            str(self.path),
        ]
        if self.args.profile_mode == "gil":
            cmd.append(
                "--gil"
            )  # only the thread holding the GIL: where the one core's Python time goes
        if self.args.profile_nonblocking:
            cmd.append("--nonblocking")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.3)  # attach before the load starts

    def stop(self) -> str | None:
        if self.proc is None:
            return None
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        return str(self.path) if self.path.exists() else None


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument(
        "--redis-url",
        default=None,
        help="also use Redis as the key-value store (e.g. redis://127.0.0.1:6379/13)",
    )
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--port", type=int, default=8130)
    ap.add_argument("--server-cpu", default="0")
    ap.add_argument("--workers", type=int, default=1,
                    help="gatehouse serve --workers (above 1 needs --redis-url)")
    ap.add_argument("--load-cpu", default="1")
    ap.add_argument("--workloads", default=",".join(ALL), help=f"comma list of {ALL}")
    ap.add_argument("--w4-races", type=int, default=60)
    ap.add_argument(
        "--log",
        choices=["file", "devnull"],
        default="file",
        help="access log to a file in the data dir (production shape) or /dev/null",
    )
    ap.add_argument(
        "--venv", default=str(REPO / ".venv"), help="virtualenv with gatehouse installed"
    )
    ap.add_argument("--datadir", default="/tmp/gatehouse-bench")
    ap.add_argument("--outdir", default=str(BENCH_DIR / "out"))
    ap.add_argument(
        "--profile", default="", help="workload to record with py-spy (W1, W1v, W2, W3, W4)"
    )
    ap.add_argument("--profile-rate", type=int, default=100)
    ap.add_argument("--profile-nonblocking", action="store_true")
    ap.add_argument(
        "--profile-mode",
        choices=["gil", "all"],
        default="gil",
        help="gil: sample only the thread holding the GIL (CPU hot spots); all: every thread",
    )
    ap.add_argument(
        "--noisy",
        type=float,
        default=0.15,
        help="re-run a window in which other processes used at least this many cores",
    )
    ap.add_argument("--noisy-retries", type=int, default=2)
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=45.0,
        help="max seconds to wait before a window for other load to drop below --noisy",
    )
    ap.add_argument("--env", action="append", default=[],
                    help="K=V for the server (e.g. GATEHOUSE_HASH_NICE=0), repeatable")
    ap.add_argument("--tag", default="", help="label added to the output file name")
    ap.add_argument("--no-report", action="store_true", help="do not regenerate bench/RESULTS.md")
    ap.add_argument("--max-minutes", type=float, default=20.0, help="hard stop for the whole run")
    args = ap.parse_args()
    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = set(names) - set(ALL)
    if bad:
        ap.error(f"unknown workloads {sorted(bad)}")

    os.sched_setaffinity(0, {int(c) for c in args.load_cpu.split(",")})  # wrk and py-spy inherit it
    atexit.register(kill_started)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: (kill_started(), sys.exit(130)))

    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    python = Path(args.venv) / "bin" / "python"
    cfg = wl.Cfg(
        port=args.port,
        duration=args.duration,
        warmup=args.warmup,
        n_users=args.users,
        w4_races=args.w4_races,
        quiet_threshold=args.noisy,
        quiet_wait=args.quiet_wait,
    )
    res: dict[str, Any] = {
        "db": args.db,
        "redis": bool(args.redis_url),
        "workers": args.workers,
        "log": args.log,
        "stamp": stamp,
        "argv": ["bench/run.py", *sys.argv[1:]],
        "cfg": cfg.__dict__,
        "server_cpu": args.server_cpu,
        "load_cpu": args.load_cpu,
        "meta": machine_meta(python),
        "profiled": args.profile or None,
        "workloads": {},
        "memory": {},
    }
    deadline = time.monotonic() + args.max_minutes * 60
    server = GatehouseServer(
        db=args.db,
        port=args.port,
        cpu=args.server_cpu,
        datadir=Path(args.datadir) / args.db,
        n_users=args.users,
        password=cfg.password,
        user_fmt=cfg.user_fmt,
        log_file=args.log,
        redis_url=args.redis_url,
        venv=Path(args.venv),
        workers=args.workers,
        extra_env=dict(kv.split("=", 1) for kv in args.env),
    )
    profiler = Profiler(args, outdir, stamp)
    console.print(
        f"[bold]Gatehouse bench[/] db={args.db} redis={bool(args.redis_url)} log={args.log} "
        f"workers={args.workers} "
        f"server cpu {args.server_cpu}, load cpu {args.load_cpu}; duration {args.duration:g}s"
    )
    progress = Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        refresh_per_second=4,
    )
    try:
        with progress:
            overall = progress.add_task("[bold]all workloads", total=len(names) + 1, info="")
            if "hasher" in names:
                t = progress.add_task("hasher alone (argon2id, 1 thread)", total=1, info="")
                res["hasher"] = wl.hasher_alone(python, args.server_cpu, 5.0)
                progress.update(
                    t, completed=1, info=f"{res['hasher']['per_s']:.1f} verifications/s"
                )
                progress.advance(overall)
            t = progress.add_task(
                f"setup: {args.db} migrate + seed {args.users} users", total=1, info=""
            )
            res["setup_s"] = round(server.prepare(), 2)
            server.start()
            res["server_pid"] = server.pid
            res["server_command"] = " ".join(server.command)
            res["memory"]["after_start"] = server.memory()
            progress.update(t, completed=1, info=f"{res['setup_s']:.1f}s, pid {server.pid}")
            progress.advance(overall)
            for name in names:
                if name == "hasher":
                    continue
                if time.monotonic() > deadline:
                    console.print("[red]--max-minutes reached, stopping")
                    break
                task = progress.add_task(name, total=1.0, info="")

                def tick(frac: float, task: Any = task) -> None:
                    progress.update(task, completed=frac)

                if args.profile == name:  # py-spy starts when the timed window opens
                    secs = args.duration + (1 if name == "W3storm" else 0)
                    wl.Window.on_enter = lambda n=name, s=secs: profiler.start(server.pid, n, s)
                t0 = time.monotonic()
                attempts: list[dict[str, Any]] = []
                retries = 0 if name == "W4" or args.profile == name else args.noisy_retries
                for attempt in range(1 + retries):
                    if attempt:
                        progress.update(
                            task,
                            completed=0,
                            info=f"noisy window (other load "
                            f"{foreign(attempts[-1]):.2f} core), re-run {attempt}",
                        )
                    try:
                        r = arun(run_one(name, cfg, server, tick))
                    except Exception as exc:  # record and go on with the next workload
                        r = {"error": f"{type(exc).__name__}: {exc}"[:800]}
                    attempts.append(r)
                    if (
                        "error" in r
                        or foreign(r) < args.noisy
                        or not server.alive()
                        or time.monotonic() > deadline
                    ):
                        break
                r = min(attempts, key=foreign)
                r["attempts"] = len(attempts)
                r["foreign_cpu_attempts"] = [foreign(a) for a in attempts]
                r["elapsed_s"] = round(time.monotonic() - t0, 1)
                if args.profile == name:
                    r["profile_file"] = profiler.stop()
                    r["profiled"] = True
                res["workloads"][name] = r
                res["memory"][f"after_{name}"] = server.memory() if server.alive() else None
                progress.update(task, completed=1.0, info=summary(name, r))
                progress.advance(overall)
                if not server.alive():
                    res["server_died"] = server.output()[-3000:]
                    console.print("[red]server died")
                    break
            res["memory"]["final"] = server.memory() if server.alive() else None
            res["server_output_tail"] = server.output()[-3000:]
            res["server_log_total"] = wl.summarize_log(server, 0, wl._log_size(server))
    finally:
        server.stop()
    path = (
        outdir
        / f"{args.db}{'-redis' if args.redis_url else ''}"
        f"{f'-w{args.workers}' if args.workers > 1 else ''}{'-' + args.tag if args.tag else ''}"
        f"-{stamp}.json"
    )
    path.write_text(json.dumps(res, indent=1))
    console.print(f"raw results: {path}")
    if not args.no_report:
        subprocess.run([sys.executable, str(BENCH_DIR / "report.py")], check=False)
    return 0


async def run_one(name: str, cfg: wl.Cfg, server: GatehouseServer, tick: wl.Tick) -> dict[str, Any]:
    if name == "W1":
        return await wl.w1(cfg, server, wl.PROFILE, tick)
    if name == "W1v":
        return await wl.w1(cfg, server, wl.VALIDATE, tick)
    if name == "W2":
        return await wl.w2(cfg, server, tick)
    if name == "W3":
        return await wl.w3(cfg, server, tick)
    if name == "W3storm":
        return await wl.w3_storm_wrk(cfg, server, tick)
    if name == "probe":
        idle = await wl.probe_idle(cfg, server, lambda f: tick(f / 2))
        storm = await wl.w3_storm_probe(cfg, server, lambda f: tick(0.5 + f / 2))
        return {"idle": idle, "storm": storm}
    if name == "W4":
        return await wl.w4(cfg, server, tick)
    raise ValueError(name)


def foreign(r: dict[str, Any]) -> float:
    """Other tenants' CPU (cores) during a workload's timed window(s)."""
    if "error" in r:
        return 99.0
    if "idle" in r:
        return max(r["idle"].get("foreign_cpu", 0), r["storm"].get("foreign_cpu", 0))
    return float(r.get("foreign_cpu", 0))


def summary(name: str, r: dict[str, Any]) -> str:
    if "error" in r:
        return f"[red]{r['error'][:80]}"
    if name in ("W1", "W1v"):
        return f"{r['rps']:,.0f} req/s p95 {r['p95_ms']:.1f} ms errors {r['errors']}"
    if name == "W2":
        return (
            f"{r['rps']:,.0f}/s avg {r.get('avg_ms', 0):.1f} p95 {r.get('p95_ms', 0):.1f} ms "
            f"errors {r['errors']}"
        )
    if name == "W3":
        return f"{r['rps']:.1f} logins/s p95 {r.get('p95_ms', 0):,.0f} ms errors {r['errors']}"
    if name == "W3storm":
        return (
            f"W1 p95 {r['wrk']['p95_ms']:.1f} ms, {r['wrk']['rps']:,.0f} req/s; "
            f"{r['logins']['rps']:.1f} logins/s"
        )
    if name == "probe":
        return (
            f"probe p95 idle {r['idle'].get('p95_ms', 0):.1f} / "
            f"storm {r['storm']['probe'].get('p95_ms', 0):.1f} ms"
        )
    if name == "W4":
        return f"{r['all_ok']}/{r['races']} races 8/8 ok, forked {r['forked']}"
    return ""


if __name__ == "__main__":
    sys.exit(main())
