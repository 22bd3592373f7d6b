"""The DESIGN.md workloads (W1, W1v, W2, W3 + login storm, W4) against one running server.

Closed loops (W2, W3): after the deadline no new request starts and in-flight ones
drain; rate = completed / (last completion - start); percentiles are nearest-rank
over all completed requests. Every loop is bounded by time and by count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import resource
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from httpc import Conn, Response
from server import CLK_TCK, GatehouseServer, cpu_split, cpu_ticks

BENCH_DIR = Path(__file__).resolve().parent
WRK_LUA = BENCH_DIR / "wrk_report.lua"
LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
PROFILE = "/api/v1/users/profile"
VALIDATE = "/api/v1/auth/validate"
MAX_REQUESTS = 2_000_000  # hard cap per loop, on top of the time bound


@dataclass
class Cfg:
    port: int
    duration: float = 10.0
    warmup: float = 2.0
    n_users: int = 40
    password: str = "correct-horse-battery-staple-1"
    user_fmt: str = "user{i}@example.com"
    w1_conns: int = 32
    w2_vus: int = 32
    w3_vus: int = 16
    w4_conc: int = 8
    w4_races: int = 60
    probe_conns: int = 4
    probe_rate: float = 50.0  # requests/s of the paced probe, all connections together
    quiet_threshold: float = 0.15
    quiet_wait: float = 30.0

    def user(self, i: int) -> str:
        return self.user_fmt.format(i=i)


# ------------------------------------------------------------------ measurement helpers
def pct(sorted_vals: list[float], q: float) -> float | None:
    if not sorted_vals:
        return None
    i = max(0, min(len(sorted_vals) - 1, math.ceil(q / 100.0 * len(sorted_vals)) - 1))
    return sorted_vals[i]


def latency_summary(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    if not s:
        return {}
    r = lambda x: round(x * 1e3, 2)  # noqa: E731
    return {
        "avg_ms": r(statistics.fmean(s)),
        "p50_ms": r(pct(s, 50) or 0),
        "p95_ms": r(pct(s, 95) or 0),
        "p99_ms": r(pct(s, 99) or 0),
        "max_ms": r(s[-1]),
    }


def cpu_stat() -> dict[str, tuple[int, int]]:
    res = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *v = line.split()
                vals = [int(x) for x in v]
                idle = vals[3] + vals[4]
                res[name] = (sum(vals[:8]) - idle - vals[7], vals[7])
    return res


def own_cpu() -> float:
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


class Window:
    """Wall time, server/load-generator/other tenants' CPU and server log lines of a window."""

    # set by run.py --profile: called once when the profiled workload's timed window opens
    on_enter: Callable[[], None] | None = None

    def __init__(self, server: GatehouseServer) -> None:
        self.server = server

    def __enter__(self) -> Window:
        if Window.on_enter is not None:
            hook, Window.on_enter = Window.on_enter, None
            hook()
        self.t0 = time.monotonic()
        self.srv0 = self.server.cpu_ticks()
        self.split0 = cpu_split(self.server.pid)
        self.own0 = own_cpu()
        self.cs0 = cpu_stat()
        self.log0 = _log_size(self.server)
        self.db0 = {p: cpu_ticks([p]) for p in self.server.db_pids()}
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self.t0
        cs1 = cpu_stat()
        srv = (self.server.cpu_ticks() - self.srv0) / CLK_TCK / wall
        split = [b - a for a, b in zip(self.split0, cpu_split(self.server.pid), strict=True)]
        client = (own_cpu() - self.own0) / wall
        db_pids = set(self.db0) | set(self.server.db_pids())
        db = sum(cpu_ticks([p]) - self.db0.get(p, 0) for p in db_pids) / CLK_TCK / wall
        busy = steal = 0.0
        per: dict[str, float] = {}
        for cpu in sorted(cs1):
            if cpu in self.cs0:
                b = (cs1[cpu][0] - self.cs0[cpu][0]) / CLK_TCK / wall
                s = (cs1[cpu][1] - self.cs0[cpu][1]) / CLK_TCK / wall
                busy += b
                steal += s
                per[f"{cpu}_busy"] = round(b, 3)
        time.sleep(0.2)  # let the last access-log lines land
        self.result = {
            "wall_s": round(wall, 3),
            "server_cpu": round(srv, 3),
            "client_cpu": round(client, 3),
            "db_cpu": round(db, 3) if db_pids else None,
            "foreign_cpu": round(busy - srv - client - db, 3),
            "steal": round(steal, 3),
            "server_user_cpu": round(split[0] / CLK_TCK / wall, 3),
            "server_sys_cpu": round(split[1] / CLK_TCK / wall, 3),
            # event-loop thread vs every other thread (aiosqlite connections, hash pool, anyio)
            "server_main_thread_cpu": round(split[2] / CLK_TCK / wall, 3),
            **per,
            "server_log": summarize_log(self.server, self.log0, _log_size(self.server)),
        }
        n = sum((self.result["server_log"].get("requests") or {}).values())
        if n:
            self.result["server_cpu_ms_per_request"] = round(srv * wall / n * 1e3, 3)


