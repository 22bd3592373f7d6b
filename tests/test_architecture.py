"""Dependency direction (STYLE.md): services never import the web framework; the SDK imports no server code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import gatehouse

PACKAGE = Path(gatehouse.__file__).parent


def imports_of(folder: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in (PACKAGE / folder).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        out[str(path.relative_to(PACKAGE))] = names
    return out


def test_services_do_not_import_fastapi_or_the_http_layer() -> None:
    """auth/, users/, audit/ and store/ hold rules and data, never FastAPI or gatehouse.api."""
    for folder in ("auth", "users", "audit", "store"):
        for module, names in imports_of(folder).items():
            bad = {n for n in names if n.split(".")[0] in {"fastapi", "starlette"}
                   or n.startswith("gatehouse.api") or n.startswith("gatehouse.cli")}
            assert not bad, f"{module} imports {bad}"


def test_errors_know_nothing_of_http() -> None:
    """The domain error tree has no HTTP imports; only api/problem.py maps errors to statuses."""
    source = (PACKAGE / "errors.py").read_text()
    assert "fastapi" not in source and "starlette" not in source and "status" not in source.split('"""', 2)[2]


def test_client_sdk_imports_no_server_code() -> None:
    """Importing gatehouse.client loads no other gatehouse module, FastAPI or SQLAlchemy."""
    code = ("import sys, gatehouse.client; "
            "bad = [m for m in sys.modules if (m.startswith('gatehouse.') and not m.startswith('gatehouse.client'))"
            " or m.split('.')[0] in ('fastapi', 'sqlalchemy', 'starlette')]; print(bad)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)  # noqa: S603
    assert result.stdout.strip() == "[]"
