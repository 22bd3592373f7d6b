"""Persistence: the relational database (`db`) and the key-value store (`kv`)."""