def _log_size(server: GatehouseServer) -> int:
    try:
        return server.access_log.stat().st_size
    except OSError:
        return 0


def summarize_log(server: GatehouseServer, start: int, end: int) -> dict[str, Any]:
    """Status/code counts per route from the server's own access log between two offsets."""
    if end <= start:
        return {}
    by: Counter[str] = Counter()
    other: Counter[str] = Counter()
    durations: list[float] = []
    with open(server.access_log, "rb") as f:
        f.seek(start)
        for raw in f.read(end - start).splitlines():
            try:
                ev = json.loads(raw)
            except ValueError:
                continue
            if ev.get("event") != "request":
                other[f"{ev.get('level')} {ev.get('event')}"] += 1
                continue
            key = f"{ev.get('method')} {ev.get('route')} {ev.get('status')}"
            if ev.get("code"):
                key += f" {ev['code']}"
            by[key] += 1
            if isinstance(ev.get("duration_ms"), (int, float)):
                durations.append(ev["duration_ms"] / 1e3)
    out: dict[str, Any] = {"requests": dict(by.most_common())}
    if other:
        out["other_events"] = dict(other.most_common(20))
    if durations:
        out["server_side"] = latency_summary(durations)
    return out


def wait_for_quiet(cfg: Cfg) -> dict[str, float]:
    """Bounded wait until other processes use < quiet_threshold cores (shared, noisy VM)."""
    t0 = time.monotonic()
    while True:
        cs0, own0 = cpu_stat(), own_cpu()
        time.sleep(1.0)
        cs1 = cpu_stat()
        foreign = sum(cs1[c][0] - cs0[c][0] for c in cs1 if c in cs0) / CLK_TCK - (own_cpu() - own0)
        waited = time.monotonic() - t0
        if foreign < cfg.quiet_threshold or waited >= cfg.quiet_wait:
            return {"foreign_before": round(foreign, 3), "quiet_waited_s": round(waited, 1)}


Tick = Callable[[float], None]  # progress callback: fraction 0..1


async def _ticker(tick: Tick | None, total: float, stop: asyncio.Event) -> None:
    t0 = time.monotonic()
    while not stop.is_set():
        if tick:
            tick(min(1.0, (time.monotonic() - t0) / total))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)
    if tick:
        tick(1.0)


async def with_progress(coro: Awaitable[Any], tick: Tick | None, total: float) -> Any:
    stop = asyncio.Event()
    t = asyncio.create_task(_ticker(tick, total, stop))
    try:
        return await coro
    finally:
        stop.set()
        await t


# ------------------------------------------------------------------ client helpers
async def login(conn: Conn, cfg: Cfg, user: str) -> Response:
    return await conn.request("POST", LOGIN, body={"email": user, "password": cfg.password})


async def login_many(cfg: Cfg, users: list[str], conc: int = 8) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    todo = list(users)

    async def worker() -> None:
        c = Conn(cfg.port)
        try:
            while todo:
                u = todo.pop()
                r = await login(c, cfg, u)
                if not r.ok:
                    raise RuntimeError(f"login {u} failed: {r.kind()} {r.body[:200]!r}")
                out[u] = r.json()
        finally:
            c.close()

    await asyncio.gather(*(worker() for _ in range(min(conc, len(users)))))
    return out


async def access_token(cfg: Cfg, user: str) -> str:
    tokens = await login_many(cfg, [user], 1)
    return str(tokens[user]["access_token"])


