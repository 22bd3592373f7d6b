"""The `gatehouse` command: db, keys, doctor, serve; failures are one line, never a traceback."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from gatehouse.notify.vapid import vapid_pair_matches
from tests.conftest import BASE_ENV, PostgresDatabases, free_port, run_cli


def assert_clean_failure(result: subprocess.CompletedProcess[str], code: int | None = None) -> None:
    assert result.returncode != 0
    if code is not None:
        assert result.returncode == code
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("verb", [["serve"], ["db", "status"], ["doctor"]])
def test_malformed_config_stops_with_one_line_per_problem_and_exit_2(verb: list[str], tmp_path: Path) -> None:
    """serve, db and doctor refuse a malformed configuration with exit 2 and one line naming each variable."""
    result = run_cli(*verb, env={"ACCESS_TOKEN_TTL": "soon", "GATEHOUSE_SIGNUP": "maybe"}, cwd=tmp_path)
    assert_clean_failure(result, 2)
    lines = (result.stderr + result.stdout).splitlines()
    ttl = [line for line in lines if "ACCESS_TOKEN_TTL" in line]
    signup = [line for line in lines if "GATEHOUSE_SIGNUP" in line]
    assert len(ttl) == 1 and "integer" in ttl[0], lines  # the variable and its rule on one line
    assert len(signup) == 1 and "'open'" in signup[0], lines


def test_serve_without_secrets_names_them(tmp_path: Path) -> None:
    """serve without JWT_SECRET/ENCRYPTION_KEY exits 2 naming both variables."""
    env = {k: v for k, v in os.environ.items() if k not in ("JWT_SECRET", "ENCRYPTION_KEY")}
    result = subprocess.run([sys.executable, "-m", "gatehouse", "serve"], env=env, cwd=tmp_path,  # noqa: S603
                            capture_output=True, text=True, timeout=60, check=False)
    assert_clean_failure(result, 2)
    assert "JWT_SECRET" in result.stderr and "ENCRYPTION_KEY" in result.stderr


def test_serve_refuses_several_workers_without_redis(tmp_path: Path) -> None:
    """More than one worker without REDIS_URL is refused with a clear message."""
    result = run_cli("serve", "--workers", "2", env={"DATABASE_URL": f"sqlite:///{tmp_path}/x.db"},
                     cwd=tmp_path)
    assert_clean_failure(result, 2)
    assert "REDIS_URL" in result.stderr


def test_unknown_verb_and_bad_option_fail_without_traceback(tmp_path: Path) -> None:
    """Typos in verbs or options exit non-zero with usage help, not a traceback."""
    assert_clean_failure(run_cli("frobnicate", cwd=tmp_path))
    assert_clean_failure(run_cli("serve", "--port", "notaport", cwd=tmp_path))


def test_every_verb_has_help(tmp_path: Path) -> None:
    """Each verb of API.md §5 answers --help."""
    for verb in (["serve"], ["db", "status"], ["db", "upgrade"], ["db", "downgrade"], ["db", "backup"],
                 ["users", "create"], ["users", "set-password"], ["users", "import"],
                 ["sessions", "revoke-all"], ["cache", "clear"],
                 ["keys", "generate"], ["keys", "rotate"], ["doctor"]):
        result = run_cli(*verb, "--help", cwd=tmp_path)
        assert result.returncode == 0, (verb, result.stderr)
        assert "Usage" in result.stdout


def test_keys_generate_prints_usable_secrets(tmp_path: Path) -> None:
    """keys generate prints JWT_SECRET and ENCRYPTION_KEY lines that the settings accept, plus a VAPID pair."""
    result = run_cli("keys", "generate", "--vapid", cwd=tmp_path)
    assert result.returncode == 0
    values = dict(line.split("=", 1) for line in result.stdout.strip().splitlines())
    assert set(values) == {"JWT_SECRET", "ENCRYPTION_KEY", "VAPID_PUBLIC_KEY", "VAPID_PRIVATE_KEY"}
    assert len(values["JWT_SECRET"]) >= 32 and len(values["ENCRYPTION_KEY"]) == 32
    assert vapid_pair_matches(values["VAPID_PUBLIC_KEY"], values["VAPID_PRIVATE_KEY"])
    assert "=" not in values["VAPID_PUBLIC_KEY"]


def db_env(url: str) -> dict[str, str]:
    return {"DATABASE_URL": url}


def test_db_verbs_on_sqlite(tmp_path: Path) -> None:
    """db status/upgrade/downgrade/backup work on SQLite and the backup is a usable database."""
    env = db_env(f"sqlite:///{tmp_path}/g.db")
    status = run_cli("db", "status", env=env, cwd=tmp_path)
    assert status.returncode == 0 and "pending" in status.stdout  # reporting is not failing
    assert run_cli("db", "status", "--check", env=env, cwd=tmp_path).returncode == 1
    assert run_cli("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    assert run_cli("db", "status", "--check", env=env, cwd=tmp_path).returncode == 0
    backup = tmp_path / "backup.db"
    assert run_cli("db", "backup", str(backup), env=env, cwd=tmp_path).returncode == 0
    tables = {r[0] for r in sqlite3.connect(backup).execute("select name from sqlite_master where type='table'")}
    assert {"users", "sessions", "refresh_tokens", "alembic_version"} <= tables
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    again = run_cli("db", "backup", str(backup), env=env, cwd=tmp_path)
    assert_clean_failure(again)
    assert "already exists" in again.stderr
    assert run_cli("db", "downgrade", "base", env=env, cwd=tmp_path).returncode == 0
    assert run_cli("db", "status", "--check", env=env, cwd=tmp_path).returncode == 1


def test_db_verbs_on_postgresql(tmp_path: Path, postgres: PostgresDatabases) -> None:
    """db status/downgrade/upgrade/backup work on PostgreSQL; the backup is a pg_dump archive."""
    env = db_env(postgres.fresh())
    assert run_cli("db", "status", env=env, cwd=tmp_path).returncode == 0
    assert run_cli("db", "downgrade", "base", env=env, cwd=tmp_path).returncode == 0
    assert run_cli("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    backup = tmp_path / "pg.dump"
    result = run_cli("db", "backup", str(backup), env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert backup.read_bytes()[:5] == b"PGDMP"


def test_db_backup_without_pg_dump_says_so(tmp_path: Path, postgres: PostgresDatabases) -> None:
    """Without pg_dump on PATH, backup of PostgreSQL fails with one line saying how to install it."""
    env = {**db_env(postgres.fresh()), "PATH": str(Path(sys.executable).parent)}
    result = run_cli("db", "backup", str(tmp_path / "x.dump"), env=env, cwd=tmp_path)
    assert_clean_failure(result)
    assert "pg_dump is not installed" in result.stderr


def test_db_status_with_unreachable_database_is_one_line(tmp_path: Path) -> None:
    """An unreachable database makes db commands fail with one line, not a traceback."""
    result = run_cli("db", "status", env=db_env("postgresql://postgres@127.0.0.1:1/none"), cwd=tmp_path)
    assert_clean_failure(result)
    assert "cannot reach the database" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_doctor_json_reports_each_check(tmp_path: Path) -> None:
    """doctor --json lists named checks; a fresh database fails `migrations` until upgraded."""
    env = db_env(f"sqlite:///{tmp_path}/d.db")
    before = run_cli("doctor", "--json", env=env, cwd=tmp_path)
    report = json.loads(before.stdout)
    assert before.returncode == 1 and report["ok"] is False
    checks = {c["name"]: c for c in report["checks"]}
    assert {"settings", "jwt_secret", "encryption_key", "database", "migrations", "cache"} <= set(checks)
    assert checks["migrations"]["ok"] is False and "db upgrade" in checks["migrations"]["hint"]
    assert all(set(c) == {"name", "ok", "detail", "hint"} for c in report["checks"])
    run_cli("db", "upgrade", env=env, cwd=tmp_path)
    after = run_cli("doctor", "--json", env=env, cwd=tmp_path)
    assert after.returncode == 0 and json.loads(after.stdout)["ok"] is True
    assert BASE_ENV["JWT_SECRET"] not in after.stdout


def test_doctor_fails_missing_and_weak_secrets_with_exit_2(tmp_path: Path) -> None:
    """doctor checks secrets strength: a missing secret, or one a person typed (few distinct
    characters, a repeated pattern), is a failed check and exit 2, like any configuration problem;
    the secret itself is never printed.
    """
    env = db_env(f"sqlite:///{tmp_path}/d.db")
    run_cli("db", "upgrade", env=env, cwd=tmp_path)
    missing = run_cli("doctor", cwd=tmp_path, env={**env, "JWT_SECRET": "", "ENCRYPTION_KEY": ""})
    assert_clean_failure(missing, 2)
    assert re.search(r"^FAIL jwt_secret +JWT_SECRET is not set", missing.stdout, re.M), missing.stdout
    assert re.search(r"^FAIL encryption_key +ENCRYPTION_KEY is not set", missing.stdout, re.M)

    weak_secret, weak_key = "changeme" * 4, "k" * 32
    weak = run_cli("doctor", "--json", cwd=tmp_path,
                   env={**env, "JWT_SECRET": weak_secret, "ENCRYPTION_KEY": weak_key})
    assert weak.returncode == 2
    checks = {c["name"]: c for c in json.loads(weak.stdout)["checks"]}
    assert checks["jwt_secret"]["ok"] is False and "weak" in checks["jwt_secret"]["detail"]
    assert checks["encryption_key"]["ok"] is False
    assert "keys generate" in checks["jwt_secret"]["hint"]
    assert weak_secret not in weak.stdout and weak_key not in weak.stdout

    generated = dict(line.split("=", 1) for line in
                     run_cli("keys", "generate", cwd=tmp_path).stdout.split())
    fine = run_cli("doctor", cwd=tmp_path, env={**env, **generated})
    assert fine.returncode == 0, fine.stdout
    assert re.search(r"^ok +jwt_secret", fine.stdout, re.M)


def test_serve_dev_creates_secrets_migrates_and_prints_admin_once(tmp_path: Path) -> None:
    """`serve --dev` writes 0600 secrets, migrates, prints a first admin once (who can log in),
    reuses secrets, and serves /healthz.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("JWT_SECRET", "ENCRYPTION_KEY")}
    port = free_port()
    outputs = []
    for _ in range(2):
        proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "gatehouse", "serve", "--dev", "--port", str(port)],
            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
            assert ready.status_code == 200
            if outputs:  # second start: the admin printed by the first one can log in
                printed = re.search(r"email (\S+)\s+password (\S+)", outputs[0])
                assert printed is not None, outputs[0]
                r = httpx.post(f"http://127.0.0.1:{port}/api/v1/auth/login", timeout=10,
                               json={"email": printed[1], "password": printed[2]})
                assert r.status_code == 200, r.text
                assert "admin" in r.json()["user"]["roles"]
        finally:
            proc.terminate()
            outputs.append(proc.communicate(timeout=10)[0])
        secrets_file = tmp_path / ".gatehouse" / "secrets.env"
        assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
        if not outputs[1:]:
            first_secrets = secrets_file.read_text()
    assert secrets_file.read_text() == first_secrets
    match = re.search(r"email (\S+)\s+password (\S+)", outputs[0])
    assert match is not None and "listening on http://127.0.0.1" in outputs[0]
    assert "password" not in outputs[1]


