"""docs/errors.md cannot drift: its tables match the server's error tree, the SDK's exception
mapping and the browser client's codes, in both directions."""

from __future__ import annotations

import re
from pathlib import Path

from gatehouse.api.problem import STATUS
from gatehouse.client import _problem
from tests._docs_blocks import DOCS, section, server_error_classes, table_rows

DOC = DOCS / "errors.md"
SRC = Path(__file__).resolve().parents[1] / "src" / "gatehouse"
BROWSER = SRC / "web" / "static" / "client"


def _server_status(code: str) -> int:
    """The status the server answers `code` with (problem.status_of, for a class)."""
    statuses = {next((STATUS[c] for c in cls.__mro__ if c in STATUS), 500)
                for cls in server_error_classes()[code]}
    assert len(statuses) == 1, (code, statuses)
    return statuses.pop()


def _first_name(cell: str) -> str:
    """The first `backticked` name of a cell."""
    match = re.search(r"`([A-Za-z_]+)", cell)
    assert match, cell
    return match.group(1)


def _js_array(path: Path, name: str) -> set[str]:
    """The string literals of `export const <name> = Object.freeze([...])` in a client module."""
    body = re.search(rf"{name} = Object\.freeze\(\[(.*?)\]\)", path.read_text(), flags=re.S)
    assert body, name
    return set(re.findall(r'"([a-z_]+)"', body.group(1)))


SERVER = table_rows(section(DOC, "Codes the server sends"))
CLIENTS = table_rows(section(DOC, "Codes the clients make up"))


def test_every_server_code_is_documented_and_every_documented_code_exists() -> None:
    assert set(SERVER) == set(server_error_classes())


def test_status_and_sdk_exception_match_the_code() -> None:
    """Status from the error tree; the Python SDK class from its own mapping (_problem.py)."""
    for code, (status, when, do, sdk, browser) in SERVER.items():
        assert int(status) == _server_status(code), code
        assert _first_name(sdk) == _problem.error_class(int(status), code).__name__, code
        assert when and do and browser, code


def test_session_ending_codes_agree_with_both_clients() -> None:
    """Rows that say the session ends are exactly the SDK's and the browser client's list."""
    ends_in_doc = {code for code, cells in SERVER.items() if "onSessionExpired" in cells[4]}
    assert ends_in_doc == set(_problem.SESSION_OVER_CODES)
    assert ends_in_doc == _js_array(BROWSER / "errors.js", "ENDING_CODES")
    cleared_in_doc = {code for code, cells in SERVER.items() if "token store cleared" in cells[3]}
    assert cleared_in_doc == set(_problem.SESSION_OVER_CODES)


def test_refresh_codes_agree_with_both_clients() -> None:
    refreshed_in_doc = {code for code, cells in SERVER.items()
                        if cells[4].startswith("refreshed")}
    assert refreshed_in_doc == set(_problem.REFRESHABLE_CODES)
    refresh_codes = re.search(r"REFRESH_CODES = \[(.*?)\]", (BROWSER / "request.js").read_text())
    assert refresh_codes
    assert refreshed_in_doc == set(re.findall(r'"([a-z_]+)"', refresh_codes.group(1)))


def _sdk_made_codes() -> set[str]:
    """`code="..."` literals of the SDK that are no server code (the resource-server helper
    answers with server codes too)."""
    codes = {code for path in (SRC / "client").glob("*.py")
             for code in re.findall(r'\bcode="([a-z_]+)"', path.read_text())}
    if 'f"http_{response.status_code}"' in (SRC / "client" / "_problem.py").read_text():
        codes.add("http_<status>")
    return codes - set(server_error_classes())


def _browser_made_codes() -> set[str]:
    """Literals assigned to a `code` in errors.js (not compared with one)."""
    codes: set[str] = set()
    for line in (BROWSER / "errors.js").read_text().splitlines():
        if re.search(r"\bcode\s*[:=](?!=)", line):
            codes |= set(re.findall(r'(?<!=== )"([a-z_]+)"', line))
    return codes


def test_client_made_codes_are_the_ones_the_clients_make() -> None:
    """Every code the SDK or the browser client invents has a row, and every row is invented."""
    by_client: dict[str, set[str]] = {"Python SDK": set(), "browser": set()}
    for code, cells in CLIENTS.items():
        by_client[cells[0].split(":", 1)[0]].add(code)
    assert by_client["Python SDK"] == _sdk_made_codes()
    assert by_client["browser"] == _browser_made_codes()