# ------------------------------------------------------------------ W1 / W1v (wrk)
async def run_wrk(
    cfg: Cfg,
    path: str,
    token: str,
    duration: float,
    tick: Tick | None = None,
    conns: int | None = None,
) -> dict[str, Any]:
    url = f"http://127.0.0.1:{cfg.port}{path}"
    cmd = [
        "wrk",
        "-t1",
        f"-c{conns or cfg.w1_conns}",
        f"-d{round(duration)}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_LUA),
        "-H",
        f"Authorization: Bearer {token}",
        url,
    ]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await with_progress(
            asyncio.wait_for(proc.communicate(), duration + 60), tick, duration
        )
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    line = [x for x in out.decode().splitlines() if x.startswith("WRKJSON ")]
    if not line:
        raise RuntimeError(f"wrk produced no report: {out[-500:]!r} {err[-500:]!r}")
    d = json.loads(line[0][8:])
    dur = d["duration_us"] / 1e6
    errs = {k: d[k] for k in ("connect", "read", "write", "status", "timeout")}
    return {
        "rps": round(d["requests"] / dur, 1),
        "requests": d["requests"],
        "duration_s": round(dur, 2),
        "avg_ms": round(d["mean"] / 1e3, 2),
        "p50_ms": d["p50"] / 1e3,
        "p95_ms": d["p95"] / 1e3,
        "p99_ms": d["p99"] / 1e3,
        "max_ms": d["max"] / 1e3,
        "errors": sum(errs.values()),
        "errors_detail": errs,
        "command": " ".join([*cmd[:-3], "-H", "'Authorization: Bearer <token>'", url]),
    }


async def w1(
    cfg: Cfg, server: GatehouseServer, path: str, tick: Tick | None = None
) -> dict[str, Any]:
    token = await access_token(cfg, cfg.user(cfg.n_users - 1))
    c = Conn(cfg.port)
    chk = await c.request("GET", path, {"Authorization": f"Bearer {token}"})
    c.close()
    if not chk.ok:
        raise RuntimeError(f"GET {path} answered {chk.kind()}")
    await run_wrk(cfg, path, token, cfg.warmup)
    gate = wait_for_quiet(cfg)
    with Window(server) as w:
        res = await run_wrk(cfg, path, token, cfg.duration, tick)
    return {**res, **w.result, **gate}


# ------------------------------------------------------------------ W2 refresh loop
async def w2(cfg: Cfg, server: GatehouseServer, tick: Tick | None = None) -> dict[str, Any]:
    users = [cfg.user(i) for i in range(cfg.w2_vus)]
    t0 = time.monotonic()
    logins = await login_many(cfg, users)
    setup_s = time.monotonic() - t0
    tokens = {u: logins[u]["refresh_token"] for u in users}
    lat: list[float] = []
    kinds: Counter[str] = Counter()
    st = {"errors": 0, "rotations": 0, "relogins": 0, "not_rotated": 0}
    conns = {u: Conn(cfg.port) for u in users}

    async def vu(u: str, deadline: float, record: bool) -> None:
        c, consecutive = conns[u], 0
        for _ in range(MAX_REQUESTS):
            if time.monotonic() >= deadline:
                return
            r = await c.request("POST", REFRESH, body={"refresh_token": tokens[u]})
            data = r.json() if r.ok else None
            if r.ok and isinstance(data, dict) and data.get("refresh_token"):
                consecutive = 0
                if record:
                    lat.append(r.dt)
                    if data["refresh_token"] != tokens[u]:
                        st["rotations"] += 1
                    else:
                        st["not_rotated"] += 1
                tokens[u] = data["refresh_token"]  # always carry the newest token
            else:
                if not record:
                    raise RuntimeError(f"warm-up refresh failed: {r.kind()}")
                st["errors"] += 1
                kinds[r.kind()] += 1
                consecutive += 1
                if consecutive >= 3:
                    return
                lr = await login(c, cfg, u)  # recover with a fresh session (not timed)
                st["relogins"] += 1
                if lr.ok:
                    tokens[u] = lr.json()["refresh_token"]
            if not record:
                return

    try:
        await asyncio.gather(
            *(vu(u, time.monotonic() + 60, False) for u in users)
        )  # warm-up: 1 each
        gate = wait_for_quiet(cfg)
        with Window(server) as w:
            t_start = time.monotonic()
            await with_progress(
                asyncio.gather(*(vu(u, t_start + cfg.duration, True) for u in users)),
                tick,
                cfg.duration,
            )
            t_end = time.monotonic()
    finally:
        for c in conns.values():
            c.close()
    return {
        "rps": round(len(lat) / (t_end - t_start), 1),
        "completed": len(lat),
        **st,
        "error_kinds": dict(kinds),
        "login_setup_s": round(setup_s, 2),
        **latency_summary(lat),
        **w.result,
        **gate,
    }