def test_serve_dev_public_url_is_where_it_listens(tmp_path: Path) -> None:
    """Under --dev without PUBLIC_API_URL, the issuer and cookie origin are the address served."""
    env = {k: v for k, v in os.environ.items() if k not in ("JWT_SECRET", "ENCRYPTION_KEY")}
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "gatehouse", "serve", "--dev", "--port", str(port)],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
    finally:
        proc.terminate()
        output = proc.communicate(timeout=10)[0]
    assert f"(public URL http://127.0.0.1:{port})" in output


class _StandIn(BaseHTTPRequestHandler):
    """Slack, OpenAI and OpenPhone on one loopback port; records what it was sent."""

    seen: list[tuple[str, str, str | None, bytes]] = []
    openai_key = "sk-good-key"

    def _answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.seen.append((self.command, self.path, self.headers.get("Authorization"),
                          self.rfile.read(length)))

    def do_POST(self) -> None:  # noqa: N802
        self._record()
        self._answer(200 if self.path == "/slack/hook" else 404, {"ok": True})

    def do_GET(self) -> None:  # noqa: N802
        self._record()
        auth = self.headers.get("Authorization")
        if self.path == "/openai/v1/models":
            self._answer(200 if auth == f"Bearer {self.openai_key}" else 401, {"data": []})
        elif self.path == "/openphone/v1/phone-numbers":
            self._answer(200 if auth == "op-key" else 401,
                         {"data": [{"id": "PN1", "number": "+15550001111"}]})
        else:
            self._answer(404, {})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stand_in() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _StandIn.seen = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_doctor_online_calls_each_configured_integration(tmp_path: Path, stand_in: str) -> None:
    """doctor --online posts to the Slack webhook, lists OpenAI models and OpenPhone numbers with
    the configured keys, fails on a refused key or a sender outside the workspace, and never prints
    a key or the webhook URL.
    """
    env = {**db_env(f"sqlite:///{tmp_path}/d.db"),
           "SLACK_WEBHOOK_URL": f"{stand_in}/slack/hook", "OPENAI_API_KEY": "sk-good-key",
           "GATEHOUSE_OPENAI_BASE_URL": f"{stand_in}/openai/v1", "OPENPHONE_API_KEY": "op-key",
           "OPENPHONE_FROM": "+15550001111", "GATEHOUSE_OPENPHONE_BASE_URL": f"{stand_in}/openphone/v1"}
    run_cli("db", "upgrade", env=env, cwd=tmp_path)
    good = run_cli("doctor", "--json", "--online", env=env, cwd=tmp_path)
    checks = {c["name"]: c for c in json.loads(good.stdout)["checks"]}
    assert good.returncode == 0, good.stdout
    assert all(checks[n]["ok"] for n in ("slack_online", "openai_online", "openphone_online"))
    assert sorted((m, p, a) for m, p, a, _ in _StandIn.seen) == [
        ("GET", "/openai/v1/models", "Bearer sk-good-key"),
        ("GET", "/openphone/v1/phone-numbers", "op-key"),
        ("POST", "/slack/hook", None),
    ]
    assert b"connectivity check" in next(body for m, _, _, body in _StandIn.seen if m == "POST")

    bad = run_cli("doctor", "--json", "--online", cwd=tmp_path,
                  env={**env, "OPENAI_API_KEY": "sk-revoked", "OPENPHONE_FROM": "+15559999999"})
    checks = {c["name"]: c for c in json.loads(bad.stdout)["checks"]}
    assert bad.returncode == 1
    assert (checks["openai_online"]["ok"], checks["openai_online"]["detail"]) == (
        False, "credentials refused (HTTP 401)")
    assert checks["openphone_online"]["ok"] is False
    assert "not a number of this workspace" in checks["openphone_online"]["detail"]
    for secret in ("sk-revoked", "op-key", "/slack/hook"):
        assert secret not in bad.stdout + bad.stderr

    calls = len(_StandIn.seen)
    offline = run_cli("doctor", "--json", env=env, cwd=tmp_path)
    assert len(_StandIn.seen) == calls  # without --online nothing is called
    assert not any(c["name"].endswith("_online") for c in json.loads(offline.stdout)["checks"])


