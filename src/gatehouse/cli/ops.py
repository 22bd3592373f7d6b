"""`gatehouse logs analyze` and `gatehouse slo check` (API.md §5).

The numbers come from `gatehouse.ops.logs_report` and `gatehouse.ops.slo`;
this module only reads arguments and renders Rich tables and JSON; the
`--html` page is drawn by `gatehouse.ops.logs_html`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from gatehouse.cli.common import err, fail, out
from gatehouse.ops import logs_html, logs_report

logs_app = typer.Typer(help="Analyse access logs (ours, or nginx/Apache Combined Log Format).",
                       no_args_is_help=True)
slo_app = typer.Typer(help="Check the service-level objectives of a running server.",
                      no_args_is_help=True)

TOP = logs_html.TOP  # rows per table, as in the HTML report


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
        page = logs_html.render_html(report, [str(p) for p in files], since)
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


@slo_app.command("check")
def check(
    url: str = typer.Option(..., "--url", help="The server's base URL; URL/metrics is read."),
    as_json: bool = typer.Option(False, "--json", help='Print {"ok", "checks"} as JSON.'),
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="Seconds to wait for /metrics."),
) -> None:
    """Compare /metrics with the SLO targets; exit 1 on a breach, 2 if /metrics cannot be read.

    Sends GATEHOUSE_METRICS_TOKEN, when set, as the bearer token.
    """
    from gatehouse.ops import slo  # with httpx: not in every `gatehouse serve` worker

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
