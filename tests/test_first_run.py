"""A new user's first run, through the `gatehouse` command (issue 9, items 7, 9-12).

`serve` refuses what would make it unsafe or unusable with one line, before any
first admin is created; the admin's password is printed once the server listens
and can always be printed again if nobody saw it; every command run in the
`serve --dev` folder shares its secrets and database.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from gatehouse.store.db import migrate
from tests.conftest import BASE_ENV, REDIS_URL, free_port

REPO = Path(__file__).resolve().parents[1]
CREDENTIALS = re.compile(r"email (\S+)\s+password (\S+)")
STRONG = {"JWT_SECRET": BASE_ENV["JWT_SECRET"], "ENCRYPTION_KEY": BASE_ENV["ENCRYPTION_KEY"]}


def local_env(**extra: str) -> dict[str, str]:
    """The environment of someone trying Gatehouse: no secrets, no DATABASE_URL, cheap hashing."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GATEHOUSE_", "JWT_", "ENCRYPTION_", "DATABASE_", "REDIS_",
                                "PUBLIC_API_URL"))}
    return {**env, "GATEHOUSE_ARGON2_MEMORY_KIB": "8192", "GATEHOUSE_ARGON2_TIME_COST": "1",
            **extra}


def gatehouse(*args: str, cwd: Path, env: dict[str, str] | None = None,
              stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "gatehouse", *args], cwd=cwd, env=env or local_env(),
        input=stdin, capture_output=True, text=True, timeout=120, check=False,
    )


