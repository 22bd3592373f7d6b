"""The last browser error reports, kept in memory for the console's Operations page.

A per-process ring buffer: with several workers each keeps the reports it received
(the logs, event `client_error`, hold all of them). Nothing here outlives a restart.
Page addresses are kept without query or fragment, which can carry tokens.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

KEEP = 50


def page_url(url: str | None) -> str | None:
    """A reported page address fit to log or keep: no query, fragment or user:password@
    (any of them can carry a token); None when it is no URL at all."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]  # userinfo: credentials, never logged
    except ValueError:
        return None
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class RecentClientErrors:
    """The newest KEEP reports, newest first when listed."""

    def __init__(self, keep: int = KEEP) -> None:
        self._items: deque[dict[str, Any]] = deque(maxlen=keep)

    def add(self, *, message: str, url: str | None, request_id: str | None) -> None:
        self._items.append({
            "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "message": message[:500],
            "url": page_url(url),
            "request_id": request_id,
        })

    def newest_first(self) -> list[dict[str, Any]]:
        return list(reversed(self._items))


def recent_client_errors(state: Any) -> RecentClientErrors:
    """The app's buffer (on `app.state`), made on first use."""
    found = getattr(state, "recent_client_errors", None)
    if found is None:
        found = RecentClientErrors()
        state.recent_client_errors = found
    return found
