"""Gatehouse: self-hosted authentication and API-token service."""

__version__ = "0.1.0"
