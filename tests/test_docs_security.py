"""docs/security.md's route table matches the application: every route, and the permission each needs."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

from fastapi.routing import APIRoute

from gatehouse.api.deps import require_user_session
from gatehouse.app import create_app
from gatehouse.auth.rbac import ROLE_PERMISSIONS

DOC = Path(__file__).resolve().parents[1] / "docs" / "security.md"
# Routes that check their credential in the handler itself, not through a dependency.
CHECKED_IN_HANDLER = {("POST", "/api/v1/auth/refresh"), ("GET", "/metrics")}
NOT_DOCUMENTED = re.compile(r"^/(openapi\.json|docs)")


def _table(heading: str) -> list[list[str]]:
    """The rows of the first Markdown table after `heading`."""
    lines = DOC.read_text().split(f"## {heading}\n", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def _documented() -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for method, paths, needs, _ in _table("Routes"):
        for path in re.findall(r"`([^`]+)`", paths):
            out[(method, path)] = needs
    return out


def _needs(route: APIRoute) -> str | None:
    """'user', the permission a route's dependency demands, or None when it has none."""
    for dep in route.dependant.dependencies:
        call: Any = dep.call
        if call is require_user_session:
            return "user"
        permission = inspect.getclosurevars(call).nonlocals.get("permission")
        if isinstance(permission, str):
            return permission
    return None


def _routes(make_settings: Any) -> dict[tuple[str, str], APIRoute]:
    app = create_app(make_settings(GATEHOUSE_SIGNUP="open"))
    out = {}
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        if NOT_DOCUMENTED.match(route.path) or route.path.startswith("/api/") and not (
            route.path.startswith("/api/v1/")
        ):
            continue
        for method in route.methods - {"HEAD"}:
            out[(method, route.path)] = route
    return out


def test_every_route_is_documented_and_nothing_else(make_settings: Any) -> None:
    """The route table lists exactly the routes the application serves."""
    assert sorted(_documented()) == sorted(_routes(make_settings))


def test_documented_permissions_are_the_ones_enforced(make_settings: Any) -> None:
    """Each row's 'needs' column names the permission (or user session) the route enforces."""
    routes = _routes(make_settings)
    wrong = {}
    for key, needs in _documented().items():
        enforced = _needs(routes[key])
        permission = re.match(r"`([a-z_]+:[a-z]+)`", needs)
        if needs.startswith("user"):
            ok = enforced == "user"
        elif permission and key not in CHECKED_IN_HANDLER:
            ok = enforced == permission.group(1)
        elif needs.startswith("none"):
            ok = enforced is None
        else:
            ok = enforced is None and key in CHECKED_IN_HANDLER
        if not ok:
            wrong[key] = (needs, enforced)
    assert wrong == {}


def test_roles_table_matches_the_code() -> None:
    """The roles table in docs/security.md states each role's permissions as the code grants them."""
    documented = {
        role.strip("`"): set(re.findall(r"`([a-z_]+:[a-z]+)`", perms))
        for role, perms in _table("Roles and permissions")
    }
    assert documented == {role: set(perms) for role, perms in ROLE_PERMISSIONS.items()}
