"""`gatehouse users`, `gatehouse sessions` and `gatehouse cache`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gatehouse.audit.service import CLI, record
from gatehouse.cli import first_admin
from gatehouse.cli.common import err, fail, out, settings_or_exit, with_context
from gatehouse.errors import NotFound
from gatehouse.store.db.models import User
from gatehouse.users import importer
from gatehouse.users import service as users
from gatehouse.users.set_password import set_password

if TYPE_CHECKING:
    from gatehouse.context import Context

app = typer.Typer(help="Manage users.", no_args_is_help=True)
sessions_app = typer.Typer(help="Manage sessions.", no_args_is_help=True)
cache_app = typer.Typer(help="Manage the key-value cache.", no_args_is_help=True)


async def _by_email(ctx: Context, email: str) -> User:
    user = await ctx.accounts.user_by_email(email)
    if user is None:
        raise NotFound(f"no user with email {email}")
    return user


STDIN_HELP = "Read the password from the first line of standard input."


@app.command("create")
def create(
    email: str = typer.Option(..., help="Email address (normalised)."),
    password: str | None = typer.Option(
        None, help="Deprecated: visible in the process list and shell history; "
                   "omit it to be prompted, or use --password-stdin."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help=STDIN_HELP),
    name: str = typer.Option("", help="Display name."),
    role: list[str] = typer.Option(["user"], "--role", help="Role; repeat for several."),
    email_verified: bool = typer.Option(
        False, "--email-verified", help="The address is known to be the user's (API.md §8)."),
) -> None:
    """Create a user; the password is prompted for (hidden, twice) or read with --password-stdin."""
    if password is not None:
        if password_stdin:
            fail("give the password with --password or --password-stdin, not both", code=2)
        # Kept because API.md §5 lists it; argv is readable by every local user (ps, /proc).
        err.print("warning: --password is visible in the process list and shell history; "
                  "omit it to be prompted, or use --password-stdin")
    secret = password if password is not None else read_password(password_stdin)
    settings = settings_or_exit()

    async def work(ctx: Context) -> User:
        return await ctx.accounts.create(email=email, password=secret, name=name, roles=role,
                                         actor=CLI, email_verified=email_verified)

    user = with_context(settings, work)
    out.print(f"created {user.email} ({user.id}) roles: {', '.join(user.roles)}")


@app.command("set-password")
def set_password_(
    email: str,
    password_stdin: bool = typer.Option(False, "--password-stdin", help=STDIN_HELP),
) -> None:
    """Set a user's password (prompted for, hidden, twice) and revoke all its sessions."""
    password = read_password(password_stdin)
    settings = settings_or_exit()

    async def work(ctx: Context) -> tuple[User, int]:
        user = await _by_email(ctx, email)
        return user, await set_password(ctx.accounts, user, password, CLI)

    user, revoked = with_context(settings, work)
    first_admin.forget(user.id)  # `serve --dev` must not reset a password someone chose
    out.print(f"password of {user.email} set; {revoked} session(s) revoked")


@app.command("list")
def list_(q: str = typer.Option(None, help="Substring of email or name."),
          limit: int = typer.Option(200, min=1, max=10_000)) -> None:
    """List users."""
    async def work(ctx: Context) -> list[User]:
        rows: list[User] = []
        cursor = None
        async with ctx.db() as db:
            while len(rows) < limit:
                page, cursor = await users.list_users(db, q=q, limit=min(200, limit - len(rows)),
                                                      cursor=cursor)
                rows += page
                if cursor is None:
                    break
        return rows

    rows = with_context(settings_or_exit(), work)
    header = ("email", "name", "roles", "disabled", "created", "id")
    cells = [(u.email, u.name, ",".join(u.roles), "yes" if u.disabled else "",
              users.rfc3339(u.created_at), u.id) for u in rows]
    if not out.is_terminal:
        # Piped or redirected: whole values, tab-separated, so scripts can use them
        # (a Rich table would be cut to 80 columns and ellipsise emails and ids).
        for line in (header, *cells):
            print("\t".join(v.replace("\t", " ") for v in line))
        return
    table = Table(*header)
    for cell in cells:
        table.add_row(*cell)
    out.print(table)


@app.command("set-role")
def set_role(email: str, roles: list[str] = typer.Argument(..., help="The complete new role list.")) -> None:
    """Replace a user's roles (tokens issued before answer token_expired within 1 s)."""
    async def work(ctx: Context) -> User:
        return await ctx.accounts.set_roles((await _by_email(ctx, email)).id, roles, CLI)

    user = with_context(settings_or_exit(), work)
    out.print(f"{user.email} roles: {', '.join(user.roles)}")


@app.command("disable")
def disable(email: str) -> None:
    """Disable a user and revoke every session."""
    async def work(ctx: Context) -> None:
        await ctx.accounts.admin_update((await _by_email(ctx, email)).id, {"disabled": True}, CLI)

    with_context(settings_or_exit(), work)
    out.print(f"{email} disabled; sessions revoked")


