"""`gatehouse logs analyze`: exact error reports from our JSON access log and nginx/Apache CLF."""

from __future__ import annotations

import gzip
import json
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gatehouse.ops.logs_report import LogReadError, analyze, normalise_path, parse_window
from tests.conftest import Server, run_cli

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
HOURS = [f"{h:02d}" for h in range(24)]


def json_line(ts: str, method: str, route: str, path: str, status: int, code: str | None = None,
              event: str = "request") -> str:
    """One line as api/middleware.py writes it (field order included)."""
    return json.dumps({"method": method, "route": route, "path": path, "status": status,
                       "code": code, "duration_ms": 1.93, "request_id": "0f3c", "user_id": None,
                       "ip": "203.0.113.7", "event": event, "level": "info", "ts": ts})


def clf_line(when: str, request: str, status: int) -> str:
    return f'203.0.113.7 - - [{when}] "{request}" {status} 512 "-" "curl/8.5.0"'


JSON_LINES = [
    json_line("2026-11-26T09:31:26.081Z", "GET", "/api/v1/users/{id}", "/api/v1/users/7", 401,
              "token_invalid"),
    json_line("2026-11-26T09:45:00.000Z", "GET", "/api/v1/users/{id}", "/api/v1/users/8", 200),
    json_line("2026-11-26T10:00:00.000Z", "POST", "/api/v1/auth/login", "/api/v1/auth/login", 401,
              "invalid_credentials"),
    # No route matched: the raw path is normalised instead.
    json_line("2026-11-26T23:59:59.999Z", "GET", "unmatched", "/api/v1/nope/123", 404, "not_found"),
    json_line("2026-11-26T10:00:00.000+00:00", "GET", "/api/v1/auth/validate",
              "/api/v1/auth/validate", 500, "internal_error"),
    json.dumps({"event": "server_started", "level": "info", "ts": "2026-11-26T09:00:00.000Z"}),
    "",
    "INFO:     Started server process [4242]",
    '{"event": "request", "method": "GET", "rou',
]
CLF_LINES = [
    clf_line("26/Nov/2026:07:29:48 +0000", "GET /api/users/42?x=1&y=2 HTTP/1.1", 401),
    clf_line("26/Nov/2026:09:29:48 +0200",
             "GET /files/3f2504e0-4f89-11d3-9a0c-0305e82c3301/raw HTTP/1.1", 404),
    clf_line("25/Nov/2026:23:10:00 -0100", "DELETE /objects/0123456789abcdef0123 HTTP/1.1", 204),
    clf_line("26/Nov/2026:08:00:00 +0000", "GET /blog/cafe/2026 HTTP/1.0", 503),
    # nginx's line for a connection that sent no valid request (a TLS hello on plain HTTP).
    '203.0.113.9 - - [26/Nov/2026:08:00:01 +0000] "-" 400 0 "-" "-"',
    clf_line("not a date", "GET / HTTP/1.1", 200),
    "garbage that is no log line at all",
]
EXPECTED: dict[str, Any] = {
    "total": 10,
    "errors": 8,
    "error_rate": 0.8,
    "by_status": {"200": 1, "204": 1, "400": 1, "401": 3, "404": 2, "500": 1, "503": 1},
    "by_code": {"internal_error": 1, "invalid_credentials": 1, "not_found": 1, "token_invalid": 1},
    "by_route": {
        "GET /api/v1/users/{id}": {"total": 2, "errors": 1, "by_status": {"200": 1, "401": 1}},
        "POST /api/v1/auth/login": {"total": 1, "errors": 1, "by_status": {"401": 1}},
        "GET /api/v1/nope/{id}": {"total": 1, "errors": 1, "by_status": {"404": 1}},
        "GET /api/v1/auth/validate": {"total": 1, "errors": 1, "by_status": {"500": 1}},
        "GET /api/users/{id}": {"total": 1, "errors": 1, "by_status": {"401": 1}},
        "GET /files/{id}/raw": {"total": 1, "errors": 1, "by_status": {"404": 1}},
        "GET /blog/cafe/{id}": {"total": 1, "errors": 1, "by_status": {"503": 1}},
        "-": {"total": 1, "errors": 1, "by_status": {"400": 1}},
        "DELETE /objects/{id}": {"total": 1, "errors": 0, "by_status": {"204": 1}},
    },
    "by_hour": {h: {"00": 1, "07": 2, "08": 2, "09": 2, "10": 2, "23": 1}.get(h, 0) for h in HOURS},
    "errors_by_hour": {h: {"07": 2, "08": 2, "09": 1, "10": 2, "23": 1}.get(h, 0) for h in HOURS},
    "skipped": 4,
}


