"""Authentication: passwords, access tokens, sessions and refresh rotation, API keys, RBAC."""
