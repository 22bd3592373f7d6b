"""The first admin of `serve --dev`: created after every start-up check passed, its
password printed once the server listens, and never lost to a start that failed.

A password is shown once and never stored. Until it has been shown, the new admin's
id waits in `.gatehouse/first-admin.pending` (an id, no secret): the next
`serve --dev` gives that admin a fresh password and prints it, so a start that
failed after the admin was created (the port taken meanwhile, the app crashing)
leaves no account nobody can sign in to.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gatehouse.audit.service import CLI

if TYPE_CHECKING:
    from gatehouse.context import Context

PENDING = Path(".gatehouse") / "first-admin.pending"
EMAIL = "admin@example.com"


@dataclass(frozen=True)
class Credentials:
    email: str
    password: str
    reset: bool  # an admin whose password was never shown got a new one


def _pending_id() -> str | None:
    try:
        return PENDING.read_text().strip() or None
    except OSError:
        return None


def _remember(user_id: str) -> None:
    PENDING.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(PENDING, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(user_id + "\n")


def shown() -> None:
    """The password is on the terminal: nothing is pending any more."""
    PENDING.unlink(missing_ok=True)


def forget(user_id: str) -> None:
    """An operator set this user's password: a later `serve --dev` must not reset it."""
    if _pending_id() == user_id:
        shown()


async def dev_admin(ctx: Context) -> Credentials | None:
    """Create the first admin of an empty database, or renew the password of the one
    whose password was never shown; None when there is nothing to print."""
    from gatehouse.store.db.models import User
    from gatehouse.users.service import count_users
    from gatehouse.users.set_password import set_password

    password = secrets.token_urlsafe(18)
    pending = _pending_id()
    async with ctx.db() as db:
        empty = not await count_users(db)
        user = None if empty or pending is None else await db.get(User, pending)
    if empty:
        # Verified: nobody can receive mail at example.com, and with
        # GATEHOUSE_REQUIRE_VERIFIED_EMAIL=1 an unverified first admin could never sign in.
        created = await ctx.accounts.create(email=EMAIL, password=password, name="Administrator",
                                            roles=["admin"], actor=CLI, email_verified=True)
        _remember(created.id)
        return Credentials(created.email, password, reset=False)
    if user is None:
        if pending is not None:
            shown()  # another database, or the user is gone: nothing to show
        return None
    await set_password(ctx.accounts, user, password, CLI)
    return Credentials(user.email, password, reset=True)