# ------------------------------------------------------------------ W3 login loop (+ storm probes)
async def _login_loop(cfg: Cfg, deadline: float, lat: list[float], kinds: Counter[str]) -> None:
    users = [cfg.user(i) for i in range(cfg.w3_vus)]
    conns = [Conn(cfg.port) for _ in users]

    async def vu(c: Conn, u: str) -> None:
        for _ in range(MAX_REQUESTS):
            if time.monotonic() >= deadline:
                return
            r = await login(c, cfg, u)
            if r.ok:
                lat.append(r.dt)
            else:
                kinds[r.kind()] += 1

    try:
        await asyncio.gather(*(vu(c, u) for c, u in zip(conns, users, strict=True)))
    finally:
        for c in conns:
            c.close()


def _login_result(
    lat: list[float], kinds: Counter[str], t_start: float, t_end: float
) -> dict[str, Any]:
    return {
        "rps": round(len(lat) / (t_end - t_start), 2),
        "completed": len(lat),
        "errors": sum(kinds.values()),
        "error_kinds": dict(kinds),
        **latency_summary(lat),
    }


async def w3(cfg: Cfg, server: GatehouseServer, tick: Tick | None = None) -> dict[str, Any]:
    await login_many(cfg, [cfg.user(0), cfg.user(1)], 2)  # warm-up
    lat: list[float] = []
    kinds: Counter[str] = Counter()
    gate = wait_for_quiet(cfg)
    with Window(server) as w:
        t_start = time.monotonic()
        await with_progress(
            _login_loop(cfg, t_start + cfg.duration, lat, kinds), tick, cfg.duration
        )
        t_end = time.monotonic()
    return {**_login_result(lat, kinds, t_start, t_end), **w.result, **gate}


async def w3_storm_wrk(
    cfg: Cfg, server: GatehouseServer, tick: Tick | None = None
) -> dict[str, Any]:
    """W1 (wrk on the profile, full blast) while 16 clients log in back-to-back."""
    token = await access_token(cfg, cfg.user(cfg.n_users - 1))
    lat: list[float] = []
    kinds: Counter[str] = Counter()
    lead = 1.0  # the storm is running before wrk starts, and still running when it ends
    gate = wait_for_quiet(cfg)
    with Window(server) as w:
        t_start = time.monotonic()
        storm = asyncio.create_task(
            _login_loop(cfg, t_start + lead + cfg.duration + 0.5, lat, kinds)
        )
        await asyncio.sleep(lead)
        probe = await run_wrk(cfg, PROFILE, token, cfg.duration, tick)
        await storm
        t_end = time.monotonic()
    return {"wrk": probe, "logins": _login_result(lat, kinds, t_start, t_end), **w.result, **gate}


async def paced_probe(
    cfg: Cfg, token: str, deadline: float, lat: list[float], kinds: Counter[str]
) -> None:
    """probe_rate GET /users/profile per second over probe_conns connections (no bursts)."""
    interval = cfg.probe_conns / cfg.probe_rate
    conns = [Conn(cfg.port) for _ in range(cfg.probe_conns)]

    async def one(i: int, c: Conn) -> None:
        await asyncio.sleep(i * interval / cfg.probe_conns)
        nxt = time.monotonic()
        for _ in range(MAX_REQUESTS):
            if time.monotonic() >= deadline:
                return
            r = await c.request("GET", PROFILE, {"Authorization": f"Bearer {token}"})
            if r.ok:
                lat.append(r.dt)
            else:
                kinds[r.kind()] += 1
            nxt = max(nxt + interval, time.monotonic())
            await asyncio.sleep(max(0.0, min(nxt, deadline) - time.monotonic()))

    try:
        await asyncio.gather(*(one(i, c) for i, c in enumerate(conns)))
    finally:
        for c in conns:
            c.close()


async def probe_idle(cfg: Cfg, server: GatehouseServer, tick: Tick | None = None) -> dict[str, Any]:
    token = await access_token(cfg, cfg.user(cfg.n_users - 1))
    lat: list[float] = []
    kinds: Counter[str] = Counter()
    gate = wait_for_quiet(cfg)
    with Window(server) as w:
        await with_progress(
            paced_probe(cfg, token, time.monotonic() + cfg.duration, lat, kinds), tick, cfg.duration
        )
    return {
        "rate": cfg.probe_rate,
        "completed": len(lat),
        "errors": sum(kinds.values()),
        "error_kinds": dict(kinds),
        **latency_summary(lat),
        **w.result,
        **gate,
    }


