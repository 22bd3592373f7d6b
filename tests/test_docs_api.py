"""docs/api.md works as written: its shell examples run against `serve --dev`, its error table
is complete."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._docs_blocks import (
    DOCS,
    dev_server,
    docs_env,
    fenced_blocks,
    run_blocks,
    section,
    server_error_classes,
    table_rows,
)

DOC = DOCS / "api.md"


def test_error_table_lists_every_code_the_server_answers() -> None:
    """Every `code` a domain error can carry has a row in docs/api.md's error table."""
    documented_codes = set(table_rows(section(DOC, "Errors")))
    assert set(server_error_classes()) - documented_codes == set()


@pytest.mark.slow
def test_shell_examples_run_as_written(tmp_path: Path) -> None:
    """The README's `serve --dev`, then every `sh` block of docs/api.md in order, from the same
    folder."""
    env = docs_env()
    with dev_server(tmp_path, env) as base:
        done = run_blocks(fenced_blocks(DOC, "sh"), base, tmp_path, env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert '"email":"bob@example.com"' in done.stdout
    assert done.stdout.rstrip().splitlines()[-1].startswith("{\"status\":\"ok\"")
