#!/usr/bin/env python3
"""Build bench/RESULTS.md from bench/out/*.json (ours) and a peer-harness run (peers + gatehouse).

    .venv/bin/python bench/report.py                                  # newest untagged runs per db
    .venv/bin/python bench/report.py --peers /tmp/peers-out/raw/<stamp>   # also import a peers run

Only the block between the GENERATED markers is rewritten; notes outside it
(profile, findings) are kept. A peers run is summarised into bench/out/peers-<stamp>.json
so the report can be rebuilt after /tmp is gone.
"""

from __future__ import annotations

import argparse
import glob
import json
import re
import statistics
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
OUT = BENCH_DIR / "out"
RESULTS = BENCH_DIR / "RESULTS.md"
BEGIN, END = "<!-- BEGIN GENERATED (bench/report.py) -->", "<!-- END GENERATED -->"
NOISY = 0.15  # other tenants' CPU (cores) above which a window is marked noisy


def latest(db: str) -> dict[str, Any] | None:
    pat = re.compile(rf"^{db}-\d{{8}}-\d{{6}}\.json$")
    files = sorted(p for p in glob.glob(str(OUT / f"{db}-*.json")) if pat.match(Path(p).name))
    return (
        json.loads(Path(files[-1]).read_text()) | {"_file": Path(files[-1]).name} if files else None
    )


def f(x: Any, nd: int = 1) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, (int, float)):
        return f"{x:,.{nd}f}"
    return str(x)


def mb(kb: int | None) -> str:
    return "n/a" if kb is None else f"{kb / 1024:.0f} MB"


def ok(cond: bool | None) -> str:
    return "n/a" if cond is None else ("**yes**" if cond else "no")


def noisy(w: dict[str, Any] | None) -> str:
    if not w or "foreign_cpu" not in w:
        return ""
    return " ⚠" if w["foreign_cpu"] >= NOISY else ""


# ------------------------------------------------------------------ peers
def import_peers(raw_dir: Path) -> dict[str, Any]:
    """Medians over reps per peer from the harness's raw JSON; saved to out/peers-<stamp>.json."""
    per: dict[str, list[dict[str, Any]]] = {}
    for p in sorted(raw_dir.glob("*_rep*.json")):
        d = json.loads(p.read_text())
        per.setdefault(d["peer"], []).append(d)
    meta_p = raw_dir / "meta.json"
    meta = json.loads(meta_p.read_text()) if meta_p.exists() else {}

    def med(rows: list[dict[str, Any]], wl: str, key: str) -> float | None:
        vals = [
            r[wl][key] for r in rows if isinstance(r.get(wl), dict) and r[wl].get(key) is not None
        ]
        return statistics.median(vals) if vals else None

    def med_ratio(rows: list[dict[str, Any]], wl: str, num: str, den: str) -> float | None:
        vals = [
            r[wl][num] / r[wl][den]
            for r in rows
            if isinstance(r.get(wl), dict) and r[wl].get(num) and r[wl].get(den)
        ]
        return statistics.median(vals) if vals else None

    peers: dict[str, Any] = {}
    for name, rows in per.items():
        w4 = [r["W4"] for r in rows if isinstance(r.get("W4"), dict) and "iterations" in r["W4"]]
        hist: dict[str, int] = {}
        for x in w4:
            for k, v in x["ok_hist"].items():
                hist[k] = hist.get(k, 0) + v
        losers: dict[str, int] = {}
        for x in w4:
            for k, v in x["losers"].items():
                losers[k] = losers.get(k, 0) + v
        errs = {
            wl: sum((r.get(wl) or {}).get("errors", 0) or 0 for r in rows)
            for wl in ("W1", "W2", "W3")
        }
        kinds: dict[str, int] = {}
        for r in rows:
            for wl in ("W2", "W3"):
                for k, v in ((r.get(wl) or {}).get("error_kinds") or {}).items():
                    kinds[f"{wl} {k}"] = kinds.get(f"{wl} {k}", 0) + v
        peers[name] = {
            "reps": len(rows),
            "label": rows[0].get("label"),
            "hasher": rows[0].get("hasher"),
            "W1_rps": med(rows, "W1", "rps"),
            "W1_p95_ms": med(rows, "W1", "p95_ms"),
            "W1_server_cpu": med(rows, "W1", "server_cpu_util"),
            "W1_rps_per_core": med_ratio(rows, "W1", "rps", "server_cpu_util"),
            "W2_rps": med(rows, "W2", "rps"),
            "W2_avg_ms": med(rows, "W2", "avg_ms"),
            "W2_p95_ms": med(rows, "W2", "p95_ms"),
            "W3_rps": med(rows, "W3", "rps"),
            "W3_p95_ms": med(rows, "W3", "p95_ms"),
            "W4_iterations": sum(x["iterations"] for x in w4) if w4 else None,
            "W4_ok_hist": hist,
            "W4_losers": losers,
            "W4_forked": sum(x["forked"] for x in w4) if w4 else None,
            "W4_alive": sum(x["alive_after"] for x in w4) if w4 else None,
            "rss_kb": statistics.median(
                [
                    r["rss"]["peak_rss_kb_serving"]
                    for r in rows
                    if r.get("rss") and r["rss"].get("peak_rss_kb_serving")
                ]
                or [0]
            )
            or None,
            "errors": errs,
            "error_kinds": kinds,
            "foreign_cpu_max": max(
                [
                    ((r.get(wl) or {}).get("foreign_cpu") or 0)
                    for r in rows
                    for wl in ("W1", "W2", "W3")
                ]
                or [0]
            ),
            "failures": [r["error"] for r in rows if r.get("error")]
            + [
                f"{wl}: {r[wl]['error']}"
                for r in rows
                for wl in ("W1", "W2", "W3", "W4")
                if isinstance(r.get(wl), dict) and r[wl].get("error")
            ],
        }
    summary = {
        "raw_dir": str(raw_dir),
        "argv": meta.get("argv"),
        "peers": peers,
        "stamp": raw_dir.name,
    }
    (OUT / f"peers-{raw_dir.name}.json").write_text(json.dumps(summary, indent=1))
    return summary


