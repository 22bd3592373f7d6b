"""Error reports from access logs: our JSON lines and the Combined Log Format (API.md §5, §7).

`iter_log_lines` streams one file (gzip is recognised by its magic bytes, so a
rotated `access.log.2.gz` and a mis-named one both work), `parse_line` turns a
line into an `Entry`, `LogReport` counts entries into the shape that
`gatehouse logs analyze --json` prints, and `analyze` ties them together.
Nothing here prints; the CLI renders the report (Rich, JSON or HTML).

A line is one of three things: a request (counted), another kind of event
from our JSON log (ignored: `"event"` is not `"request"`), or something that
cannot be read as either format (counted in `skipped`, never an error).
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HOURS = tuple(f"{hour:02d}" for hour in range(24))
ID = "{id}"

_WINDOW = re.compile(r"^\s*(\d{1,6})\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# A segment that names one thing rather than a kind of thing: a number, a UUID, or
# a long hex string (hashes, object ids). Short hex like `cafe` stays: it is a word.
_ID_SEGMENT = re.compile(
    r"^(?:\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,})$"
)
# host ident user [time] "request" status bytes, then "referer" "user-agent" in the
# Combined format (Common Log Format lines stop after bytes). Quoted fields can hold
# backslash escapes: Apache writes \" and nginx \x22 for a quote in the request.
_CLF = re.compile(
    r'^\S+ \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<request>(?:[^"\\]|\\.)*)" '
    r"(?P<status>\d{3}) (?:\d+|-)(?:\s|$)"
)
_CLF_TIME = re.compile(
    r"^(\d{2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$"
)
# Month names are English in every nginx/Apache log, whatever the machine's locale.
_MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
_METHOD = re.compile(r"^[A-Z]{3,10}$")
_GZIP_MAGIC = b"\x1f\x8b"
_PROGRESS_EVERY = 4096  # lines between progress callbacks: cheap, and still smooth


class UnparsableLine(ValueError):
    """A line that is neither one of our JSON log objects nor a Combined Log Format line."""


class LogReadError(Exception):
    """A file that cannot be read at all (missing, unreadable, corrupt gzip); one line of text."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One request: when (UTC), `METHOD /route/{id}`, the status, and our error code if any."""

    when: datetime
    route: str
    status: int
    code: str | None = None


def parse_window(text: str) -> timedelta:
    """`30m`, `12h`, `7d`, `2w` (also `s`) as a timedelta; ValueError with a user-facing message."""
    match = _WINDOW.match(text)
    if match is None or int(match[1]) == 0:
        raise ValueError(
            f"--since takes a positive number and a unit s/m/h/d/w, like 7d (got {text!r})"
        )
    return timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])


def normalise_path(target: str) -> str:
    """The route key's path: query dropped, numeric / UUID / long-hex segments become `{id}`."""
    if target.startswith(("http://", "https://")):
        target = urlsplit(target).path  # absolute-form request target (a proxy request)
    path = target.split("?", 1)[0].split("#", 1)[0]
    segments = [ID if _ID_SEGMENT.match(segment) else segment for segment in path.split("/")]
    return "/".join(segments) or "/"


def parse_line(line: str) -> Entry | None:
    """The request on this line; None for a blank line or another event; else UnparsableLine."""
    text = line.strip()
    if not text:
        return None
    if text.startswith("{"):
        return _parse_json(text)
    return _parse_clf(text)


def _parse_json(text: str) -> Entry | None:
    try:
        obj = json.loads(text)
    except ValueError:
        raise UnparsableLine("not JSON") from None
    if not isinstance(obj, dict):
        raise UnparsableLine("not a JSON object")
    if obj.get("event") != "request":
        return None
    method, ts = obj.get("method"), obj.get("ts")
    if not isinstance(method, str) or not method or not isinstance(ts, str):
        raise UnparsableLine("request line without method or ts")
    route = obj.get("route")
    if not isinstance(route, str) or not route or route == "unmatched":
        path = obj.get("path")
        if not isinstance(path, str) or not path:
            raise UnparsableLine("request line without route or path")
        route = normalise_path(path)
    code = obj.get("code")
    return Entry(_rfc3339(ts), f"{method.upper()} {route}", _status(obj.get("status")),
                 code if isinstance(code, str) and code else None)


def _parse_clf(text: str) -> Entry:
    match = _CLF.match(text)
    if match is None:
        raise UnparsableLine("not a Combined Log Format line")
    parts = match["request"].split()
    if len(parts) in (2, 3) and _METHOD.match(parts[0]):
        route = f"{parts[0]} {normalise_path(parts[1])}"
    else:
        # No usable request line (nginx logs "-" or raw bytes for a TLS hello on a plain
        # port, and answers 400): still a request the server answered, so it counts.
        route = "-"
    return Entry(_clf_time(match["time"]), route, _status(match["status"]))


