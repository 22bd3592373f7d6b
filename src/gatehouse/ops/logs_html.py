"""The `gatehouse logs analyze --html` page: tiles, inline SVG charts and a route table.

No scripts and no fetches (a Content-Security-Policy in the page forbids both),
and every text taken from a log is escaped, because log lines are
attacker-controlled.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape as html_escape
from typing import Any

TOP = 10  # rows per chart and table
_WIDTH = 760
_GREY, _RED = "#9aa5b1", "#d64545"
_CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:800px;color:#1f2933}
h1{font-size:1.5rem}h2{font-size:1.1rem;margin-top:2rem}.meta{color:#616e7c}
.tiles{display:flex;gap:1rem}
.tiles div{border:1px solid #e4e7eb;border-radius:6px;padding:.6rem 1rem}
.tiles b{display:block;font-size:1.4rem}svg text{font:11px system-ui,sans-serif;fill:#3e4c59}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #e4e7eb;padding:.3rem;
text-align:left}td.n,th.n{text-align:right}"""


def render_html(report: dict[str, Any], sources: list[str], since: str | None) -> str:
    """The report as one HTML page: tiles, three SVG charts and a route table."""
    e = html_escape
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    window = f" · last {e(since)}" if since else ""
    tiles = [(f"{report['total']:,}", "requests"), (f"{report['errors']:,}", "errors"),
             (f"{report['error_rate']:.2%}", "error rate"),
             (f"{report['skipped']:,}", "lines skipped")]
    error_statuses = [(s, n) for s, n in report["by_status"].items() if s >= "400"]
    error_routes = [(r, v["errors"]) for r, v in report["by_route"].items() if v["errors"]][:TOP]
    rows = "".join(
        f"<tr><td>{e(route)}</td><td class=n>{v['total']:,}</td><td class=n>{v['errors']:,}</td>"
        f"<td>{e(', '.join(f'{s}: {n}' for s, n in v['by_status'].items()))}</td></tr>"
        for route, v in list(report["by_route"].items())[:50]
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Gatehouse access-log report</title><style>{_CSS}</style></head><body>
<h1>Access-log report</h1>
<p class="meta">{e(", ".join(sources))}{window} · generated {generated}</p>
<div class="tiles">{"".join(f"<div><b>{v}</b>{label}</div>" for v, label in tiles)}</div>
<h2>Requests and errors by hour (UTC)</h2>
{_hourly_svg(list(report["by_hour"].values()), list(report["errors_by_hour"].values()))}
<h2>Errors by status</h2>
{_hbar_svg(error_statuses, _RED, "Errors by status")}
<h2>Top error routes</h2>
{_hbar_svg(error_routes, _RED, "Top error routes")}
<h2>Routes (worst first)</h2>
<table><tr><th>route</th><th class=n>requests</th><th class=n>errors</th><th>statuses</th></tr>
{rows}</table>
</body></html>
"""


def _hourly_svg(requests: list[int], errors: list[int]) -> str:
    """24 bars of requests (grey) with their errors (red) drawn over them from the baseline."""
    height, left, top, bottom = 220, 44, 18, 22
    plot = height - top - bottom
    slot = (_WIDTH - left) / 24
    peak = max(requests, default=0) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
             f'viewBox="0 0 {_WIDTH} {height}" role="img" '
             'aria-label="Requests and errors by hour">',
             f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{peak:,}</text>',
             f'<text x="{left - 6}" y="{top + plot}" text-anchor="end">0</text>',
             f'<line x1="{left}" y1="{top + plot}" x2="{_WIDTH}" y2="{top + plot}" '
             'stroke="#cbd2d9"/>',
             f'<rect x="{left}" y="2" width="10" height="10" fill="{_GREY}"/>'
             f'<text x="{left + 14}" y="11">requests</text>'
             f'<rect x="{left + 80}" y="2" width="10" height="10" fill="{_RED}"/>'
             f'<text x="{left + 94}" y="11">errors</text>']
    for hour, (total, failed) in enumerate(zip(requests, errors, strict=True)):
        x, width = left + hour * slot + 2, slot - 4
        for count, colour in ((total, _GREY), (failed, _RED)):
            bar = count / peak * plot
            parts.append(f'<rect x="{x:.1f}" y="{top + plot - bar:.1f}" width="{width:.1f}" '
                         f'height="{bar:.1f}" fill="{colour}"><title>{hour:02d}:00 UTC: '
                         f'{total:,} requests, {failed:,} errors</title></rect>')
        parts.append(f'<text x="{x + width / 2:.1f}" y="{height - 6}" text-anchor="middle">'
                     f"{hour:02d}</text>")
    return "".join(parts) + "</svg>"


def _hbar_svg(items: list[tuple[str, int]], colour: str, label: str) -> str:
    """Horizontal bars, one per (name, count); long names are cut, the full one is the tooltip."""
    if not items:
        return '<p class="meta">None.</p>'
    row, names = 24, 330
    room = _WIDTH - names - 70
    peak = max(count for _, count in items) or 1
    height = row * len(items) + 4
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
             f'viewBox="0 0 {_WIDTH} {height}" role="img" aria-label="{html_escape(label)}">']
    for i, (name, count) in enumerate(items):
        y = 2 + i * row
        shown = name if len(name) <= 50 else name[:49] + "…"
        bar = max(count / peak * room, 1)
        parts.append(f'<text x="{names - 8}" y="{y + 16}" text-anchor="end"><title>'
                     f"{html_escape(name)}</title>{html_escape(shown)}</text>"
                     f'<rect x="{names}" y="{y + 4}" width="{bar:.1f}" height="{row - 8}" '
                     f'fill="{colour}"/>'
                     f'<text x="{names + bar + 6:.1f}" y="{y + 16}">{count:,}</text>')
    return "".join(parts) + "</svg>"


# -- SLO check -----------------------------------------------------------------------------