def all_peers() -> list[dict[str, Any]]:
    """Every imported peers run, newest first."""
    files = sorted(glob.glob(str(OUT / "peers-*.json")), reverse=True)
    return [json.loads(Path(p).read_text()) for p in files]


# ------------------------------------------------------------------ our tables
def W(run: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    if not run:
        return None
    w = run["workloads"].get(name)
    return w if isinstance(w, dict) and "error" not in w else None


def peak_rss(run: dict[str, Any] | None) -> int | None:
    if not run:
        return None
    vals = [m["vm_hwm_kb"] for m in run["memory"].values() if m and m.get("vm_hwm_kb")]
    return max(vals) if vals else None


def error_rate(run: dict[str, Any] | None) -> tuple[int, int] | None:
    if not run or not run.get("server_log_total"):
        return None
    total = errors = 0
    for key, n in run["server_log_total"]["requests"].items():
        status = int(key.split()[2])
        total += n
        errors += n if status >= 500 or (status >= 400 and status != 401) else 0
    return errors, total


def summary_table(runs: dict[str, dict[str, Any] | None], bare: float | None) -> list[str]:
    s, p = runs.get("sqlite"), runs.get("postgresql")
    w1_aim = 0.25 * bare if bare else 5000
    w1v_aim = 0.40 * bare if bare else 8000
    src = "of bare in the newest peers run; ≈ 5,000 / 8,000 on a quiet VM" if bare else "DESIGN.md"
    out = [
        "| workload | metric | aim | SQLite | PostgreSQL | met (SQLite / PG) |",
        "|---|---|---|---|---|---|",
    ]

    def row(wl: str, metric: str, aim: str, getter: Any, test: Any, nd: int = 1) -> None:
        vals = []
        mets = []
        for run in (s, p):
            try:
                v = getter(run) if run else None
            except (KeyError, TypeError, ZeroDivisionError):
                v = None
            vals.append(f(v, nd) if not isinstance(v, str) else v)
            mets.append(ok(test(v, run)) if v is not None else "n/a")
        out.append(f"| {wl} | {metric} | {aim} | {vals[0]} | {vals[1]} | {mets[0]} / {mets[1]} |")

    row(
        "W1 profile",
        "req/s",
        f"≥ {w1_aim:,.0f} (25 % {src})",
        lambda r: W(r, "W1")["rps"],
        lambda v, r: v >= w1_aim,
        0,
    )
    row("W1 profile", "p95 ms", "< 15", lambda r: W(r, "W1")["p95_ms"], lambda v, r: v < 15)
    row(
        "W1v validate",
        "req/s",
        f"≥ {w1v_aim:,.0f} (40 % {src})",
        lambda r: W(r, "W1v")["rps"],
        lambda v, r: v >= w1v_aim,
        0,
    )
    row("W1v validate", "p95 ms", "< 10", lambda r: W(r, "W1v")["p95_ms"], lambda v, r: v < 10)
    row(
        "W2 refresh",
        "refreshes/s",
        "≥ 1,000 (SQLite); PG ≥ 70 % of SQLite",
        lambda r: W(r, "W2")["rps"],
        lambda v, r: (
            v >= 1000 if r is s else (W(s, "W2") is not None and v >= 0.7 * W(s, "W2")["rps"])
        ),
        0,
    )
    row("W2 refresh", "avg ms", "< 40", lambda r: W(r, "W2")["avg_ms"], lambda v, r: v < 40)
    row("W2 refresh", "p95 ms", "< 80", lambda r: W(r, "W2")["p95_ms"], lambda v, r: v < 80)
    row("W3 login", "logins/s", "—", lambda r: W(r, "W3")["rps"], lambda v, r: None, 1)
    row(
        "W3 login",
        "% of hasher alone",
        "≥ 90 %",
        lambda r: 100 * W(r, "W3")["rps"] / r["hasher"]["per_s"],
        lambda v, r: v >= 90,
        0,
    )
    row(
        "W3 storm",
        "W1 p95 during storm / idle (wrk)",
        "≤ 2×",
        lambda r: W(r, "W3storm")["wrk"]["p95_ms"] / W(r, "W1")["p95_ms"],
        lambda v, r: v <= 2,
        1,
    )
    row(
        "W3 storm",
        "paced probe p95 storm / idle",
        "≤ 2×",
        lambda r: W(r, "probe")["storm"]["probe"]["p95_ms"] / W(r, "probe")["idle"]["p95_ms"],
        lambda v, r: v <= 2,
        1,
    )
    row(
        "W4 race",
        "races with 8/8 ok, one successor",
        "60 / 60",
        lambda r: f"{W(r, 'W4')['all_ok']} / {W(r, 'W4')['races']}",
        lambda v, r: (
            W(r, "W4")["all_ok"] == W(r, "W4")["races"] == 60 and W(r, "W4")["forked"] == 0
        ),
    )
    row("W4 race", "forks", "0", lambda r: W(r, "W4")["forked"], lambda v, r: v == 0, 0)
    row(
        "memory",
        "peak RSS (VmHWM)",
        "< 100 MB",
        lambda r: mb(peak_rss(r)),
        lambda v, r: peak_rss(r) < 100 * 1024,
    )
    row(
        "errors",
        "5xx + unexpected 4xx / requests",
        "< 0.1 %",
        lambda r: "{} / {:,}".format(*error_rate(r)),
        lambda v, r: error_rate(r)[0] < 0.001 * error_rate(r)[1],
    )
    return out


def lat4(d: dict[str, Any]) -> str:
    return " / ".join(str(d.get(k)) for k in ("avg_ms", "p50_ms", "p95_ms", "p99_ms"))


def cpu3(w: dict[str, Any]) -> str:
    db = f" + PG {f(w['db_cpu'], 2)}" if w.get("db_cpu") is not None else ""
    return (
        f"{f(w.get('server_cpu'), 2)}{db} | {f(w.get('client_cpu'), 2)} | "
        f"{f(w.get('foreign_cpu'), 2)}{noisy(w)}"
    )


def answers(w: dict[str, Any]) -> str:
    req = (w.get("server_log") or {}).get("requests") or {}
    return ", ".join(f"{k.split(' ', 1)[1]}: {v:,}" for k, v in req.items()) or "n/a"


def detail_table(run: dict[str, Any]) -> list[str]:
    out = [
        "| workload | rate | avg / p50 / p95 / p99 ms | errors | server CPU | client CPU | "
        "other CPU | "
        "server answers (from its access log) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("W1", "W1v", "W2", "W3", "W3storm", "probe", "W4"):
        w = run["workloads"].get(name)
        if not isinstance(w, dict):
            continue
        if "error" in w:
            out.append(f"| {name} | **failed**: {w['error'][:200]} | | | | | | |")
            continue
        if name in ("W1", "W1v"):
            out.append(
                f"| {name} | {f(w['rps'], 0)} req/s | {lat4(w)} | {w['errors']} | {cpu3(w)} | "
                f"{answers(w)} |"
            )
        elif name in ("W2", "W3"):
            unit = "refreshes/s" if name == "W2" else "logins/s"
            out.append(
                f"| {name} | {f(w['rps'], 1)} {unit} | {lat4(w)} | {w['errors']} "
                f"{w.get('error_kinds') or ''} | {cpu3(w)} | {answers(w)} |"
            )
        elif name == "W3storm":
            k, lg = w["wrk"], w["logins"]
            out.append(
                f"| W3 + W1 (wrk) | {f(k['rps'], 0)} req/s + {lg['rps']} logins/s | "
                f"profile {lat4(k)}; login p95 {lg.get('p95_ms')} | "
                f"{k['errors']} + {lg['errors']} | {cpu3(w)} | {answers(w)} |"
            )
        elif name == "probe":
            i, st = w["idle"], w["storm"]
            pr = st["probe"]
            out.append(
                f"| probe idle ({i['rate']:g}/s) | {i['completed']} GETs | {lat4(i)} | "
                f"{i['errors']} | {cpu3(i)} | {answers(i)} |"
            )
            out.append(
                f"| probe + W3 storm | {pr['completed']} GETs + {st['logins']['rps']} logins/s | "
                f"{lat4(pr)} | {pr['errors']} + {st['logins']['errors']} | {cpu3(st)} | "
                f"{answers(st)} |"
            )
        elif name == "W4":
            out.append(
                f"| W4 | {w['races']} races × {w['conc']} | race {lat4(w['race'])} | "
                f"losers {w['losers'] or 0} | {cpu3(w)} | ok per race {w['ok_hist']}, "
                f"successors per race {w['distinct_successors_hist']}, forks {w['forked']}, "
                f"alive after {w['alive_after']}, raced token replayed -> same successor "
                f"{w['replay_same_successor']}/{w['races']} |"
            )
    return out


def peers_table(ps: dict[str, Any]) -> list[str]:
    peers = ps["peers"]
    bare = (peers.get("A_bare") or {}).get("W1_rps")
    bare_core = (peers.get("A_bare") or {}).get("W1_rps_per_core")
    out = [
        "| peer | W1 req/s | % of bare | W1 req/s per server core (% of bare) | W1 p95 | W2 /s | "
        "W2 avg | W2 p95 | W3 logins/s | W3 p95 | "
        "W4 (8 racers) | RSS | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = [
        "A_bare",
        "B_fastapi_users",
        "C_drf_simplejwt_gunicorn",
        "C_drf_simplejwt_uvicorn",
        "D_flask_jwt_extended",
        "gatehouse",
    ]
    for name in sorted(peers, key=lambda n: order.index(n) if n in order else 99):
        p = peers[name]
        pct = f"{100 * p['W1_rps'] / bare:.1f} %" if bare and p["W1_rps"] else "n/a"
        core = p.get("W1_rps_per_core")
        per_core = f"{core:,.0f} ({100 * core / bare_core:.1f} %)" if core and bare_core else "n/a"
        if p["W4_iterations"]:
            hist = ", ".join(
                f"{k}/8 ×{v}"
                for k, v in sorted(p["W4_ok_hist"].items(), key=lambda kv: -int(kv[0]))
            )
            w4 = f"{hist}; forked {p['W4_forked']}/{p['W4_iterations']}"
        else:
            w4 = "n/a"
        errs = ", ".join(f"{k} {v}" for k, v in p["errors"].items() if v) or "0"
        if p["failures"]:
            errs += "; failed: " + "; ".join(x[:80] for x in p["failures"])
        mark = " ⚠" if p["foreign_cpu_max"] >= NOISY else ""
        out.append(
            f"| {name}{mark} | {f(p['W1_rps'], 0)} | {pct} | {per_core} | {f(p['W1_p95_ms'])} | "
            f"{f(p['W2_rps'], 0)} | {f(p['W2_avg_ms'])} | {f(p['W2_p95_ms'])} | "
            f"{f(p['W3_rps'], 2)} | "
            f"{f(p['W3_p95_ms'], 0)} | "
            f"{w4} | {mb(p['rss_kb'])} | {errs} |"
        )
    return out


def generate(runs: dict[str, dict[str, Any] | None], ps_list: list[dict[str, Any]]) -> str:
    with_bare = [p for p in ps_list if (p["peers"].get("A_bare") or {}).get("W1_rps")]
    bare = with_bare[0]["peers"]["A_bare"]["W1_rps"] if with_bare else None
    lines = [BEGIN, ""]
    lines.append("### Ours vs aims (bench/run.py)")
    lines.append("")
    srcs = ", ".join(f"`out/{r['_file']}`" for r in runs.values() if r)
    lines.append(
        f"Raw: {srcs}. W1/W1v aims use bare Starlette's W1 from the newest peers run below "
        f"({f(bare, 0)} req/s) when there is one (DESIGN.md's ≈ 5,000 / 8,000 otherwise). "
        f"⚠ = another tenant used ≥ {NOISY} core during "
        "the window (this VM is shared); treat those numbers as lower bounds."
    )
    lines.append("")
    lines += summary_table(runs, bare)
    for db, run in runs.items():
        if not run:
            continue
        m = run["meta"]
        lines += ["", f"### Details: {db} (`{' '.join(run['argv'])}`)", ""]
        lines.append(
            f"git {m['git_rev']}{' + uncommitted src changes' if m.get('git_dirty') else ''}, "
            f"Python {m['python']}, {m['cpu'].strip()} ×{m['ncpu']}, kernel {m['kernel']}, "
            f"{m['wrk']}"
            + (f", PostgreSQL {m['postgres']}" if db == "postgresql" else "")
            + f". Server: `{run.get('server_command', '')}` (cwd = data dir; "
            "GATEHOUSE_RATE_LIMITS=off, access log to "
            f"{'a file' if run['log'] == 'file' else '/dev/null'}). "
            f"Hasher alone: {run['hasher']['per_s']} argon2id verifications/s "
            f"({run['hasher']['ms_each']} ms each, one thread on CPU {run['server_cpu']})."
            if run.get("hasher")
            else ""
        )
        if run.get("profiled"):
            lines.append(
                f"**{run['profiled']} was profiled with py-spy in this run: "
                "its numbers are depressed.**"
            )
        lines.append("")
        lines += detail_table(run)
        mem = run["memory"]
        lines.append("")
        lines.append(
            "RSS (VmHWM / VmRSS / threads): "
            + "; ".join(
                f"{k.replace('after_', 'after ')} {mb(v['vm_hwm_kb'])} / {mb(v['vm_rss_kb'])} / "
                f"{v['threads']}"
                for k, v in mem.items()
                if v
            )
        )
        cmd = [x.get("command") for x in (W(run, "W1"), W(run, "W1v")) if x]
        if cmd:
            lines.append("")
            lines.append("wrk: " + "; ".join(f"`{c}`" for c in cmd))
    for ps in ps_list:
        lines += ["", f"### Peers, same run (../shared/peers harness, {ps['stamp']})", ""]
        argv = ps.get("argv") or []
        lines.append(
            f"Raw: `{ps['raw_dir']}` (summary `out/peers-{ps['stamp']}.json`). harness argv: "
            f"`{' '.join(argv[1:]) if argv else '?'}`. Medians over reps; W4 counts summed "
            f"(the harness runs 20 races per rep). ⚠ = a window with ≥ {NOISY} core of other load."
        )
        lines.append("")
        lines += peers_table(ps)
        kinds = {n: p["error_kinds"] for n, p in ps["peers"].items() if p["error_kinds"]}
        if kinds:
            lines.append("")
            lines.append("Error kinds: " + "; ".join(f"{n}: {k}" for n, k in kinds.items()))
    lines += ["", END]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", help="a peers-harness raw/<stamp> directory to import")
    ap.add_argument("--sqlite", help="bench/out file for SQLite (default: newest untagged)")
    ap.add_argument("--postgresql", help="bench/out file for PostgreSQL (default: newest untagged)")
    args = ap.parse_args()
    runs: dict[str, dict[str, Any] | None] = {}
    for db in ("sqlite", "postgresql"):
        given = getattr(args, db)
        runs[db] = (
            (json.loads(Path(given).read_text()) | {"_file": Path(given).name})
            if given
            else latest(db)
        )
    if args.peers:
        import_peers(Path(args.peers))
    block = generate(runs, all_peers())
    text = (
        RESULTS.read_text()
        if RESULTS.exists()
        else "# Gatehouse benchmark results\n\n" + BEGIN + "\n" + END + "\n"
    )
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + block + tail
    else:
        text += "\n" + block + "\n"
    RESULTS.write_text(text)
    print(RESULTS)


if __name__ == "__main__":
    main()
