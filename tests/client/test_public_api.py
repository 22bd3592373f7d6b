"""The SDK's public surface is locked, and the package stands alone."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import gatehouse.client
from gatehouse.client import _exceptions

SRC = Path(__file__).resolve().parents[2] / "src"


def test_exported_names_are_locked() -> None:
    """gatehouse.client exports exactly these names, sorted; changing them is a breaking change."""
    assert gatehouse.client.__all__ == [
        "ApiError",
        "AsyncClient",
        "Client",
        "EmailUnverified",
        "FileTokenStore",
        "Forbidden",
        "GatehouseAuth",
        "InvalidCredentials",
        "KeyringTokenStore",
        "LinkInvalid",
        "MemoryTokenStore",
        "MfaExpired",
        "MfaInvalid",
        "MfaRequired",
        "NotAuthenticated",
        "RateLimited",
        "RetryPolicy",
        "ServiceUnavailable",
        "SessionExpired",
        "TokenSet",
        "TokenStore",
        "TransportError",
    ]
    assert all(
        getattr(gatehouse.client, name).__module__ == "gatehouse.client"
        for name in gatehouse.client.__all__
    )


def test_client_package_imports_nothing_else_from_gatehouse() -> None:
    """Importing gatehouse.client loads no other gatehouse module (no server code in the SDK)."""
    code = (
        "import json, sys\n"
        "import gatehouse.client\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('gatehouse'))))\n"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.splitlines()
    ours = json.loads(out[0])
    top_level = set(json.loads(out[1]))
    assert [m for m in ours if m != "gatehouse" and not m.startswith("gatehouse.client")] == []
    forbidden = {"fastapi", "starlette", "sqlalchemy", "pydantic", "jwt", "redis", "keyring"}
    assert top_level & forbidden == set()


def test_sync_and_async_clients_have_the_same_methods() -> None:
    """Client and AsyncClient offer the same public methods with the same parameters."""

    def surface(cls: type) -> dict[str, list[str]]:
        return {
            name: list(inspect.signature(member).parameters)
            for name, member in inspect.getmembers(cls, callable)
            if not name.startswith("_") and name != "aclose"
        }

    assert surface(gatehouse.client.Client) == surface(gatehouse.client.AsyncClient)
    for name in (
        "login",
        "logout",
        "get",
        "post",
        "put",
        "patch",
        "delete",
        "profile",
        "request",
        "login_mfa",
        "forgot_password",
        "reset_password",
        "request_email_verification",
        "verify_email",
        "mfa_setup",
        "mfa_confirm",
        "mfa_disable",
        "mfa_recovery_codes",
    ):
        assert inspect.iscoroutinefunction(getattr(gatehouse.client.AsyncClient, name))


def test_exception_tree_is_drawn_in_the_module_docstring() -> None:
    """`help(gatehouse.client)` draws the tree of every exported exception class."""
    doc = gatehouse.client.__doc__ or ""
    assert "├──" in doc and "└──" in doc
    for name in _exceptions.__all__:
        assert re.search(rf"[├└]── {name}\b|^    {name}\b", doc, re.M), name
