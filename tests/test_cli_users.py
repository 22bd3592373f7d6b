"""`gatehouse users ...` and `gatehouse sessions revoke-all`, run as a user would (API.md §5)."""

from __future__ import annotations

import csv
import json
import os
import pty
import select as io_select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
from argon2 import PasswordHasher as Argon2Hasher
from sqlalchemy import select

from gatehouse.context import Context
from gatehouse.store.db.models import AuditEvent, Session, User
from gatehouse.store.kv.redis import RedisKV
from tests.conftest import BASE_ENV, PASSWORD, REDIS_URL, create_user, login, run_cli


def fullwidth(text: str) -> str:
    """The fullwidth look-alike of ASCII text, which NFKC folds back to the original."""
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


def cli(database_url: str, *args: str, stdin: str | None = None,
        **env: str) -> subprocess.CompletedProcess[str]:
    # Standard input is a pipe, never the terminal pytest runs in (no prompt can block).
    return run_cli(*args, env={"DATABASE_URL": database_url, **env},
                   input_text="" if stdin is None else stdin)


def assert_one_line_failure(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """A failed verb exits non-zero with one error line and no traceback."""
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in lines[0]


async def user_row(ctx: Context, email: str) -> User | None:
    async with ctx.db() as db:
        return (await db.scalars(select(User).where(User.email == email))).one_or_none()


async def live_sessions(ctx: Context, user_id: str) -> int:
    async with ctx.db() as db:
        rows = (await db.scalars(select(Session.id).where(
            Session.user_id == user_id, Session.revoked_at.is_(None)))).all()
    return len(rows)


async def events(ctx: Context, type_: str) -> list[AuditEvent]:
    async with ctx.db() as db:
        return list((await db.scalars(select(AuditEvent).where(AuditEvent.type == type_))).all())


def bcrypt_hash(password: str, prefix: str = "$2b$") -> str:
    return prefix + bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()[4:]


# -- users create / list / set-role / disable / unlock -------------------------------------------


@pytest.mark.asyncio
async def test_users_create_then_list_shows_the_user(
    ctx: Context, client: httpx.AsyncClient, database_url: str
) -> None:
    """`users create` makes a user who can log in, with the given roles, and `users list` shows it.
    """
    result = cli(database_url, "users", "create", "--email", "Ops@Example.com", "--password-stdin",
                 "--name", "Ops", "--role", "operator", "--role", "support", stdin=PASSWORD + "\n")
    assert (result.returncode, result.stderr) == (0, "")
    user = await user_row(ctx, "ops@example.com")
    assert user is not None
    assert (user.name, user.roles) == ("Ops", ["operator", "support"])
    assert result.stdout.strip() == f"created ops@example.com ({user.id}) roles: operator, support"
    tokens = await login(client, "ops@example.com")
    assert tokens["user"]["roles"] == ["operator", "support"]

    listed = cli(database_url, "users", "list")
    assert listed.returncode == 0, listed.stderr
    # Piped output keeps whole values (tab-separated), so emails and ids are usable.
    lines = [line.split("\t") for line in listed.stdout.splitlines()]
    assert lines[0] == ["email", "name", "roles", "disabled", "created", "id"]
    (row,) = [line for line in lines[1:] if line[0] == "ops@example.com"]
    assert (row[1], row[2], row[3], row[5]) == ("Ops", "operator,support", "", user.id)


@pytest.mark.asyncio
@pytest.mark.parametrize(("args", "stdin", "needle"), [
    (["users", "create", "--email", "weak@example.com", "--password-stdin"], "password1234",
     "common"),
    (["users", "create", "--email", "not-an-email", "--password-stdin"], PASSWORD, "email"),
    (["users", "create", "--email", "weak@example.com", "--password-stdin"], "", "no password"),
    (["users", "create", "--email", "weak@example.com"], None, "--password-stdin"),
    (["users", "set-password", "alice@example.com", "--password-stdin"], "password1234", "common"),
    (["users", "set-password", "nobody@example.com", "--password-stdin"], PASSWORD, "nobody@"),
    (["users", "set-role", "nobody@example.com", "admin"], None, "nobody@example.com"),
    (["users", "set-role", "alice@example.com", "superuser"], None, "role"),
], ids=["weak-password", "bad-email", "empty-stdin", "no-terminal-to-prompt",
        "set-password-weak", "set-password-unknown-email", "set-role-unknown-email",
        "set-role-bad-role"])
async def test_cli_failures_print_one_line_without_traceback(
    ctx: Context, alice: Any, database_url: str, args: list[str], stdin: str | None, needle: str
) -> None:
    """A refused CLI command prints one error line naming the problem, exits non-zero, changes
    nothing.
    """
    assert_one_line_failure(cli(database_url, *args, stdin=stdin), needle)
    assert (await user_row(ctx, "alice@example.com")).password_hash == alice.password_hash  # type: ignore[union-attr]
    assert (await user_row(ctx, "alice@example.com")).roles == ["user"]  # type: ignore[union-attr]
    assert await user_row(ctx, "weak@example.com") is None


@pytest.mark.asyncio
async def test_users_create_duplicate_email_fails_cleanly(ctx: Context, alice: Any,
                                                          database_url: str) -> None:
    """Creating an existing (look-alike) email is one error line, non-zero exit."""
    result = cli(database_url, "users", "create", "--email", fullwidth("ALICE") + "@example.com",
                 "--password-stdin", stdin=PASSWORD)
    assert_one_line_failure(result, "already exists")


@pytest.mark.asyncio
async def test_users_set_role_replaces_roles_and_is_audited(ctx: Context, alice: Any,
                                                            database_url: str) -> None:
    """`users set-role EMAIL ROLE...` replaces the role list, records the change with a null actor.
    """
    result = cli(database_url, "users", "set-role", "alice@example.com", "support", "operator")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "alice@example.com roles: support, operator"
    user = await user_row(ctx, "alice@example.com")
    assert user is not None
    assert user.roles == ["support", "operator"]
    assert user.roles_changed_at is not None
    (event,) = await events(ctx, "user.role_changed")
    assert (event.user_id, event.data["target_user_id"], event.data["roles"]) == (
        None, alice.id, ["support", "operator"])


@pytest.mark.asyncio
async def test_users_disable_revokes_sessions_and_blocks_login(
    ctx: Context, client: httpx.AsyncClient, alice: Any, database_url: str
) -> None:
    """`users disable` ends every session (refresh answers session_revoked) and login answers
    account_disabled.
    """
    tokens = await login(client)
    result = cli(database_url, "users", "disable", "alice@example.com")
    assert result.returncode == 0, result.stderr
    assert await live_sessions(ctx, alice.id) == 0
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert (r.status_code, r.json()["code"]) == (401, "session_revoked")
    r = await client.post("/api/v1/auth/login",
                          json={"email": "alice@example.com", "password": PASSWORD})
    assert (r.status_code, r.json()["code"]) == (403, "account_disabled")


@pytest.mark.asyncio
async def test_users_unlock_records_the_unlock_for_running_servers(
    ctx: Context, alice: Any, database_url: str
) -> None:
    """`users unlock` succeeds and writes user.unlocked, which running servers apply to their
    throttles.
    """
    result = cli(database_url, "users", "unlock", "alice@example.com")
    assert (result.returncode, result.stdout.strip()) == (0, "alice@example.com unlocked")
    (event,) = await events(ctx, "user.unlocked")
    assert (event.user_id, event.data["target_user_id"]) == (None, alice.id)


# -- import ---------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_import_json_with_bcrypt_and_argon2_hashes(
    ctx: Context, client: httpx.AsyncClient, alice: Any, database_url: str, tmp_path: Path
) -> None:
    """A JSON import takes bcrypt and argon2 hashes and the users log in; an existing email
    aborts the whole import unless --skip-existing is given.
    """
    rows = [
        {"email": "b2b@example.com", "name": "B", "password_hash": bcrypt_hash(PASSWORD),
         "roles": ["support"]},
        {"email": "B2Y@Example.com", "password_hash": bcrypt_hash(PASSWORD, "$2y$")},
        {"email": "argon@example.com", "name": "A", "password_hash": Argon2Hasher().hash(PASSWORD)},
        {"email": "alice@example.com", "password_hash": bcrypt_hash("whatever-else-123")},
    ]
    path = tmp_path / "users.json"
    path.write_text(json.dumps(rows))
    refused = cli(database_url, "users", "import", str(path))
    assert refused.returncode == 1
    assert "line 4: an account with this email already exists" in refused.stderr
    assert "nothing was imported" in refused.stderr and "Traceback" not in refused.stderr
    assert await user_row(ctx, "b2b@example.com") is None

    result = cli(database_url, "users", "import", str(path), "--skip-existing")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("imported 3, skipped 1")
    assert "Traceback" not in result.stderr
    for email in ("b2b@example.com", "b2y@example.com", "argon@example.com"):
        tokens = await login(client, email)
        assert tokens["user"]["email"] == email
        assert (await user_row(ctx, email)).password_hash.startswith("$argon2id$")  # type: ignore[union-attr]
    assert (await user_row(ctx, "b2b@example.com")).roles == ["support"]  # type: ignore[union-attr]
    assert (await user_row(ctx, "b2y@example.com")).roles == ["user"]  # type: ignore[union-attr]
    await login(client)  # the existing account kept its own password
    (event,) = await events(ctx, "users.imported")
    assert (event.user_id, event.data["imported"], event.data["skipped"]) == (None, 3, 1)

    again = cli(database_url, "users", "import", str(path), "--skip-existing")
    assert again.stdout.strip().startswith("imported 0, skipped 4")