def run_with_umask(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m gatehouse ARGS` under umask 002, which leaves new files group-readable."""
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "gatehouse", *args], env={**os.environ, **BASE_ENV, **env}, cwd=cwd,
        capture_output=True, text=True, timeout=120, check=False, umask=0o002,
    )


def test_sqlite_database_and_its_wal_and_shm_files_are_created_0600(tmp_path: Path) -> None:
    """The SQLite database (password hashes, sessions, audit) is created 0600 by `db upgrade` and by
    any other verb, and so are the -wal and -shm files of a running server, whatever the umask."""
    migrated, opened = tmp_path / "migrated.db", tmp_path / "opened.db"
    upgraded = run_with_umask("db", "upgrade", env=db_env(f"sqlite:///{migrated}"), cwd=tmp_path)
    assert upgraded.returncode == 0
    # Through the app's engine (it fails, the tables are missing, but the file is created first).
    run_with_umask("users", "list", env=db_env(f"sqlite:///{opened}"), cwd=tmp_path)
    assert stat.S_IMODE(migrated.stat().st_mode) == 0o600
    assert stat.S_IMODE(opened.stat().st_mode) == 0o600

    port = free_port()
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "gatehouse", "serve", "--port", str(port)],
        env={**os.environ, **BASE_ENV, **db_env(f"sqlite:///{migrated}")}, cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, umask=0o002,
    )
    try:
        deadline = time.monotonic() + 30
        wal, shm = tmp_path / "migrated.db-wal", tmp_path / "migrated.db-shm"
        while not wal.exists() or not shm.exists():
            assert server.poll() is None and time.monotonic() < deadline
            try:
                httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
            except httpx.HTTPError:
                time.sleep(0.2)
        for name in ("migrated.db", "migrated.db-wal", "migrated.db-shm"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_backups_are_created_0600_on_sqlite_and_postgresql(
    tmp_path: Path, postgres: PostgresDatabases
) -> None:
    """`db backup` files are 0600 from the moment they exist, for SQLite and for pg_dump, whatever
    the umask; an existing file is never overwritten."""
    sqlite_env = db_env(f"sqlite:///{tmp_path}/g.db")
    assert run_with_umask("db", "upgrade", env=sqlite_env, cwd=tmp_path).returncode == 0
    for env, name in ((sqlite_env, "sqlite.backup"), (db_env(postgres.fresh()), "pg.dump")):
        result = run_with_umask("db", "backup", str(tmp_path / name), env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
        assert (tmp_path / name).stat().st_size > 0
        again = run_with_umask("db", "backup", str(tmp_path / name), env=env, cwd=tmp_path)
        assert_clean_failure(again)
        assert "already exists" in again.stderr
    assert (tmp_path / "pg.dump").read_bytes()[:5] == b"PGDMP"