@app.command("unlock")
def unlock(email: str) -> None:
    """Clear login throttling for an account."""
    async def work(ctx: Context) -> None:
        await ctx.accounts.unlock((await _by_email(ctx, email)).id, CLI)

    with_context(settings_or_exit(), work)
    out.print(f"{email} unlocked")


@app.command("reset-mfa")
def reset_mfa(email: str) -> None:
    """Turn off a user's second factor (lost phone); they set it up again after signing in."""
    async def work(ctx: Context) -> bool:
        user = await _by_email(ctx, email)
        await ctx.mfa.reset(user.id, CLI, holder=None)
        return user.mfa_enabled

    was_on = with_context(settings_or_exit(), work)
    out.print(f"{email}: two-step verification turned off" if was_on
              else f"{email}: two-step verification was not on; nothing to turn off")


@app.command("import")
def import_(
    file: Path = typer.Argument(..., help="JSON array or CSV (email,name,password_hash,roles)."),
    skip_existing: bool = typer.Option(
        False, "--skip-existing", help="Skip rows whose email exists instead of importing nothing."),
) -> None:
    """Import users with bcrypt/argon2 hashes; all rows or none."""
    settings = settings_or_exit()
    if not file.is_file():
        fail(f"{file} does not exist")

    async def work(ctx: Context) -> importer.ImportReport:
        rows, problems = importer.parse_file(file)
        if problems:
            _refuse(problems, "invalid row(s)")
        try:
            with Progress(TextColumn("importing"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=err, transient=True) as bar:
                task = bar.add_task("import", total=len(rows))
                return await importer.import_users(ctx.db, rows, CLI, skip_existing=skip_existing,
                                                   progress=lambda n: bar.advance(task, n))
        except importer.ExistingEmails as exc:
            _refuse(exc.lines, "row(s) with existing emails (--skip-existing skips them)")

    report = with_context(settings, work)
    out.print(f"imported {report.imported}, skipped {report.skipped} (already exist), invalid 0")


def _refuse(problems: list[tuple[int, str]], what: str) -> NoReturn:
    for line, why in problems[:20]:
        err.print(f"line {line}: {why}")
    if len(problems) > 20:
        err.print(f"... and {len(problems) - 20} more")
    fail(f"{len(problems)} {what}; nothing was imported")


@sessions_app.command("revoke-all")
def revoke_all(user: str = typer.Option(None, "--user", help="Only this user's (email).")) -> None:
    """Emergency logout: revoke every session (or one user's)."""
    async def work(ctx: Context) -> int:
        if user:
            return await ctx.accounts.revoke_all((await _by_email(ctx, user)).id, CLI)
        async with ctx.db.begin() as db:
            # Also the global not-before: tokens whose session row is gone are refused too.
            ids = await ctx.sessions.revoke_everyone(db, reason="admin")
            await record(db, "sessions.revoked_all", CLI, count=len(ids), scope="all")
        await ctx.sessions.publish_revocation(ids, "admin")
        # Posted when the context closes (Alerts.close), before the command exits.
        ctx.alerts.emit("revoke_all", scope="all users", actor="cli", sessions=len(ids))
        return len(ids)

    count = with_context(settings_or_exit(), work)
    out.print(f"revoked {count} session(s)")


# Gatehouse's own keys in Redis (throttle, lockout, replay memory, the limits library's
# counters): the only ones `cache clear` deletes, each under GATEHOUSE_REDIS_PREFIX (the
# key-value store adds it; SCAN MATCH, never FLUSHDB), so another deployment's keys and the
# rest of a shared Redis stay.
CLEARED_PREFIXES = ("lf:", "ll:", "le:", "li:", "sig:", "LIMITS:")


@cache_app.command("clear")
def clear() -> None:
    """Clear rate-limit and throttle counters in Redis (revocations are rebuilt)."""
    settings = settings_or_exit()
    if not settings.redis_url:
        # Without Redis each server keeps its counters in its own memory: nothing here can
        # reach them, and saying "cleared" would be a lie.
        fail("REDIS_URL is not set: nothing to clear (the in-process cache lives in each server "
             "process; restart it, or use `gatehouse users unlock EMAIL` for one account)")

    async def work(ctx: Context) -> int:
        try:  # Redis itself: the cache fallback would otherwise "clear" this process's memory
            await ctx.kv.ping()
        except Exception as exc:  # noqa: BLE001 - any failure to reach Redis is one line
            fail(f"cannot reach Redis ({type(exc).__name__}); check REDIS_URL")
        deleted = 0
        for prefix in CLEARED_PREFIXES:
            deleted += await ctx.kv.delete_prefix(prefix)
        async with ctx.db() as db:
            await ctx.revocations.warm_up(db)
        return deleted

    deleted = with_context(settings, work)
    out.print(f"cache cleared: {deleted} key(s) deleted from Redis")


def read_password(from_stdin: bool) -> str:
    """The password from standard input's first line, or a hidden prompt asked twice."""
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            fail("--password-stdin: standard input holds no password", code=2)
        return line
    if not sys.stdin.isatty():
        fail("no terminal to prompt for the password: pipe it with --password-stdin", code=2)
    value: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    return value