@pytest.mark.asyncio
async def test_import_csv_with_semicolon_roles(
    ctx: Context, client: httpx.AsyncClient, database_url: str, tmp_path: Path
) -> None:
    """A CSV import (header email,name,password_hash,roles) splits roles on `;` and normalises
    emails.
    """
    path = tmp_path / "users.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["email", "name", "password_hash", "roles"])
        writer.writerow([fullwidth("Carol") + "@example.com", "Carol, Jr.",
                         bcrypt_hash(PASSWORD, "$2a$"), "support;operator"])
        writer.writerow(["dave@example.com", "", Argon2Hasher().hash(PASSWORD), ""])
    result = cli(database_url, "users", "import", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("imported 2, skipped 0")
    carol = await user_row(ctx, "carol@example.com")
    assert carol is not None
    assert (carol.name, carol.roles) == ("Carol, Jr.", ["support", "operator"])
    assert (await user_row(ctx, "dave@example.com")).roles == ["user"]  # type: ignore[union-attr]
    await login(client, "carol@example.com")
    await login(client, "dave@example.com")


@pytest.mark.asyncio
async def test_import_with_invalid_rows_imports_nothing(
    ctx: Context, database_url: str, tmp_path: Path
) -> None:
    """One error line per bad row, a non-zero exit, no traceback, and not even the good rows are
    written.
    """
    rows = [
        {"email": "good@example.com", "password_hash": bcrypt_hash(PASSWORD)},
        {"email": "not-an-email", "password_hash": bcrypt_hash(PASSWORD)},
        {"email": "plain@example.com", "password_hash": "hunter2"},
        {"email": "role@example.com", "password_hash": bcrypt_hash(PASSWORD), "roles": ["root"]},
    ]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(rows))
    result = cli(database_url, "users", "import", str(path))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert [line.split(":")[0] for line in lines[:3]] == ["line 2", "line 3", "line 4"]
    assert "nothing was imported" in lines[-1]
    assert len(lines) == 4
    assert "hunter2" not in result.stderr
    assert await user_row(ctx, "good@example.com") is None
    assert await events(ctx, "users.imported") == []