@pytest.fixture
def logs(tmp_path: Path) -> tuple[Path, Path]:
    """Our JSON log as a plain file and the CLF log gzipped (as logrotate leaves it)."""
    ours = tmp_path / "gatehouse.log"
    ours.write_text("\n".join(JSON_LINES) + "\n")
    theirs = tmp_path / "access.log.1.gz"
    with gzip.open(theirs, "wt") as f:
        f.write("\n".join(CLF_LINES))  # no final newline: the last line still counts
    return ours, theirs


def test_both_formats_give_the_exact_report(logs: tuple[Path, Path]) -> None:
    """JSON and gzipped CLF lines together give exactly the expected counts, keys and skips."""
    report = analyze(logs, now=NOW).as_dict()
    assert report == EXPECTED
    assert list(report["by_hour"]) == HOURS
    # Worst routes first, so the top of the JSON is what needs attention.
    assert list(report["by_route"])[-1] == "DELETE /objects/{id}"


def test_gzip_is_read_like_the_plain_file(logs: tuple[Path, Path], tmp_path: Path) -> None:
    """A gzipped log gives the same report as the same log uncompressed."""
    plain = tmp_path / "access.log"
    plain.write_text("\n".join(CLF_LINES))
    assert analyze([logs[1]], now=NOW).as_dict() == analyze([plain], now=NOW).as_dict()


def test_since_keeps_only_requests_inside_the_window(logs: tuple[Path, Path]) -> None:
    """With a 3 h window at 12:00 UTC only the requests from 09:00 UTC on are counted."""
    report = analyze(logs, since=timedelta(hours=3), now=NOW).as_dict()
    assert report["total"] == 5
    assert report["by_status"] == {"200": 1, "401": 2, "404": 1, "500": 1}
    assert sum(report["by_hour"].values()) == 5
    assert report["skipped"] == 4  # unreadable lines are reported whatever the window


@pytest.mark.parametrize(("target", "key"), [
    ("/api/v1/users/42", "/api/v1/users/{id}"),
    ("/api/v1/users/42?expand=roles#top", "/api/v1/users/{id}"),
    ("/s/3F2504E0-4F89-11D3-9A0C-0305E82C3301/x", "/s/{id}/x"),
    ("/blobs/0123456789abcdef", "/blobs/{id}"),
    ("/blobs/0123456789abcde", "/blobs/0123456789abcde"),  # 15 hex digits: not long hex
    ("/tags/cafe/beef", "/tags/cafe/beef"),
    ("/v2/items/7/", "/v2/items/{id}/"),
    ("http://example.com/a/99?q=1", "/a/{id}"),
    ("/", "/"),
    ("?only=query", "/"),
])
def test_route_keys_drop_the_query_and_replace_ids(target: str, key: str) -> None:
    """Numeric, UUID and 16+ digit hex segments become {id}; the query and fragment are dropped."""
    assert normalise_path(target) == key


@pytest.mark.parametrize(("text", "window"), [
    ("45s", timedelta(seconds=45)), ("30m", timedelta(minutes=30)), ("12h", timedelta(hours=12)),
    ("7d", timedelta(days=7)), ("2w", timedelta(weeks=2)),
])
def test_since_windows_take_s_m_h_d_w(text: str, window: timedelta) -> None:
    """--since accepts a count with a unit of s, m, h, d or w."""
    assert parse_window(text) == window


@pytest.mark.parametrize("text", ["7", "d", "7y", "-1d", "0h", "1.5h"])
def test_since_rejects_other_windows(text: str) -> None:
    """Windows without a unit, with an unknown unit or not a positive whole number are refused."""
    with pytest.raises(ValueError, match="--since"):
        parse_window(text)


