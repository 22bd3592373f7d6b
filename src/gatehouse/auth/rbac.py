"""Roles and permissions (API.md §4, fixed defaults)."""

from __future__ import annotations

from collections.abc import Iterable

from gatehouse.errors import PermissionDenied

ALL_PERMISSIONS = frozenset(
    {"users:read", "users:write", "sessions:revoke", "audit:read", "ops:read", "api_keys:manage"}
)

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": ALL_PERMISSIONS,
    "operator": frozenset({"users:read", "users:write", "sessions:revoke", "audit:read", "ops:read"}),
    "support": frozenset({"users:read", "audit:read"}),
    "user": frozenset(),
}

ROLES = frozenset(ROLE_PERMISSIONS)


def permissions_for(roles: Iterable[str]) -> frozenset[str]:
    """Union of the permissions of known roles; unknown role names grant nothing."""
    out: frozenset[str] = frozenset()
    for role in roles:
        out |= ROLE_PERMISSIONS.get(role, frozenset())
    return out


# -- no one grants more than they hold (API.md §4, 2026-12-02) ---------------------------------
#
# `holder` is the caller's permissions: a user token's roles, or an API key's effective scopes
# (its scopes that its creator still holds). `None` is the CLI, a shell on the server, which
# may do everything. The MFA-reset route and any future route that changes a user call these.


def ensure_holds(holder: frozenset[str] | None, permissions: Iterable[str], what: str) -> None:
    """403 `forbidden` unless `holder` holds every one of `permissions`."""
    if holder is None:
        return
    missing = sorted(set(permissions) - holder)
    if missing:
        raise PermissionDenied(f"{what} needs permissions you do not hold: {', '.join(missing)}.")


def ensure_may_grant(holder: frozenset[str] | None, roles: Iterable[str]) -> None:
    """Setting `roles` on anyone (a new user, another user, oneself) needs all their permissions."""
    roles = sorted(set(roles))
    ensure_holds(holder, permissions_for(roles), f"Granting the role(s) {', '.join(roles)}")


def ensure_may_act_on(holder: frozenset[str] | None, target_roles: Iterable[str]) -> None:
    """Changing, disabling, deleting, unlocking, revoking the sessions of or resetting the second
    factor of a user needs every permission that user holds (an operator cannot touch an admin)."""
    ensure_holds(holder, permissions_for(target_roles), "Acting on this user")
