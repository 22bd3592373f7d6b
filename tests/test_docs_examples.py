"""Every shell and Python example of the docs runs (issue 16), so none of them rots.

Each fenced `sh`, `bash`, `console` or `python` block of README.md and docs/*.md is claimed
by exactly one of:

* `RUN_BY`: a page whose blocks another test runs in order, as written, against a real server;
* `HERE`: a block this module runs against `gatehouse serve --dev` (started the README's way,
  in a fresh folder), each with the few substitutions it lists: the server's address for
  `127.0.0.1:8000` or a production host, a real account for the `EMAIL` placeholder, files
  the test wrote for log and backup paths. A password prompt is answered on a real terminal;
  a `gatehouse serve` line is started in the background, asked for /readyz, and stopped;
* `ELSEWHERE`: a block that is not a command to run here, with where it does run (CI itself,
  a named test) or why it cannot (a package not yet on PyPI).

A new block that none of them claims fails `test_every_example_is_claimed`.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from gatehouse.settings import Settings
from tests._docs_blocks import DOC_URL, DOCS, dev_server, docs_env
from tests.conftest import free_port

ROOT = DOCS.parent
LANGS = ("sh", "bash", "console", "python")
PASSWORD = "correct-horse-battery-staple-7"  # what the terminal types at a password prompt


@dataclass(frozen=True)
class Example:
    page: str
    lang: str
    body: str

    @property
    def first(self) -> str:
        return self.body.splitlines()[0]


def examples() -> list[Example]:
    out = []
    for path in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        page = path.relative_to(ROOT).as_posix()
        for lang, body in re.findall(rf"^```({'|'.join(LANGS)})\n(.*?)^```", path.read_text(),
                                     flags=re.S | re.M):
            out.append(Example(page, lang, body))
    return out


def example(page: str, start: str) -> Example:
    """The one block of `page` whose first line starts with `start`."""
    found = [e for e in examples() if e.page == page and e.first.startswith(start)]
    assert len(found) == 1, f"{page}: no single block starting {start!r}"
    return found[0]


#: Pages whose blocks of a language another test runs, all of them, in order, as written.
RUN_BY = {
    ("docs/api.md", "sh"): "tests/test_docs_api.py",
    ("docs/migration.md", "sh"): "tests/test_docs_migration.py",
    ("docs/sdk.md", "python"): "tests/test_sdk_real_server.py",
    ("docs/protect-your-api.md", "python"): "tests/test_resource_server.py",
}

#: Blocks this module runs (page, first line).
HERE = {
    ("README.md", "curl -s http"),
    ("README.md", "gatehouse doctor"),
    ("README.md", "printf"),
    ("docs/configuration.md", "DATABASE_URL="),
    ("docs/index.md", "$ .venv/bin/pip install"),
    ("docs/migration.md", "$ psql"),
    ("docs/notifications.md", "# every channel"),
    ("docs/operations.md", "gatehouse doctor"),
    ("docs/operations.md", "gatehouse users create"),
    ("docs/operations.md", "gatehouse users set-password"),
    ("docs/operations.md", "gatehouse sessions revoke-all"),
    ("docs/operations.md", "gatehouse logs analyze"),
    ("docs/operations.md", "export GATEHOUSE_METRICS_TOKEN"),
    ("docs/runbook.md", "gatehouse doctor"),
    ("docs/runbook.md", "gatehouse db backup"),
    ("docs/runbook.md", "gatehouse sessions revoke-all --user"),
}

#: Blocks that run elsewhere or cannot run in a test, and why.
ELSEWHERE = {
    ("README.md", "python3 -m venv"):
        "the README's set-up command: .ci/run installs the same way on a fresh machine, and every "
        "test here starts `gatehouse serve --dev` as its last part does (tests/_docs_blocks.py)",
    ("docs/index.md", "$ python3 -m venv"):
        "the README's set-up command again (see above)",
    ("README.md", "bash .ci/run"): "the README's test command: CI runs it",
    ("docs/sdk.md", "pip install gatehouse-auth"):
        "needs the distribution on PyPI (not released yet); the name is checked by "
        "tests/test_first_run.py and the extras by pyproject.toml",
    ("docs/operations.md", ".venv/bin/python bench/soak.py"):
        "a 10-minute (and PostgreSQL) soak; its 60 s form, the third line, is "
        "tests/test_soak_smoke.py, and bench/RESULTS.md holds the 10-minute run",
    ("docs/operations.md", "export GH_LOAD_"):
        "a 15-minute load test against a staging deployment; tests/test_locustfile.py runs the "
        "same locustfile headless for 10 s against a real server",
    ("docs/runbook.md", "bash scripts/lock.sh"):
        "rewrites requirements/test.lock from PyPI; tests/test_lockfile.py checks the lock "
        "against pyproject.toml and runs scripts/audit.sh on a known-vulnerable lock",
}


def test_every_example_is_claimed() -> None:
    """No shell or Python block of the docs goes unrun without a reason, and no claim is stale."""
    found = examples()
    claims = HERE | set(ELSEWHERE)

    def claimed_by(e: Example) -> list[tuple[str, str]]:
        return [(page, start) for page, start in claims
                if page == e.page and e.first.startswith(start)]

    unclaimed = [f"{e.page}: {e.first}" for e in found
                 if (e.page, e.lang) not in RUN_BY and len(claimed_by(e)) != 1]
    assert unclaimed == [], "run these blocks in a test, or say in ELSEWHERE why not"
    used = {claim for e in found for claim in claimed_by(e)}
    assert claims - used == set(), "claims of blocks that no longer exist"
    for (page, lang), test in RUN_BY.items():
        assert any(e.page == page and e.lang == lang for e in found)
        assert Path(page).name in (ROOT / test).read_text(), f"{test} does not read {page}"


# ------------------------------------------------------------------ running blocks


def _take_terminal() -> None:  # in the child: its own session, the pty as controlling terminal
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def on_terminal(script: str, cwd: Path, env: dict[str, str], timeout: float = 120
                ) -> tuple[int, str]:
    """Run `script` with bash on a pseudo-terminal, typing PASSWORD at each password prompt.

    Returns the exit code and everything the terminal showed (stdout and stderr)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
                            stdin=slave, stdout=slave, stderr=slave, preexec_fn=_take_terminal)
    os.close(slave)
    shown, answered = b"", 0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every process on the terminal has closed it
                    break
                if not chunk:
                    break
                shown += chunk
                if re.search(rb"(Password|Repeat for confirmation): $", shown[answered:]):
                    os.write(master, PASSWORD.encode() + b"\n")
                    answered = len(shown)
            elif proc.poll() is not None:
                break
        else:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"timed out after {timeout} s:\n{shown.decode(errors='replace')[-3000:]}")
        code = proc.wait(timeout=30)
    finally:
        os.close(master)
    return code, shown.decode(errors="replace").replace("\r\n", "\n")


