"""Roles and permissions (API.md §4, fixed defaults)."""

from __future__ import annotations

from collections.abc import Iterable

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