def _status(value: Any) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
        raise UnparsableLine("status is not an HTTP status")
    return value


def _rfc3339(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UnparsableLine("ts is not RFC 3339") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _clf_time(text: str) -> datetime:
    match = _CLF_TIME.match(text)
    month = _MONTHS.get(match[2].lower()) if match else None
    if match is None or month is None:
        raise UnparsableLine("time is not [dd/Mon/yyyy:hh:mm:ss +zzzz]")
    offset = timedelta(hours=int(match[8]), minutes=int(match[9])) * (-1 if match[7] == "-" else 1)
    try:
        when = datetime(int(match[3]), month, int(match[1]), int(match[4]), int(match[5]),
                        int(match[6]), tzinfo=timezone(offset))
    except ValueError:
        raise UnparsableLine("time out of range") from None
    return when.astimezone(UTC)


def iter_log_lines(path: Path, progress: Callable[[int], None] | None = None) -> Iterator[str]:
    """The file's lines, one at a time; `progress(n)` hears of every n bytes read from disk."""
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise LogReadError(_unreadable(path, exc)) from None
    with raw:
        stream: Iterable[bytes] = raw
        if raw.peek(2)[:2] == _GZIP_MAGIC:
            stream = gzip.GzipFile(fileobj=raw)
        reported = 0
        try:
            for number, line in enumerate(stream, start=1):
                if progress is not None and number % _PROGRESS_EVERY == 0:
                    position = raw.tell()
                    progress(position - reported)
                    reported = position
                yield line.decode("utf-8", "replace")
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise LogReadError(f"{path}: corrupt or truncated gzip file ({exc})") from None
        except OSError as exc:
            raise LogReadError(_unreadable(path, exc)) from None
        if progress is not None:
            progress(raw.tell() - reported)


def _unreadable(path: Path, exc: OSError) -> str:
    return f"{path}: cannot read ({exc.strerror or type(exc).__name__})"


@dataclass
class _RouteStats:
    total: int = 0
    errors: int = 0
    by_status: Counter[int] = field(default_factory=Counter)


@dataclass
class LogReport:
    """Counters over requests; `as_dict()` is the `--json` report of API.md §5.

    Two fields beyond the contract's: `skipped` (lines in neither format) and
    `errors_by_hour` (statuses >= 400 per UTC hour, for the HTML chart).
    """

    total: int = 0
    errors: int = 0
    skipped: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_code: Counter[str] = field(default_factory=Counter)
    routes: dict[str, _RouteStats] = field(default_factory=dict)
    by_hour: list[int] = field(default_factory=lambda: [0] * 24)
    errors_by_hour: list[int] = field(default_factory=lambda: [0] * 24)

    def add(self, entry: Entry) -> None:
        failed = entry.status >= 400
        self.total += 1
        self.errors += failed
        self.by_status[entry.status] += 1
        self.by_hour[entry.when.hour] += 1
        self.errors_by_hour[entry.when.hour] += failed
        if failed and entry.code is not None:
            self.by_code[entry.code] += 1
        stats = self.routes.get(entry.route)
        if stats is None:
            stats = self.routes[entry.route] = _RouteStats()
        stats.total += 1
        stats.errors += failed
        stats.by_status[entry.status] += 1

    def as_dict(self) -> dict[str, Any]:
        # Routes worst first (most errors, then most traffic), so `head` of the JSON is useful.
        routes = sorted(self.routes.items(), key=lambda kv: (-kv[1].errors, -kv[1].total, kv[0]))
        return {
            "total": self.total,
            "errors": self.errors,
            "error_rate": self.errors / self.total if self.total else 0,
            "by_status": _by_status(self.by_status),
            "by_code": dict(sorted(self.by_code.items(), key=lambda kv: (-kv[1], kv[0]))),
            "by_route": {
                key: {"total": s.total, "errors": s.errors, "by_status": _by_status(s.by_status)}
                for key, s in routes
            },
            "by_hour": dict(zip(HOURS, self.by_hour, strict=True)),
            # Beyond API.md's fields (extra fields are allowed): what the charts need.
            "errors_by_hour": dict(zip(HOURS, self.errors_by_hour, strict=True)),
            "skipped": self.skipped,
        }


def _by_status(counts: Counter[int]) -> dict[str, int]:
    return {str(status): counts[status] for status in sorted(counts)}


def analyze(
    paths: Iterable[Path], *, since: timedelta | None = None, now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> LogReport:
    """Count every request in `paths` (only those at or after now - since, when given)."""
    cutoff = (now or datetime.now(UTC)) - since if since is not None else None
    report = LogReport()
    for path in paths:
        for line in iter_log_lines(path, progress):
            try:
                entry = parse_line(line)
            except UnparsableLine:
                report.skipped += 1
                continue
            if entry is not None and (cutoff is None or entry.when >= cutoff):
                report.add(entry)
    return report
