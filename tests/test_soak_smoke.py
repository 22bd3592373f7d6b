"""CI's soak smoke (issue 15): bench/soak.py for 60 s against a real `gatehouse serve`.

The one test allowed to run a minute: memory leaks and errors that only show under a
sustained mix (sessions piling up, revocations, refresh rotation) need time to show.
It asserts behaviour, not speed: zero failed requests and RSS within 5 % of its value
at the end of warm-up. The verdict's arithmetic is checked on its own, quickly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.append(str(BENCH))  # bench/ is a folder of scripts, not a package

from soak_report import rss_verdict  # noqa: E402

MIX = {"login", "profile", "validate", "sessions", "refresh", "logout", "apikey_list",
       "apikey_get"}


@pytest.mark.slow
def test_soak_sixty_seconds_has_no_errors_and_no_memory_growth(tmp_path: Path) -> None:
    """A minute of logins, reads, single-flight refreshes, logouts and API-key calls against a
    real server: every request succeeds and RSS does not grow past the 5 % bound."""
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, str(BENCH / "soak.py"), "--duration", "60", "--port", str(free_port()),
         "--datadir", str(tmp_path / "data"), "--outdir", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    results = sorted(out.glob("soak-sqlite-*.json"))
    assert len(results) == 1, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(results[0].read_text())
    assert res["totals"]["errors"] == 0, res["errors_by_kind"]
    assert res["rss_verdict"]["ok"], res["rss_verdict"]
    assert set(res["operations"]) == MIX  # the whole mix ran, refreshes and logouts included
    assert r.returncode == 0, r.stdout[-3000:]
    assert results[0].with_suffix(".svg").read_text().startswith("<svg")


def test_rss_verdict_flags_growth_after_warmup_only() -> None:
    """Growth that settles within warm-up passes; 8 % more RSS in the last quarter fails."""
    warming = [(t, 100_000 + 2_000 * t) for t in range(10)] + [(t, 120_000) for t in range(10, 60)]
    leaking = [(t, 120_000) for t in range(45)] + [(t, 129_600) for t in range(45, 60)]
    assert rss_verdict(warming, 60)["ok"]
    growth = rss_verdict(leaking, 60)
    assert (growth["ok"], growth["growth_pct"]) == (False, 8.0)


def test_rss_verdict_ignores_a_hash_in_flight_but_not_a_raised_floor() -> None:
    """A sample taken while argon2's 19 MiB buffer is mapped (a login in flight) is not a
    leak; the same 19 MiB held from then on is. Samples every 0.5 s, as soak.py takes them."""
    steady = [(i / 2, 120_000) for i in range(120)]
    spiky = [(t, kb + 19_456 if i % 7 == 3 else kb) for i, (t, kb) in enumerate(steady)]
    held = [(t, kb + (19_456 if t >= 50 else 0)) for t, kb in steady]
    verdict = rss_verdict(spiky, 60)
    assert verdict["ok"] and verdict["peak_kb"] == 139_456
    assert not rss_verdict(held, 60)["ok"]
