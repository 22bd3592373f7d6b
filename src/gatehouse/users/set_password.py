"""An operator sets a user's password (`gatehouse users set-password`, the dev admin's reset).

Unlike a user's own change (`AccountService.change_password`) no current password is
asked: whoever runs it already holds the database. Everything else is the same: the
API's password policy, every session of the user revoked, `password.changed` audited
(with `user_id` null, the CLI, and the user in `target_user_id`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gatehouse.audit.service import Actor, record
from gatehouse.notify.dispatch.events import notify_after_commit
from gatehouse.users import service as users

if TYPE_CHECKING:
    from gatehouse.store.db.models import User
    from gatehouse.users.accounts import AccountService


async def set_password(accounts: AccountService, user: User, password: str, actor: Actor) -> int:
    """Replace `user`'s password and revoke its sessions; returns how many were revoked."""
    accounts.check_password(password, email=user.email, name=user.name)
    new_hash = await accounts.hasher.hash(password)
    async with accounts.db.begin() as db:
        await users.set_password_hash(db, user.id, new_hash)
        ids = await accounts.sessions.revoke(db, user_id=user.id, reason="password_change")
        await record(db, "password.changed", actor, target_user_id=user.id,
                     revoked_sessions=len(ids))
        notify_after_commit(db, user.id, "password.changed")
    accounts.cache.evict(user.id)
    # After the commit, like every revocation (database first: fail closed).
    await accounts.sessions.publish_revocation(ids, "password_change")
    return len(ids)