def one_line_refusal(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """The command failed with `code`, printed exactly one line (no traceback), naming `needles`."""
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == code, result.stdout + result.stderr
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


class DevServer:
    """`gatehouse serve --dev` in a folder, its output in a file, stopped by PID."""

    def __init__(self, cwd: Path, port: int, *args: str, env: dict[str, str] | None = None) -> None:
        self.log = cwd / f"serve-{port}-{time.monotonic_ns()}.log"
        self.url = f"http://127.0.0.1:{port}"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "gatehouse", "serve", "--dev", "--port", str(port), *args],
                cwd=cwd, env=env or local_env(), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # with --workers, the children are stopped with it
            )

    def output(self) -> str:
        return self.log.read_text()

    def wait_listening(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while "listening on" not in self.output():
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.1)
        time.sleep(0.3)  # the credential lines follow the listening line
        return self.output()

    def wait_exit(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


@contextmanager
def dev_server(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[DevServer]:
    server = DevServer(cwd, free_port(), *args, env=env)
    try:
        yield server
    finally:
        server.stop()


def assert_logs_in(base: str, email: str, password: str) -> None:
    r = httpx.post(f"{base}/api/v1/auth/login", json={"email": email, "password": password},
                   timeout=10)
    assert r.status_code == 200, r.text
    assert "admin" in r.json()["user"]["roles"]
    if email == "admin@example.com":  # the --dev admin can sign in under REQUIRE_VERIFIED_EMAIL
        assert r.json()["user"]["email_verified"] is True


def user_count(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master")}
        return conn.execute("select count(*) from users").fetchone()[0] if "users" in tables else 0


# -- serve refuses, in one line, what doctor calls unsafe ----------------------------------------


# A public key pasted as the HMAC secret (algorithm confusion: tests/test_secrets_policy.py).
PEM_PUBLIC_KEY = ("-----BEGIN PUBLIC KEY-----\n"
                  "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n"
                  "-----END PUBLIC KEY-----\n")


@pytest.mark.parametrize(("variable", "value"), [
    ("JWT_SECRET", "a" * 32), ("JWT_SECRET", "changeme" * 4), ("ENCRYPTION_KEY", "k" * 32),
    ("JWT_SECRET", PEM_PUBLIC_KEY),
])
def test_serve_refuses_a_secret_that_doctor_calls_weak(
    tmp_path: Path, variable: str, value: str
) -> None:
    """`serve` (not --dev) refuses a typed-looking secret with exit 2 and one line naming the
    variable and the rule, never the value; doctor fails the same secret."""
    env = local_env(**{**STRONG, variable: value, "DATABASE_URL": f"sqlite:///{tmp_path}/g.db"})
    gatehouse("db", "upgrade", cwd=tmp_path, env=env)
    line = one_line_refusal(gatehouse("serve", "--port", str(free_port()), cwd=tmp_path, env=env),
                            2, variable, "weak", "keys generate")
    assert value not in line
    doctor = gatehouse("doctor", cwd=tmp_path, env=env)
    assert doctor.returncode == 2
    assert re.search(rf"^FAIL \S+ +{variable} is weak", doctor.stdout, re.M), doctor.stdout


def test_serve_refuses_insecure_cookies_with_an_https_public_url(tmp_path: Path) -> None:
    """GATEHOUSE_INSECURE_COOKIES=1 with an https PUBLIC_API_URL is refused with one line."""
    env = local_env(**STRONG, PUBLIC_API_URL="https://auth.example.com",
                    GATEHOUSE_INSECURE_COOKIES="1", DATABASE_URL=f"sqlite:///{tmp_path}/g.db")
    one_line_refusal(gatehouse("serve", "--port", str(free_port()), cwd=tmp_path, env=env), 2,
                     "GATEHOUSE_INSECURE_COOKIES", "https")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])  # noqa: S104 - the refused hosts
def test_serve_dev_refuses_a_non_loopback_host(tmp_path: Path, host: str) -> None:
    """`--dev` (generated secrets, a seeded admin, cookies without Secure) listens on loopback only:
    any other --host is refused with one line, before anything is created."""
    one_line_refusal(gatehouse("serve", "--dev", "--host", host, cwd=tmp_path), 2, "--dev", host)
    assert list(tmp_path.iterdir()) == []  # no secrets, no database, no admin


# -- the first admin: printed once the server listens, never lost ---------------------------------


def test_port_in_use_prints_no_password_and_the_next_start_prints_working_credentials(
    tmp_path: Path,
) -> None:
    """A `serve --dev` whose port is taken fails in one line without creating or printing an
    admin; the next start on a free port prints credentials (with the console URL) that log in,
    and every command run in that folder then uses its secrets and database."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        failed = DevServer(tmp_path, port)
        try:
            assert failed.wait_exit() != 0
        finally:
            failed.stop()
    output = failed.output()
    assert "password" not in output.lower() and "Traceback" not in output, output
    assert f"cannot listen on 127.0.0.1:{port}" in output
    assert user_count(tmp_path / "gatehouse.db") == 0

    with dev_server(tmp_path) as server:
        output = server.wait_listening()
        match = CREDENTIALS.search(output)
        assert match is not None, output
        assert f"{server.url}/console/" in output
        assert_logs_in(server.url, match[1], match[2])
    assert not (tmp_path / ".gatehouse" / "first-admin.pending").exists()

    # Item 10: the same folder, no variables: the dev secrets and database are used.
    created = gatehouse("users", "create", "--email", "bob@example.com", "--password-stdin",
                        cwd=tmp_path, stdin="correct-horse-battery-staple-1\n")
    assert (created.returncode, created.stderr) == (0, ""), created.stdout
    listed = gatehouse("users", "list", cwd=tmp_path)
    assert {"admin@example.com", "bob@example.com"} <= {
        line.split("\t")[0] for line in listed.stdout.splitlines()}
    doctor = gatehouse("doctor", cwd=tmp_path)
    assert doctor.returncode == 0, doctor.stdout
    assert re.search(r"^ok +jwt_secret +64 bytes", doctor.stdout, re.M), doctor.stdout
    assert gatehouse("db", "status", "--check", cwd=tmp_path).returncode == 0

    # The environment, then a real .env, win over the generated file.
    override = local_env(JWT_SECRET=BASE_ENV["JWT_SECRET"])
    doctor = gatehouse("doctor", cwd=tmp_path, env=override)
    assert re.search(rf"^ok +jwt_secret +{len(BASE_ENV['JWT_SECRET'])} bytes", doctor.stdout, re.M)
    (tmp_path / ".env").write_text("JWT_SECRET=" + "x7Kp2mQ9vL4nR8sT1wY6zB3cD5fG0hJ9aZ\n")
    doctor = gatehouse("doctor", cwd=tmp_path)
    assert re.search(r"^ok +jwt_secret +34 bytes", doctor.stdout, re.M), doctor.stdout


def test_workers_without_redis_are_refused_before_any_admin_exists(tmp_path: Path) -> None:
    """`serve --dev --workers 2` without REDIS_URL is refused with one line before an admin is
    created or printed; the next plain `serve --dev` prints the first admin."""
    refused = gatehouse("serve", "--dev", "--workers", "2", "--port", str(free_port()),
                        cwd=tmp_path)
    one_line_refusal(refused, 2, "--workers", "REDIS_URL")
    assert "password" not in refused.stdout + refused.stderr
    assert user_count(tmp_path / "gatehouse.db") == 0
    with dev_server(tmp_path) as server:
        match = CREDENTIALS.search(server.wait_listening())
        assert match is not None
        assert_logs_in(server.url, match[1], match[2])


def test_with_several_workers_the_credentials_are_printed_once(tmp_path: Path) -> None:
    """`serve --dev --workers 2` (with Redis) prints the first admin once, not once per worker."""
    with dev_server(tmp_path, "--workers", "2", env=local_env(REDIS_URL=REDIS_URL)) as server:
        output = server.wait_listening()
        time.sleep(2)  # both workers are up by now
        output = server.output()
        assert len(CREDENTIALS.findall(output)) == 1, output
        assert output.count("listening on") == 1
        match = CREDENTIALS.search(output)
        assert match is not None
        assert_logs_in(server.url, match[1], match[2])


def test_an_admin_whose_password_was_never_shown_gets_a_new_one(tmp_path: Path) -> None:
    """When the server dies after the first admin was created but before it listened, no password
    is printed; the next `serve --dev` resets that admin's password and prints it (once)."""
    (tmp_path / "not-a-directory").write_text("")
    # The log file's folder cannot be created: the app fails inside uvicorn, after every check.
    broken = local_env(GATEHOUSE_LOG_FILE=str(tmp_path / "not-a-directory" / "gatehouse.log"))
    with dev_server(tmp_path, env=broken) as crashed:
        assert crashed.wait_exit() != 0
    assert "password" not in crashed.output().lower(), crashed.output()
    assert user_count(tmp_path / "gatehouse.db") == 1  # created, never shown

    with dev_server(tmp_path) as server:
        output = server.wait_listening()
        match = CREDENTIALS.search(output)
        assert match is not None and "reset" in output, output
        assert_logs_in(server.url, match[1], match[2])
    with dev_server(tmp_path) as again:
        assert "password" not in again.wait_listening().lower()
    assert user_count(tmp_path / "gatehouse.db") == 1


def test_the_password_of_a_never_shown_admin_set_by_hand_is_kept(tmp_path: Path) -> None:
    """After `users set-password` on the never-shown admin, `serve --dev` no longer resets it."""
    (tmp_path / "not-a-directory").write_text("")
    broken = local_env(GATEHOUSE_LOG_FILE=str(tmp_path / "not-a-directory" / "gatehouse.log"))
    with dev_server(tmp_path, env=broken) as crashed:
        assert crashed.wait_exit() != 0
    chosen = "chosen-by-the-operator-31"
    done = gatehouse("users", "set-password", "admin@example.com", "--password-stdin",
                     cwd=tmp_path, stdin=chosen + "\n")
    assert done.returncode == 0, done.stderr
    with dev_server(tmp_path) as server:
        assert "password" not in server.wait_listening().lower()
        assert_logs_in(server.url, "admin@example.com", chosen)


# -- migrations: serve never runs on a database it does not match -------------------------------


def test_serve_refuses_a_database_whose_migrations_are_behind(
    tmp_path: Path, database_url: str, backend: str
) -> None:
    """`serve` on a database at an older migration exits non-zero with one line naming its
    revision, the head revision and `gatehouse db upgrade`; after the upgrade it starts."""
    head = migrate.head_revision()
    migrate.downgrade(database_url, "0001")
    try:
        env = local_env(**STRONG, DATABASE_URL=database_url)
        refused = gatehouse("serve", "--port", str(free_port()), cwd=tmp_path, env=env)
        one_line_refusal(refused, 1, "0001", str(head), "gatehouse db upgrade")
    finally:
        migrate.upgrade(database_url)  # the PostgreSQL test database is shared with other tests


def test_serve_refuses_a_database_ahead_of_the_code(tmp_path: Path) -> None:
    """A database migrated by a newer release (a revision this code does not know) is refused by
    `serve` and `serve --dev` with one line; `db status` says so too."""
    url = f"sqlite:///{tmp_path}/g.db"
    migrate.upgrade(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    engine.dispose()
    env = local_env(**STRONG, DATABASE_URL=url)
    for args in (["serve"], ["serve", "--dev"]):
        result = gatehouse(*args, "--port", str(free_port()), cwd=tmp_path, env=env)
        one_line_refusal(result, 1, "9999_from_the_future", "does not know")
    status = gatehouse("db", "status", cwd=tmp_path, env=env)
    assert status.returncode == 1 and "ahead of this code" in status.stdout


# -- the distribution's name -----------------------------------------------------------------------


def test_the_distribution_is_gatehouse_auth_and_every_install_line_says_so() -> None:
    """The package installs as `gatehouse-auth` (PyPI's `gatehouse` is another project) with the
    `gatehouse` command and import package, and no doc tells anyone to `pip install gatehouse`."""
    dist = importlib.metadata.distribution("gatehouse-auth")
    scripts = [ep.value for ep in dist.entry_points if ep.name == "gatehouse"]
    assert scripts == ["gatehouse.cli.main:run"]
    assert set(importlib.metadata.packages_distributions()["gatehouse"]) == {"gatehouse-auth"}
    docs = [REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "bench").glob("*.md")]
    wrong = re.compile(r"pip install\s+(-U\s+)?[\"']?gatehouse(\[[^\]]*\])?[\"']?(\s|$)", re.M)
    for doc in docs:
        assert not wrong.search(doc.read_text()), doc
    assert "pip install gatehouse-auth" in (REPO / "docs" / "sdk.md").read_text()
