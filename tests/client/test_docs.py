"""Every Python example in docs/sdk.md runs as written (here against the fake server)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import FakeGatehouse

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "sdk.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_the_guide_has_examples() -> None:
    """docs/sdk.md has runnable examples for sync, async, stores, httpx, errors and retries."""
    text = "\n".join(BLOCKS)
    assert len(BLOCKS) >= 7
    for needle in ("AsyncClient", "FileTokenStore", "GatehouseAuth", "RetryPolicy", "Forbidden"):
        assert needle in text


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_runs(live_server: tuple[str, FakeGatehouse], index: int) -> None:
    """The example exits 0 using GATEHOUSE_URL, GATEHOUSE_EMAIL and GATEHOUSE_PASSWORD."""
    url, fake = live_server
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "GATEHOUSE_URL": url,
        "GATEHOUSE_EMAIL": fake.email,
        "GATEHOUSE_PASSWORD": fake.password,
    }
    result = subprocess.run(
        [sys.executable, "-c", BLOCKS[index]],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
