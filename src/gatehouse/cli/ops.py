"""`gatehouse logs analyze` and `gatehouse slo check` (API.md §5).

The numbers come from `gatehouse.ops.logs_report` and `gatehouse.ops.slo`;
this module only reads arguments and renders: Rich tables, JSON, and the
`--html` report, whose charts are inline SVG drawn here (no scripts, no
fetches: a Content-Security-Policy in the page forbids both, and every text
taken from a log is escaped, because log lines are attacker-controlled).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from html import escape as html_escape
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from gatehouse.cli.common import err, fail, out
from gatehouse.ops import logs_report, slo

logs_app = typer.Typer(help="Analyse access logs (ours, or nginx/Apache Combined Log Format).",
                       no_args_is_help=True)
slo_app = typer.Typer(help="Check the service-level objectives of a running server.",
                      no_args_is_help=True)

TOP = 10


@logs_app.command("analyze")
def analyze(
    files: list[Path] = typer.Argument(..., help="Access logs; .gz files are read as they are.",
                                       show_default=False),
    since: str | None = typer.Option(
        None, "--since", metavar="WINDOW", help="Only requests this recent: 30m, 12h, 7d, 2w."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    html: Path | None = typer.Option(None, "--html", metavar="OUT",
                                     help="Also write a self-contained HTML report with charts."),
) -> None:
    """Report errors by status, code, route and hour from access logs."""
    window = None
    if since is not None:
        try:
            window = logs_report.parse_window(since)
        except ValueError as exc:
            fail(escape(str(exc)), 2)
    for path in files:
        if not path.exists():
            fail(f"{escape(str(path))}: no such file")
        if not path.is_file():
            fail(f"{escape(str(path))}: not a file")

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("reading", total=sum(p.stat().st_size for p in files))

        def each_file() -> Iterator[Path]:
            for path in files:
                progress.update(task, description=f"reading {escape(path.name)}")
                yield path

        try:
            report = logs_report.analyze(
                each_file(), since=window, progress=lambda n: progress.advance(task, n)
            ).as_dict()
        except logs_report.LogReadError as exc:
            fail(escape(str(exc)))

    if html is not None:
        page = render_html(report, [str(p) for p in files], since)
        try:
            html.write_text(page, encoding="utf-8")
        except OSError as exc:
            fail(f"{escape(str(html))}: cannot write ({exc.strerror or type(exc).__name__})")
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        _print_summary(report, len(files), since)
    if html is not None:
        (err if as_json else out).print(f"wrote {escape(str(html))}")


def _print_summary(report: dict[str, Any], files: int, since: str | None) -> None:
    window = f" in the last {since}" if since else ""
    plural = "s" if files != 1 else ""
    out.print(f"[bold]{report['total']:,}[/bold] requests{window}, "
              f"[bold]{report['errors']:,}[/bold] errors ({report['error_rate']:.2%}) "
              f"from {files} file{plural}")
    if report["skipped"]:
        out.print(f"[yellow]{report['skipped']:,} lines skipped[/yellow]: neither our JSON access "
                  "log nor Combined Log Format")
    if not report["total"]:
        return
    statuses = Table("status", "requests", "share", title="Responses by status")
    for status, count in report["by_status"].items():
        colour = "red" if status >= "500" else "yellow" if status >= "400" else "green"
        share = f"{count / report['total']:.1%}"
        statuses.add_row(f"[{colour}]{status}[/{colour}]", f"{count:,}", share)
    out.print(statuses)
    failing = [(k, v) for k, v in report["by_route"].items() if v["errors"]][:TOP]
    if failing:
        routes = Table("route", "requests", "errors", "error rate", "statuses",
                       title=f"Top {len(failing)} routes by errors")
        for route, stats in failing:
            mix = ", ".join(f"{s}: {n}" for s, n in stats["by_status"].items() if s >= "400")
            routes.add_row(Text(route), f"{stats['total']:,}", f"{stats['errors']:,}",
                           f"{stats['errors'] / stats['total']:.1%}", mix)
        out.print(routes)
    if report["by_code"]:
        codes = Table("code", "errors", title="Error codes")
        for code, count in list(report["by_code"].items())[:TOP]:
            codes.add_row(Text(code), f"{count:,}")
        out.print(codes)


# -- HTML report ---------------------------------------------------------------------------

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


@slo_app.command("check")
def check(
    url: str = typer.Option(..., "--url", help="The server's base URL; URL/metrics is read."),
    as_json: bool = typer.Option(False, "--json", help='Print {"ok", "checks"} as JSON.'),
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="Seconds to wait for /metrics."),
) -> None:
    """Compare /metrics with the SLO targets; exit 1 on a breach, 2 if /metrics cannot be read.

    Sends GATEHOUSE_METRICS_TOKEN, when set, as the bearer token.
    """
    token = os.environ.get("GATEHOUSE_METRICS_TOKEN") or None
    try:
        checks = slo.check_url(url, token, timeout)
    except slo.MetricsUnavailable as exc:
        fail(escape(str(exc)), 2)
    ok = all(c.ok for c in checks)
    if as_json:
        print(json.dumps({"ok": ok, "checks": [c.as_dict() for c in checks]}, indent=2))
    else:
        table = Table("objective", "target", "measured", "", "detail")
        for c in checks:
            verdict = "[green]ok[/green]" if c.ok else "[red]BREACH[/red]"
            table.add_row(f"{c.name}\n[dim]{c.objective}[/dim]",
                          f"{c.op} {_value(c.target, c.unit)}", _value(c.measured, c.unit),
                          verdict, c.detail)
        out.print(table)
    raise typer.Exit(0 if ok else 1)


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "no data"
    if unit == "ratio":
        return f"{value * 100:.3f}".rstrip("0").rstrip(".") + " %"
    return f"{value:,.1f}".removesuffix(".0") + " ms"
