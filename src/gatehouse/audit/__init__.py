"""Audit trail of security events (API.md §4 event types)."""
