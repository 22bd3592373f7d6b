"""`gatehouse doctor` checks SENTRY_DSN as sentry-sdk will read it, and never prints the key."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from gatehouse.cli.doctor import check_sentry
from tests.conftest import run_cli

KEY = "5f1e0c2a9b7d4e3f8a6c1b0d2e4f6a8b"
SHAPE = "not an https://<public key>@<host>/<project id> URL"


def test_doctor_prints_one_sentry_line_and_fails_on_a_bad_dsn(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/d.db", "SENTRY_ENVIRONMENT": "staging",
           "SENTRY_DSN": f"https://{KEY}@o17.ingest.sentry.example/4242"}
    run_cli("db", "upgrade", env=env, cwd=tmp_path)
    good = run_cli("doctor", env=env, cwd=tmp_path)
    assert good.returncode == 0, good.stdout
    assert re.search(r"^ok +sentry +project 4242 on o17\.ingest\.sentry\.example, "
                     r"environment staging$", good.stdout, re.M), good.stdout

    bad = run_cli("doctor", "--json", cwd=tmp_path,
                  env={**env, "SENTRY_DSN": f"https://{KEY}@sentry.example/project"})
    assert bad.returncode == 1
    (check,) = [c for c in json.loads(bad.stdout)["checks"] if c["name"] == "sentry"]
    assert (check["ok"], check["detail"]) == (
        False, "SENTRY_DSN is invalid: the path does not end in a numeric project id")
    assert KEY not in good.stdout + good.stderr + bad.stdout + bad.stderr


@pytest.mark.parametrize(("dsn", "why"), [
    ("https://sentry.example/4242", "no public key before the @"),
    (f"https://{KEY}@sentry.example/", "the path does not end in a numeric project id"),
    (f"http://{KEY}@sentry.example/4242", "plain http to another machine"),
    (f"{KEY}@sentry.example/4242", SHAPE),
    (f"ftp://{KEY}@sentry.example/4242", SHAPE),
    (f"https://{KEY}@sentry.example:port/4242", "not a URL"),
    (f"https://{KEY}@[::1/4242", "not a URL"),
])
def test_a_malformed_dsn_fails_saying_why_without_the_key(dsn: str, why: str) -> None:
    check = check_sentry(dsn, "production")
    assert not check.ok
    assert check.detail.startswith("SENTRY_DSN is invalid: ") and why in check.detail
    assert "Client Keys" in check.hint
    assert KEY not in check.detail + check.hint


def test_http_to_this_machine_passes() -> None:
    """A local relay or test stand-in, as for the Slack webhook."""
    check = check_sentry(f"http://{KEY}@127.0.0.1:9000/7", "dev")
    assert (check.ok, check.detail) == (True, "project 7 on 127.0.0.1, environment dev")


def test_without_sentry_sdk_a_dsn_fails_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the `sentry` extra nothing would be reported: doctor says so, not `ok`."""
    monkeypatch.setitem(sys.modules, "sentry_sdk.utils", None)  # import now raises ImportError
    missing = check_sentry(f"https://{KEY}@sentry.example/4242", "production")
    assert (missing.ok, missing.detail, missing.hint) == (
        False, "SENTRY_DSN is set but sentry-sdk is not installed",
        "pip install 'gatehouse-auth[sentry]'")
    assert check_sentry("https://sentry.example/4242", "production").detail == (
        "SENTRY_DSN is invalid: no public key before the @")  # the strict parse alone
