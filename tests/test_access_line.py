"""The access log's line (ops/logging.access_line) is the JSON object structlog wrote for
`log.info("request", ...)`: same keys, same order, same level and timestamp format, and
nothing when the level is above info."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from gatehouse.ops import logging as gl

FIELDS = {"method": "GET", "route": "/api/v1/users/profile", "path": "/api/v1/users/profile",
          "status": 200, "code": None, "duration_ms": 0.51, "request_id": "r-1",
          "user_id": "u-1", "ip": "127.0.0.1"}


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "access.log"
    gl.configure_logging()  # back to JSON on stdout, as the suite's session fixture set it


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_line_is_the_object_structlog_writes(log_file: Path) -> None:
    gl.configure_logging("info", log_file)
    structlog.get_logger("gatehouse.access").info("request", **FIELDS)
    gl.access_line(dict(FIELDS))
    through_structlog, direct = _lines(log_file)
    assert list(direct) == list(through_structlog)  # same keys in the same order
    assert {k: v for k, v in direct.items() if k != "ts"} == \
        {k: v for k, v in through_structlog.items() if k != "ts"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(direct["ts"]))


def test_no_line_above_info(log_file: Path) -> None:
    gl.configure_logging("warning", log_file)
    gl.access_line(dict(FIELDS))
    assert not log_file.exists() or log_file.read_text() == ""


def test_any_string_is_written_as_json_on_one_line(log_file: Path) -> None:
    """Non-ASCII, control characters and a lone surrogate (which orjson refuses) all log."""
    gl.configure_logging("info", log_file)
    for path in ("/café/☃", "/a\nb\"c\x00", "/\udcff"):
        gl.access_line({**FIELDS, "path": path})
    assert [line["path"] for line in _lines(log_file)] == ["/café/☃", "/a\nb\"c\x00", "/\udcff"]
    assert len(log_file.read_text().splitlines()) == 3