def test_corrupt_gzip_is_a_read_error_not_a_crash(tmp_path: Path) -> None:
    """A file that starts like gzip but is not becomes LogReadError naming the file."""
    bad = tmp_path / "broken.log.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00not really gzip at all")
    with pytest.raises(LogReadError, match=r"broken\.log\.gz"):
        analyze([bad])


def assert_one_line_failure(result: subprocess.CompletedProcess[str], code: int) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_cli_json_prints_the_report(logs: tuple[Path, Path], tmp_path: Path) -> None:
    """`logs analyze FILE FILE.gz --json` prints exactly the report on stdout."""
    result = run_cli("logs", "analyze", *map(str, logs), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == EXPECTED


def test_cli_since_counts_relative_to_now(tmp_path: Path) -> None:
    """--since 7d drops a request from ten days ago and keeps one from an hour ago."""
    now = datetime.now(UTC)
    log = tmp_path / "recent.log"
    log.write_text("\n".join([
        json_line((now - timedelta(days=10)).isoformat(), "GET", "/api/v1/a", "/api/v1/a", 500),
        json_line((now - timedelta(hours=1)).isoformat(), "GET", "/api/v1/b", "/api/v1/b", 404),
    ]))
    result = run_cli("logs", "analyze", str(log), "--since", "7d", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["total"], report["errors"]) == (1, 1)
    assert list(report["by_route"]) == ["GET /api/v1/b"]


def test_cli_html_report_has_svg_charts_and_escapes_log_text(
    logs: tuple[Path, Path], tmp_path: Path
) -> None:
    """--html writes a script-free page with SVG charts; a <script> in a logged path stays text."""
    hostile = tmp_path / "hostile.log"
    hostile.write_text(clf_line("26/Nov/2026:08:00:00 +0000",
                                "GET /<script>alert(1)</script>/x HTTP/1.1", 404))
    out = tmp_path / "report.html"
    result = run_cli("logs", "analyze", *map(str, logs), str(hostile), "--html", str(out),
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    page = out.read_text()
    assert page.count("<svg") == 3
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    # Without --json the terminal gets the readable summary.
    assert "11 requests" in result.stdout and "9 errors" in result.stdout
    assert "Responses by status" in result.stdout and f"wrote {out}" in result.stdout


def test_cli_missing_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """A file that does not exist gives one error line naming it, exit 1, no traceback."""
    result = run_cli("logs", "analyze", str(tmp_path / "nope.log"), "--json", cwd=tmp_path)
    assert_one_line_failure(result, 1)
    assert "nope.log" in result.stderr


def test_cli_bad_since_is_one_line_and_exit_2(logs: tuple[Path, Path], tmp_path: Path) -> None:
    """An unreadable --since is a usage error: one line, exit 2."""
    result = run_cli("logs", "analyze", str(logs[0]), "--since", "a week", cwd=tmp_path)
    assert_one_line_failure(result, 2)
    assert "--since" in result.stderr


def test_real_server_log_is_analysed(make_server: Callable[..., Server], tmp_path: Path) -> None:
    """The access log a real server writes gives the counts of the requests it was sent."""
    server = make_server()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for _ in range(3):
            assert client.get("/api/v1/users/profile").status_code == 401
        for n in (5, 6):
            assert client.get(f"/api/v1/no-such-thing/{n}").status_code == 404
        assert client.get("/api/v1/users/profile",
                          headers={"Authorization": "Bearer not-a-jwt"}).status_code == 401
    server.stop()  # flushes nothing new but makes the file final
    result = run_cli("logs", "analyze", str(server.log_path), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["by_route"]["GET /api/v1/users/profile"] == {
        "total": 4, "errors": 4, "by_status": {"401": 4}}
    assert report["by_route"]["GET /api/v1/no-such-thing/{id}"] == {
        "total": 2, "errors": 2, "by_status": {"404": 2}}
    assert report["errors"] == 6
    assert report["by_code"] == {"token_missing": 3, "not_found": 2, "token_invalid": 1}
    # Everything else is the start-up health probe: successful, and counted.
    assert set(report["by_status"]) == {"200", "401", "404"}
    assert sum(report["by_hour"].values()) == report["total"]
