"""The one-hop SQLite driver under failure: no stray thread errors after the loop ends."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gatehouse.store.db.sqlite_onehop import OneHopConnection, creator


def test_a_database_that_cannot_be_opened_leaves_no_thread_answering_a_closed_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed open stops its worker thread before raising, so closing the loop right after is safe.

    Before the fix the worker thread answered the stop request into the closed loop
    and died with "Event loop is closed", which pytest reported on a later test.
    """
    thread_errors: list[BaseException | None] = []
    stop = OneHopConnection.stop

    def slow_stop(self: OneHopConnection) -> Any:
        # A busy machine: the worker thread gets to the stop request only later.
        self._tx.put_nowait((None, lambda: time.sleep(0.2)))
        return stop(self)

    monkeypatch.setattr(OneHopConnection, "stop", slow_stop)
    monkeypatch.setattr(threading, "excepthook", lambda args: thread_errors.append(args.exc_value))
    before = set(threading.enumerate())
    connect = creator(str(tmp_path / "missing-dir" / "gatehouse.db"), timeout=1)

    for _ in range(3):
        loop = asyncio.new_event_loop()
        try:
            with pytest.raises(sqlite3.OperationalError):
                loop.run_until_complete(connect())
        finally:
            loop.close()

    workers: list[Any] = [t for t in threading.enumerate() if t not in before]
    for worker in workers:
        worker.join(timeout=5)
    assert [w for w in workers if w.is_alive()] == []
    assert thread_errors == []
