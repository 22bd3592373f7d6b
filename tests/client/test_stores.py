"""Token stores: one conformance suite for every backend, plus file-specific guarantees."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keyring
import keyring.backend
import keyring.errors
import pytest

from gatehouse.client import (
    FileTokenStore,
    KeyringTokenStore,
    MemoryTokenStore,
    TokenSet,
    TokenStore,
)

SRC = Path(__file__).resolve().parents[2] / "src"


class InMemoryKeyring(keyring.backend.KeyringBackend):
    """A keyring backend that keeps passwords in a dict (no OS keychain in CI)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.entries.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError("not found")


@pytest.fixture
def memory_keyring() -> Iterator[InMemoryKeyring]:
    """Install an in-memory keyring backend for the duration of a test."""
    previous = keyring.get_keyring()
    backend = InMemoryKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


@pytest.fixture(params=["memory", "file", "keyring"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> TokenStore:
    """Each token store backend, empty."""
    if request.param == "memory":
        return MemoryTokenStore()
    if request.param == "file":
        return FileTokenStore(tmp_path / "tokens.json")
    request.getfixturevalue("memory_keyring")
    return KeyringTokenStore("gatehouse-test", "ada")


def sample(n: int = 1) -> TokenSet:
    return TokenSet(
        access_token=f"at-{n}",
        refresh_token=f"rt-{n}",
        expires_in=900,
        obtained_at=1_700_000_000.0 + n,
        refresh_expires_in=86400,
        session_id="s1",
        user={"email": "ada@example.com"},
    )


def test_store_starts_empty_and_round_trips(store: TokenStore) -> None:
    """Every store starts logged out and returns what was saved."""
    assert store.load() is None
    store.save(sample())
    assert store.load() == sample()


def test_store_save_replaces_and_clear_forgets(store: TokenStore) -> None:
    """Every store replaces on save, forgets on clear, and tolerates clearing twice."""
    store.save(sample(1))
    store.save(sample(2))
    loaded = store.load()
    assert loaded is not None and loaded.refresh_token == "rt-2"
    store.clear()
    store.clear()
    assert store.load() is None


def test_store_is_a_token_store_with_a_usable_lock(store: TokenStore) -> None:
    """Every backend satisfies the TokenStore protocol and its lock can be entered."""
    assert isinstance(store, TokenStore)
    with store.lock():
        store.save(sample())


def test_file_is_private_and_json(tmp_path: Path) -> None:
    """The token file and its lock file are mode 0600 and the tokens are plain JSON."""
    path = tmp_path / "new-dir" / "tokens.json"
    store = FileTokenStore(path)
    store.save(sample())
    with store.lock():
        pass
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(str(path) + ".lock").st_mode) == 0o600
    assert json.loads(path.read_text())["refresh_token"] == "rt-1"


def test_file_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A save that fails midway leaves the previous tokens intact and no temporary file."""
    path = tmp_path / "tokens.json"
    store = FileTokenStore(path)
    store.save(sample(1))

    def crash(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        store.save(sample(2))
    monkeypatch.undo()
    assert FileTokenStore(path).load() == sample(1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokens.json"]


def test_file_saved_elsewhere_is_seen(tmp_path: Path) -> None:
    """A store re-reads the file when another store (process) has replaced it."""
    path = tmp_path / "tokens.json"
    ours, theirs = FileTokenStore(path), FileTokenStore(path)
    ours.save(sample(1))
    assert ours.load() == sample(1)
    theirs.save(sample(2))
    assert ours.load() == sample(2)
    theirs.clear()
    assert ours.load() is None


@pytest.mark.parametrize("content", ["", "{not json", "[]", '{"access_token": 1}'])
def test_corrupt_file_reads_as_logged_out(tmp_path: Path, content: str) -> None:
    """An unreadable token file means "no session" rather than a crash."""
    path = tmp_path / "tokens.json"
    path.write_text(content)
    assert FileTokenStore(path).load() is None


def test_keyring_store_writes_to_the_keyring(memory_keyring: InMemoryKeyring) -> None:
    """KeyringTokenStore keeps the tokens as JSON under its service and username."""
    KeyringTokenStore("svc", "ada").save(sample())
    raw = memory_keyring.entries[("svc", "ada")]
    assert json.loads(raw)["access_token"] == "at-1"


def test_keyring_store_can_share_a_file_lock(
    memory_keyring: InMemoryKeyring, tmp_path: Path
) -> None:
    """KeyringTokenStore(lock_path=...) uses a real cross-process file lock."""
    lock = KeyringTokenStore("svc", "ada", lock_path=tmp_path / "k.lock").lock()
    with lock:
        assert (tmp_path / "k.lock").exists()


def test_keyring_is_an_optional_dependency() -> None:
    """Without keyring installed, the package imports and only KeyringTokenStore() fails."""
    code = (
        "import sys; sys.modules['keyring'] = None\n"
        "import gatehouse.client as c\n"
        "try:\n    c.KeyringTokenStore()\nexcept ImportError as e:\n    print('ImportError', e)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert out.startswith("ImportError KeyringTokenStore needs the optional 'keyring' package")
