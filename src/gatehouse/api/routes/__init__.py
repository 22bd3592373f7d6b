"""Routers, one per area of API.md §4."""