@pytest.mark.asyncio
async def test_import_of_a_missing_file_fails_cleanly(database_url: str, tmp_path: Path) -> None:
    """A file that does not exist is one error line and a non-zero exit."""
    assert_one_line_failure(cli(database_url, "users", "import", str(tmp_path / "nope.json")),
                            "does not exist")


# -- sessions revoke-all ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_sessions_revoke_all_for_one_user_then_everyone(
    ctx: Context, client: httpx.AsyncClient, alice: Any, database_url: str
) -> None:
    """`sessions revoke-all --user E` ends only E's sessions; without --user it ends every session.
    """
    bob = await create_user(ctx, "bob@example.com", name="Bob")
    for email in ("alice@example.com", "alice@example.com", "bob@example.com"):
        await login(client, email)
    result = cli(database_url, "sessions", "revoke-all", "--user", "alice@example.com")
    assert (result.returncode, result.stdout.strip()) == (0, "revoked 2 session(s)")
    assert (await live_sessions(ctx, alice.id), await live_sessions(ctx, bob.id)) == (0, 1)
    (event,) = await events(ctx, "sessions.revoked_all")
    assert (event.user_id, event.data["target_user_id"]) == (None, alice.id)

    result = cli(database_url, "sessions", "revoke-all")
    assert (result.returncode, result.stdout.strip()) == (0, "revoked 1 session(s)")
    assert await live_sessions(ctx, bob.id) == 0


