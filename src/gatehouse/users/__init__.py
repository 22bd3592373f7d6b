"""User accounts: creation, profile, roles, disabling, listing."""