def serve_in_background(line: str, port: int) -> str:
    """A `gatehouse serve ... --port 8000 ...` line as: start it on `port`, wait for /readyz,
    stop it with SIGTERM, and fail if it did not stop cleanly."""
    command = line.split("#")[0].strip().replace("--port 8000", f"--port {port}")
    return (f"{command} > serve-{port}.log 2>&1 &\n"
            f"pid=$!\n"
            f"for _ in $(seq 1 150); do\n"
            f"  curl -sf http://127.0.0.1:{port}/readyz >/dev/null && break; sleep 0.2\ndone\n"
            f"curl -sS --fail-with-body http://127.0.0.1:{port}/readyz\n"
            f"kill -TERM $pid\nwait $pid\n")


def script_of(body: str, port: int) -> str:
    """The block with each `gatehouse serve` line run by `serve_in_background`."""
    return "".join(serve_in_background(line, port) if line.startswith("gatehouse serve ")
                   else line + "\n" for line in body.splitlines())


@dataclass
class Folder:
    """The fresh folder `serve --dev` runs in, and what a reader's shell has there."""

    path: Path
    base: str
    env: dict[str, str]

    def run(self, body: str, **subs: str) -> str:
        """Run a block (after `subs` replacements and the server's address) on a terminal;
        it must exit 0. Returns what it showed."""
        for old, new in subs.items():
            assert old in body, f"{old!r} is not in the block any more"
            body = body.replace(old, new)
        body = body.replace(DOC_URL, self.base)
        code, shown = on_terminal(script_of(body, free_port()), self.path, self.env)
        assert code == 0, f"exit {code}:\n{shown[-4000:]}"
        return shown

    def login(self, email: str, password: str) -> int:
        with httpx.Client(base_url=self.base, timeout=30) as http:
            return http.post("/api/v1/auth/login",
                             json={"email": email, "password": password}).status_code

    def disabled(self, email: str) -> bool:
        """Whether the account is disabled, as the first admin sees it (GET /admin/users): no
        login attempt on it, which `slo check` would count as a failed login."""
        with httpx.Client(base_url=self.base, timeout=30) as http:
            token = http.post("/api/v1/auth/login", json={
                "email": "admin@example.com", "password": self.printed_password(),
            }).json()["access_token"]
            found = http.get("/api/v1/admin/users", params={"q": email},
                             headers={"Authorization": f"Bearer {token}"}).json()["items"]
        return bool([u["disabled"] for u in found if u["email"] == email] == [True])

    def printed_password(self) -> str:
        """The password `serve --dev` printed, as a reader waits for it: it is printed once the
        port accepts connections, which may come a moment after /readyz first answered."""
        deadline = time.monotonic() + 30
        while not (match := re.search(r"email admin@example\.com\s+password (\S+)",
                                      (self.path / "serve.log").read_text())):
            assert time.monotonic() < deadline, "serve --dev printed no first-admin password"
            time.sleep(0.1)
        return match.group(1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Folder:
    """`serve --dev` in a fresh folder, with a scrape token for `slo check`; the reader's shell
    also has REDIS_URL (`serve --workers 4` needs it) and the passwords the blocks pipe."""
    path = tmp_path_factory.mktemp("docs-examples")
    token = "scrape-" + os.urandom(16).hex()
    server_env = {**docs_env(), "GATEHOUSE_METRICS_TOKEN": token}
    with dev_server(path, server_env) as base:
        yield Folder(path, base, {
            **server_env, "REDIS_URL": redis_url, "GATEHOUSE_REDIS_PREFIX": f"docs{os.getpid()}:",
            "ADMIN_PASSWORD": PASSWORD + "-admin", "NEW_PASSWORD": PASSWORD + "-new",
            "TERM": "dumb",
        })


@pytest.fixture(scope="module")
def redis_url() -> str:
    url = os.environ.get("GATEHOUSE_TEST_REDIS_URL")
    if not url:
        pytest.fail("GATEHOUSE_TEST_REDIS_URL is not set (.ci/run sets it)")
    return url


@pytest.mark.slow
def test_readme_examples(folder: Folder) -> None:
    """The README's first calls (with the password serve --dev printed), its production
    commands (doctor, upgrade, a prompted first admin, four workers) and the scripted admin."""
    shown = folder.run(example("README.md", "curl -s http").body,
                       **{"<printed password>": folder.printed_password()})
    assert '"status":"ok"' in shown and '"access_token"' in shown
    shown = folder.run(example("README.md", "gatehouse doctor").body,
                       **{"you@example.com": "readme@example.com"})
    assert '"status":"ok"' in shown  # the four-worker server answered /readyz
    assert folder.login("readme@example.com", PASSWORD) == 200  # the prompted first admin
    folder.run(example("README.md", "printf").body)
    # created with $ADMIN_PASSWORD, then set-password (prompted) replaced it
    assert folder.login("you@example.com", folder.env["ADMIN_PASSWORD"]) == 401
    assert folder.login("you@example.com", PASSWORD) == 200


@pytest.mark.slow
def test_operations_examples(folder: Folder) -> None:
    """docs/operations.md: running, the first admin both ways, emergencies, logs and SLOs."""
    page = "docs/operations.md"
    shown = folder.run(example(page, "gatehouse doctor").body)
    assert '"status":"ok"' in shown
    create = example(page, "gatehouse users create").body.splitlines()
    # Two ways to create the same admin: each on its own account.
    folder.run(create[0].replace("you@", "ops-prompt@"))
    folder.run(create[1].replace("you@", "ops-stdin@"))
    assert folder.login("ops-prompt@example.com", PASSWORD) == 200
    assert folder.login("ops-stdin@example.com", folder.env["ADMIN_PASSWORD"]) == 200
    folder.run(example(page, "gatehouse users set-password").body.replace("you@", "ops-stdin@"))
    assert folder.login("ops-stdin@example.com", folder.env["NEW_PASSWORD"]) == 200
    folder.run(example(page, "gatehouse sessions revoke-all").body,
               EMAIL="ops-prompt@example.com")
    assert folder.disabled("ops-prompt@example.com")  # by the block
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    (folder.path / "nginx.log").write_text(
        f'10.0.0.1 - - [{an_hour_ago:%d/%b/%Y:%H:%M:%S +0000}] "GET /api/v1/users/profile '
        'HTTP/1.1" 200 312 "-" "curl/8.0"\n')
    (folder.path / "access.log").write_bytes((folder.path / "serve.log").read_bytes())
    shown = folder.run(example(page, "gatehouse logs analyze").body,
                       **{"/var/log/gatehouse/access.log": "serve.log",
                          "/var/log/nginx/access.log*": "nginx.log*"})
    assert "1 requests in the last 7d, 0 errors" in shown  # the nginx file
    assert '"POST /api/v1/auth/login"' in shown and "wrote report.html" in shown
    assert "<svg" in (folder.path / "report.html").read_text()
    shown = folder.run(example(page, "export GATEHOUSE_METRICS_TOKEN").body,
                       **{"GATEHOUSE_METRICS_TOKEN=...": "GATEHOUSE_METRICS_TOKEN="
                          + folder.env["GATEHOUSE_METRICS_TOKEN"],
                          "https://auth.example.com": folder.base})
    assert "login" in shown  # slo check printed its checks


@pytest.mark.slow
def test_runbook_examples(folder: Folder) -> None:
    """docs/runbook.md: first look, upgrade with a backup first, one compromised account."""
    page = "docs/runbook.md"
    folder.run(example(page, "gatehouse doctor").body,
               **{"/var/log/gatehouse/access.log": "serve.log"})
    (folder.path / "backups").mkdir()
    folder.run(example(page, "gatehouse db backup").body, **{"/var/backups/": "backups/"})
    assert [p.stat().st_size > 0 for p in (folder.path / "backups").iterdir()] == [True]
    folder.run("printf '%s\\n' \"$ADMIN_PASSWORD\" | gatehouse users create "
               "--email runbook@example.com --password-stdin")
    assert folder.login("runbook@example.com", folder.env["ADMIN_PASSWORD"]) == 200
    folder.run(example(page, "gatehouse sessions revoke-all --user").body,
               EMAIL="runbook@example.com")
    assert folder.disabled("runbook@example.com")


@pytest.mark.slow
def test_notifications_example(folder: Folder) -> None:
    """docs/notifications.md with docs/api.md's $GH and $ACCESS; the texted code is the one
    serve --dev printed (no OPENPHONE_API_KEY: texts go to the console)."""
    login = example("docs/api.md", "GH=http://127.0.0.1:8000").body
    block = example("docs/notifications.md", "# every channel").body
    head, tail = block.split("# 204:")[0].rsplit("curl", 1)
    shown = folder.run(login + head)
    assert '"sms":false' in shown
    deadline = time.monotonic() + 30
    while not (codes := re.findall(r"SMS to \+14155552671: .*?(\d{6})",
                                   (folder.path / "serve.log").read_text())):
        assert time.monotonic() < deadline, "no code was texted"  # sent off the request path
        time.sleep(0.2)
    relogin = "".join(line for line in login.splitlines(keepends=True)
                      if "users create" not in line)  # alice exists by now
    folder.run(relogin + "curl" + tail, **{'"123456"': f'"{codes[-1]}"'})
    with httpx.Client(base_url=folder.base) as http:
        token = http.post("/api/v1/auth/login", json={
            "email": "alice@example.com", "password": "correct-horse-battery-staple-1",
        }).json()["access_token"]
        profile = http.get("/api/v1/users/profile", headers={"Authorization": f"Bearer {token}"})
    assert (profile.json()["phone"], profile.json()["phone_verified"]) == ("+14155552671", True)


def test_configuration_example_is_an_environment_settings_accept(tmp_path: Path) -> None:
    """docs/configuration.md's production environment, its `...` filled in by `gatehouse keys
    generate` as its comments say, is read by Settings as written."""
    block = example("docs/configuration.md", "DATABASE_URL=").body
    keys = subprocess.run([str(Path(sys.executable).with_name("gatehouse")), "keys", "generate"],
                          capture_output=True, text=True, check=True, env=docs_env()).stdout
    generated = dict(line.split("=", 1) for line in keys.splitlines() if "=" in line)
    env_file = tmp_path / "prod.env"
    env_file.write_text(re.sub(r"^(\w+)=\.\.\.", lambda m: f"{m[1]}={generated[m[1]]}", block,
                               flags=re.M))
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert settings.public_api_url == "https://auth.example.com"
    assert settings.cors_origins == ["https://app.example.com"]
    assert settings.jwt_secret.get_secret_value() == generated["JWT_SECRET"]
    assert settings.redis_url is not None


@pytest.mark.slow
def test_migration_export_from_the_old_database(tmp_path: Path) -> None:
    """docs/migration.md's `psql \\copy` export, run against a PostgreSQL database shaped like
    the old system's users table, writes the users.csv the page then imports (its next block)."""
    admin = os.environ.get("GATEHOUSE_TEST_DATABASE_URL")
    if not admin:
        pytest.fail("GATEHOUSE_TEST_DATABASE_URL is not set (.ci/run sets it)")
    page = "docs/migration.md"
    expected = re.search(r"cat > users.csv <<'CSV'\n(.*?)^CSV$", example(page, "cat > users.csv")
                         .body, flags=re.S | re.M).group(1)  # type: ignore[union-attr]
    rows = list(csv.DictReader(io.StringIO(expected)))
    name = f"docs_old_{os.getpid()}"
    old_url = admin.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    try:
        with psycopg.connect(old_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL, "
                         "name text, password text NOT NULL, role text NOT NULL)")
            for row in rows:  # the old system's spelling: mixed-case emails, one role column
                conn.execute("INSERT INTO users (email, name, password, role) VALUES "
                             "(%s, %s, %s, %s)", (row["email"].title(), row["name"],
                                                  row["password_hash"], row["roles"]))
        command = example(page, "$ psql").body.removeprefix("$ ")
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=tmp_path,
                              env={**docs_env(), "OLD_DATABASE_URL": old_url},
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "users.csv").read_text() == expected
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.slow
def test_docs_site_serves(tmp_path: Path) -> None:
    """docs/index.md's `mkdocs serve` answers the home page on its address (`mkdocs build` is
    tests/test_docs_site.py)."""
    block = example("docs/index.md", "$ .venv/bin/pip install").body
    line = next(x for x in block.splitlines() if "mkdocs serve" in x)
    addr = re.search(r"http://(127\.0\.0\.1:\d+)", line).group(1)  # type: ignore[union-attr]
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("mkdocs")), "serve", "-a", f"127.0.0.1:{port}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, "mkdocs serve stopped"
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "mkdocs serve did not answer"
            time.sleep(0.5)
        assert "Gatehouse" in r.text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    assert f"dev_addr: {addr}" in (ROOT / "mkdocs.yml").read_text()