# -- passwords never on the command line ----------------------------------------------------------


@pytest.mark.asyncio
async def test_users_create_with_password_in_argv_still_works_but_warns(
    ctx: Context, client: httpx.AsyncClient, database_url: str
) -> None:
    """`--password P` (API.md §5) still creates the user but warns on stderr, in one line, that argv
    is visible in the process list and shell history; the password is not echoed."""
    result = cli(database_url, "users", "create", "--email", "argv@example.com",
                 "--password", PASSWORD)
    assert result.returncode == 0, result.stderr
    (warning,) = result.stderr.strip().splitlines()
    assert "process list" in warning and "--password-stdin" in warning
    assert PASSWORD not in result.stdout + result.stderr
    await login(client, "argv@example.com")


def _answer_prompts(
    args: list[str], env: dict[str, str], answers: list[tuple[str, str]]
) -> tuple[int, str]:
    """Run the CLI on a pseudo-terminal, typing each answer once its prompt appears."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "gatehouse", *args], stdin=slave, stdout=slave, stderr=slave,
        env={**os.environ, **BASE_ENV, **env}, start_new_session=True,  # no /dev/tty but this one
    )
    os.close(slave)
    seen = b""
    try:
        for prompt, answer in [*answers, ("\x00never", "")]:
            deadline = time.monotonic() + 60
            while prompt.encode() not in seen and time.monotonic() < deadline:
                ready, _, _ = io_select.select([master], [], [], 0.5)
                if ready:
                    try:
                        chunk = os.read(master, 4096)
                    except OSError:  # the child closed the terminal: it has finished
                        chunk = b""
                    if not chunk:
                        break
                    seen += chunk
                elif proc.poll() is not None:
                    break
            if prompt.startswith("\x00"):
                break
            assert prompt.encode() in seen, seen
            seen = seen.replace(prompt.encode(), b"<asked>", 1)
            os.write(master, answer.encode() + b"\n")
        return proc.wait(timeout=60), seen.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


@pytest.mark.asyncio
async def test_users_create_prompts_for_a_hidden_confirmed_password(
    ctx: Context, client: httpx.AsyncClient, database_url: str
) -> None:
    """On a terminal, `users create` asks for the password twice without echoing it; a mismatch is
    asked again, and the user logs in with the confirmed password."""
    code, screen = _answer_prompts(
        ["users", "create", "--email", "tty@example.com"], {"DATABASE_URL": database_url},
        [("Password: ", "something-else-entirely-42"),
         ("Repeat for confirmation: ", "does-not-match-at-all-42"),
         ("Password: ", PASSWORD), ("Repeat for confirmation: ", PASSWORD)])
    assert code == 0, screen
    assert "created tty@example.com" in screen
    assert PASSWORD not in screen and "something-else" not in screen  # never echoed
    await login(client, "tty@example.com")


@pytest.mark.asyncio
async def test_set_password_from_stdin_then_login_and_sessions_revoked(
    ctx: Context, client: httpx.AsyncClient, alice: Any, database_url: str
) -> None:
    """`users set-password EMAIL --password-stdin` sets a password that logs in, revokes every
    session like a password change, and is audited password.changed with a null actor."""
    old = await login(client)
    new_password = "a-whole-new-passphrase-7"
    result = cli(database_url, "users", "set-password", "alice@example.com", "--password-stdin",
                 stdin=new_password + "\n")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.strip() == "password of alice@example.com set; 1 session(s) revoked"
    assert await live_sessions(ctx, alice.id) == 0
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": old["refresh_token"]})
    assert (r.status_code, r.json()["code"]) == (401, "session_revoked")
    r = await client.post("/api/v1/auth/login",
                          json={"email": "alice@example.com", "password": PASSWORD})
    assert r.status_code == 401
    await login(client, password=new_password)
    (event,) = await events(ctx, "password.changed")
    assert (event.user_id, event.data["target_user_id"], event.data["revoked_sessions"]) == (
        None, alice.id, 1)
    assert new_password not in json.dumps(event.data)


@pytest.mark.asyncio
async def test_set_password_prompts_on_a_terminal(
    ctx: Context, client: httpx.AsyncClient, alice: Any, database_url: str
) -> None:
    """On a terminal, `users set-password EMAIL` asks twice without echoing, and the new password
    logs in."""
    new_password = "typed-at-the-terminal-99"
    code, screen = _answer_prompts(
        ["users", "set-password", "alice@example.com"], {"DATABASE_URL": database_url},
        [("Password: ", new_password), ("Repeat for confirmation: ", new_password)])
    assert code == 0, screen
    assert new_password not in screen
    await login(client, password=new_password)


# -- cache clear ----------------------------------------------------------------------------------


def test_cache_clear_without_redis_says_there_is_nothing_to_clear(tmp_path: Path) -> None:
    """Without REDIS_URL, `cache clear` does not claim success: exit 1 and one line saying the
    in-process cache lives in each server process."""
    result = cli(f"sqlite:///{tmp_path / 'g.db'}", "cache", "clear")
    assert_one_line_failure(result, "REDIS_URL is not set: nothing to clear",
                            "in-process cache lives in each server process")
    assert "cleared" not in result.stdout


@pytest.mark.asyncio
async def test_cache_clear_with_redis_deletes_only_gatehouse_counters(database_url: str) -> None:
    """With Redis, `cache clear` deletes Gatehouse's counters and leaves every other key of a
    shared Redis alone (never FLUSHDB)."""
    kv = RedisKV(REDIS_URL, "gh:")  # the default GATEHOUSE_REDIS_PREFIX
    try:
        await kv.set("lf:alice@example.com:203.0.113.7", "3")
        await kv.set("LIMITS:LIMITER/ip/1/minute", "9")
        await kv.set("another-app:session:1", "keep me")
        result = cli(database_url, "cache", "clear", REDIS_URL=REDIS_URL)
        assert result.returncode == 0, result.stderr
        assert "cache cleared" in result.stdout
        assert await kv.get("lf:alice@example.com:203.0.113.7") is None
        assert await kv.get("LIMITS:LIMITER/ip/1/minute") is None
        assert await kv.get("another-app:session:1") == "keep me"
    finally:
        await kv.delete("another-app:session:1")
        await kv.close()
