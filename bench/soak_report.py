"""What a soak run measured, turned into numbers, a verdict and an SVG chart.

The RSS verdict compares RSS *floors*, not single samples. Every login in flight holds
argon2's working buffer (19 MiB at the default memory cost), mapped for the hash and
returned right after it (auth/passwords.py): a sample taken mid-hash reads 19-40 MB
above the process's real footprint and says nothing about a leak. So each sample is
replaced by the lowest RSS within `FLOOR_WINDOW` seconds around it (no hash lasts that
long; a leak raises the floor, a hash does not). The first `WARMUP` (20 %) of the run is
warm-up (imports finish, the allocator's arenas, SQLite's page cache, connection pools
and the revocation copy fill up); its end is the *baseline*: the median floor over the
last 10 % of the warm-up window, at least its last 2 s. The run leaks when the highest
floor of the last quarter exceeds the baseline by more than `RSS_BOUND` (5 %). Growth that
flattens out within warm-up is not a leak. The raw peak is reported beside the verdict.
"""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any
from xml.sax.saxutils import escape

from workloads import latency_summary

WARMUP = 0.20
RSS_BOUND = 0.05
FLOOR_WINDOW = 3.0
Samples = list[tuple[float, str, float, bool]]


def rss_floor(rss: list[tuple[float, int]],
              window: float = FLOOR_WINDOW) -> list[tuple[float, int]]:
    """Each sample's value replaced by the minimum within `window` seconds centred on it."""
    half = window / 2
    return [(t, min(kb for u, kb in rss if abs(u - t) <= half)) for t, _ in rss]


def rss_verdict(rss: list[tuple[float, int]], duration: float) -> dict[str, Any]:
    """Baseline floor at the end of warm-up vs the highest floor of the last quarter (see
    the docstring)."""
    warm_end = duration * WARMUP
    floor = rss_floor(rss)
    base = [kb for t, kb in floor if warm_end - max(0.1 * warm_end, 2.0) <= t <= warm_end]
    tail = [kb for t, kb in floor if t >= duration * 0.75]
    if not base or not tail:
        return {"ok": False, "reason": "too few RSS samples"}
    baseline, peak = statistics.median(base), max(tail)
    growth = peak / baseline - 1
    return {
        "ok": growth <= RSS_BOUND,
        "warmup_end_s": round(warm_end, 1),
        "baseline_kb": round(baseline),
        "last_quarter_max_kb": peak,
        "growth_pct": round(growth * 100, 2),
        "bound_pct": RSS_BOUND * 100,
        "peak_kb": max(kb for _, kb in rss),
    }


def buckets(samples: Samples, duration: float, width: float) -> list[dict[str, Any]]:
    """Per time bucket: answers/s, errors and latency of everything but logins (argon2
    makes a login 20-50x a read: pooled, a few of them would set every p99), plus logins
    on their own."""
    out = []
    n = max(1, round(duration / width))
    for i in range(n):
        lo, hi = i * width, (i + 1) * width
        rows = [s for s in samples if lo <= s[0] < hi]
        reads = [s[2] for s in rows if s[1] != "login"]
        logins = [s[2] for s in rows if s[1] == "login"]
        out.append({
            "t_s": round(hi, 1),
            "requests": len(rows),
            "rps": round(len(rows) / width, 1),
            "errors": sum(not s[3] for s in rows),
            **latency_summary(reads),
            "login_p50_ms": latency_summary(logins).get("p50_ms"),
            "login_p95_ms": latency_summary(logins).get("p95_ms"),
        })
    return out


def per_operation(samples: Samples, duration: float) -> dict[str, Any]:
    ops: dict[str, list[float]] = {}
    errs: Counter[str] = Counter()
    for _, op, lat, ok in samples:
        ops.setdefault(op, []).append(lat)
        errs[op] += not ok
    return {op: {"count": len(v), "per_s": round(len(v) / duration, 2), "errors": errs[op],
                 **latency_summary(v)} for op, v in sorted(ops.items())}


# ------------------------------------------------------------------ SVG chart
COLORS = {"p50": "#2b8a3e", "p95": "#e67700", "p99": "#c92a2a", "RSS": "#1c7ed6",
          "floor": "#0b7285", "req/s": "#5f3dc4", "errors": "#c92a2a"}
W, PH, ML, MR, MT = 860, 230, 70, 20, 30  # width, panel height, margins