async def w3_storm_probe(
    cfg: Cfg, server: GatehouseServer, tick: Tick | None = None
) -> dict[str, Any]:
    """The paced profile probe while 16 clients log in back-to-back (is the loop blocked?)."""
    token = await access_token(cfg, cfg.user(cfg.n_users - 1))
    lat: list[float] = []
    kinds: Counter[str] = Counter()
    plat: list[float] = []
    pkinds: Counter[str] = Counter()
    lead = 1.0
    gate = wait_for_quiet(cfg)
    with Window(server) as w:
        t_start = time.monotonic()
        storm = asyncio.create_task(
            _login_loop(cfg, t_start + lead + cfg.duration + 0.5, lat, kinds)
        )
        await asyncio.sleep(lead)
        await with_progress(
            paced_probe(cfg, token, time.monotonic() + cfg.duration, plat, pkinds),
            tick,
            cfg.duration,
        )
        await storm
        t_end = time.monotonic()
    return {
        "probe": {
            "rate": cfg.probe_rate,
            "completed": len(plat),
            "errors": sum(pkinds.values()),
            "error_kinds": dict(pkinds),
            **latency_summary(plat),
        },
        "logins": _login_result(lat, kinds, t_start, t_end),
        **w.result,
        **gate,
    }


# ------------------------------------------------------------------ W4 refresh race
@dataclass
class RaceStats:
    ok_hist: Counter[int] = field(default_factory=Counter)
    distinct_hist: Counter[int] = field(default_factory=Counter)
    losers: Counter[str] = field(default_factory=Counter)
    forked: int = 0
    alive_after: int = 0
    replay_same: int = 0
    replay_kinds: Counter[str] = field(default_factory=Counter)
    login_errors: Counter[str] = field(default_factory=Counter)
    race_ms: list[float] = field(default_factory=list)


async def w4(cfg: Cfg, server: GatehouseServer, tick: Tick | None = None) -> dict[str, Any]:
    """8 concurrent refreshes of the same token, cfg.w4_races times (a fresh session each time)."""
    u = cfg.user(cfg.n_users - 2)
    main = Conn(cfg.port)
    racers = [Conn(cfg.port) for _ in range(cfg.w4_conc)]
    st = RaceStats()
    deadline = time.monotonic() + 300
    done = 0
    with Window(server) as w:
        try:
            for i in range(cfg.w4_races):
                if time.monotonic() > deadline:
                    break
                lr = await login(main, cfg, u)
                if not lr.ok:
                    st.login_errors[lr.kind()] += 1
                    continue
                r0 = lr.json()["refresh_token"]
                await asyncio.gather(
                    *(c.connect() for c in racers)
                )  # the 8 requests leave together
                t0 = time.perf_counter()
                res = await asyncio.gather(
                    *(c.request("POST", REFRESH, body={"refresh_token": r0}) for c in racers)
                )
                st.race_ms.append(time.perf_counter() - t0)
                winners = [r.json()["refresh_token"] for r in res if r.ok]
                for r in res:
                    if not r.ok:
                        st.losers[r.kind()] += 1
                distinct = list(dict.fromkeys(winners))
                st.ok_hist[len(winners)] += 1
                st.distinct_hist[len(distinct)] += 1
                st.forked += len(distinct) > 1
                # Replay the raced token inside the grace window: the same successor, every time.
                rp = await main.request("POST", REFRESH, body={"refresh_token": r0})
                if rp.ok and distinct and rp.json()["refresh_token"] == distinct[0]:
                    st.replay_same += 1
                st.replay_kinds[rp.kind()] += 1
                # Is the session still alive with what the winners got back?
                if distinct:
                    alive = await main.request("POST", REFRESH, body={"refresh_token": distinct[0]})
                    st.alive_after += alive.ok
                done += 1
                if tick:
                    tick((i + 1) / cfg.w4_races)
        finally:
            main.close()
            for c in racers:
                c.close()
    return {
        "races": done,
        "conc": cfg.w4_conc,
        "all_ok": st.ok_hist.get(cfg.w4_conc, 0),
        "ok_hist": {str(k): v for k, v in sorted(st.ok_hist.items())},
        "distinct_successors_hist": {str(k): v for k, v in sorted(st.distinct_hist.items())},
        "forked": st.forked,
        "alive_after": st.alive_after,
        "replay_same_successor": st.replay_same,
        "replay_kinds": dict(st.replay_kinds),
        "losers": dict(st.losers),
        "login_errors": dict(st.login_errors),
        "race": latency_summary(st.race_ms),
        **w.result,
    }


# ------------------------------------------------------------------ hasher alone
def hasher_alone(python: Path, cpu: str, seconds: float = 5.0) -> dict[str, Any]:
    """argon2id verifications/s at the server's costs: one thread, pinned like the server."""
    import subprocess

    r = subprocess.run(
        [
            "taskset",
            "-c",
            cpu,
            str(python),
            str(BENCH_DIR / "hasher.py"),
            "--seconds",
            str(seconds),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-1000:])
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))