def _panel(y0: float, title: str, unit: str, series: dict[str, list[tuple[float, float]]],
           x_max: float, shade_to: float, hline: tuple[float, str] | None) -> list[str]:
    ys = [y for pts in series.values() for _, y in pts] + ([hline[0]] if hline else [])
    y_max = max(ys or [1]) * 1.1 or 1
    y_min = min(ys) * 0.9 if unit == " MB" else 0.0
    pw, ph = W - ML - MR, PH - 50

    def xy(x: float, y: float) -> str:
        return f"{ML + x / x_max * pw:.1f},{y0 + ph - (y - y_min) / (y_max - y_min) * ph:.1f}"

    out = [f'<text x="{ML}" y="{y0 - 8}" font-weight="bold">{escape(title)}</text>',
           f'<rect x="{ML}" y="{y0}" width="{shade_to / x_max * pw:.1f}" height="{ph}" '
           'fill="#f1f3f5"/>',
           f'<text x="{ML + 4}" y="{y0 + 14}" fill="#868e96">warm-up</text>',
           f'<rect x="{ML}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#adb5bd"/>']
    for k in range(5):
        y = y_min + (y_max - y_min) * k / 4
        out.append(f'<text x="{ML - 6}" y="{xy(0, y).split(",")[1]}" text-anchor="end" '
                   f'dominant-baseline="middle">{y:.0f}{escape(unit) if k == 4 else ""}</text>')
    for k in range(6):
        x = x_max * k / 5
        out.append(f'<text x="{xy(x, y_min).split(",")[0]}" y="{y0 + ph + 16}" '
                   f'text-anchor="middle">{x:.0f} s</text>')
    if hline:
        a, b = xy(0, hline[0]), xy(x_max, hline[0])
        out.append(f'<polyline points="{a} {b}" stroke="#c92a2a" stroke-dasharray="6 4" '
                   f'fill="none"/><text x="{W - MR - 4}" y="{float(a.split(",")[1]) - 4}" '
                   f'text-anchor="end" fill="#c92a2a">{escape(hline[1])}</text>')
    for i, (name, pts) in enumerate(series.items()):
        line = " ".join(xy(x, y) for x, y in pts)
        out.append(f'<polyline points="{line}" fill="none" stroke="{COLORS[name]}" '
                   'stroke-width="1.8"/>')
        out.append(f'<text x="{ML + pw - 150 + 50 * i}" y="{y0 - 8}" '
                   f'fill="{COLORS[name]}">{name}</text>')
    return out


def chart_svg(result: dict[str, Any]) -> str:
    """Read latency p50/p95/p99, answers/s and errors per bucket and server RSS over time,
    warm-up shaded, the 5 % RSS bound drawn as a dashed line."""
    dur, bs = result["duration_s"], result["buckets"]
    lat = {q: [(b["t_s"], b.get(f"{q}_ms") or 0.0) for b in bs] for q in ("p50", "p95", "p99")}
    rate = {k: [(b["t_s"], b[f]) for b in bs] for k, f in (("req/s", "rps"), ("errors", "errors"))}
    rss = {"RSS": [(t, kb / 1024) for t, kb in result["rss_kb"]],
           "floor": [(t, kb / 1024) for t, kb in rss_floor(result["rss_kb"])]}
    v = result["rss_verdict"]
    bound = (v["baseline_kb"] / 1024 * (1 + RSS_BOUND), "baseline + 5 %") if v.get(
        "baseline_kb") else None
    head = (f"Gatehouse soak: {result['db']}, {dur:.0f} s, {result['totals']['requests']:,} "
            f"requests, {result['totals']['errors']} errors, "
            f"RSS growth {v.get('growth_pct', 'n/a')} %")
    body = [f'<text x="{ML}" y="18" font-size="14" font-weight="bold">{escape(head)}</text>']
    body += _panel(MT + 20, "latency of reads, refreshes, logouts, API-key calls (per bucket)",
                   "ms", lat, dur, dur * WARMUP, None)
    body += _panel(MT + 20 + PH, "answers/s and errors (per bucket)", "", rate, dur,
                   dur * WARMUP, None)
    body += _panel(MT + 20 + 2 * PH, "server RSS (VmRSS)", " MB", rss, dur, dur * WARMUP, bound)
    h = MT + 20 + 3 * PH
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" '
            f'font-family="sans-serif" font-size="11"><rect width="{W}" height="{h}" '
            f'fill="white"/>{"".join(body)}</svg>\n')
