"""`serve --workers N`: /metrics answers the sum over all workers (API.md §7, issue 12)."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import REDIS_URL, Server

METRICS_TOKEN = "metrics-scrape-token-for-worker-tests"
ROUTE = "/api/v1/users/profile"


@pytest.fixture
def backend() -> str:
    """Several workers is the PostgreSQL + Redis deployment."""
    return "postgresql"


def scrape(server: Server) -> str:
    # A new connection per scrape, so any of the workers may answer it.
    return httpx.get(f"{server.url}/metrics", timeout=10,
                     headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text


def total(text: str, name: str, route: str | None = None) -> float:
    values = [float(m.group(2)) for m in re.finditer(rf"^{name}(\{{[^}}]*\}})? ([0-9.e+]+)$", text, re.M)
              if route is None or f'route="{route}"' in (m.group(1) or "")]
    assert values, f"{name} missing"
    return sum(values)


def worker_pids(pid: int) -> list[int]:
    """The uvicorn workers `serve --workers N` (pid) started (spawned interpreters)."""
    children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
                for c in (task / "children").read_text().split()]
    return [c for c in children if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]


def environ(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


def test_four_workers_metrics_add_up(
    make_server: Callable[..., Server], tmp_path: Path,
) -> None:
    """A 4-worker server: whichever worker answers /metrics, the request counter equals the
    requests sent over separate connections and never goes backwards, the pool-size gauge sums
    the four workers' pools, and the metric files are removed when the server stops."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    server = make_server(workers=4, REDIS_URL=REDIS_URL, GATEHOUSE_METRICS_TOKEN=METRICS_TOKEN,
                         GATEHOUSE_REDIS_PREFIX=f"w{uuid.uuid4().hex[:8]}:",
                         GATEHOUSE_DB_POOL_SIZE=3, TMPDIR=str(tmp))
    assert [p.name for p in tmp.iterdir() if p.name.startswith("gatehouse-metrics-")]
    # Each worker hashes passwords on its share of the cores, not on all of them.
    assert server.proc is not None
    workers = worker_pids(server.proc.pid)
    assert len(workers) == 4, workers
    share = max(1, len(os.sched_getaffinity(0)) // 4)
    for pid in workers:
        assert f"GATEHOUSE_HASH_WORKERS={share}".encode() in environ(pid)
    seen: list[float] = []
    sent = 0
    for batch in (20, 10):
        for _ in range(batch):
            assert httpx.get(f"{server.url}{ROUTE}", timeout=10).status_code == 401
        sent += batch
        for _ in range(4):
            text = scrape(server)
            seen.append(total(text, "gatehouse_http_requests_total", ROUTE))
            assert seen[-1] == sent, seen
            assert total(text, "gatehouse_db_pool_size") == 12
            assert total(text, "gatehouse_cache_fallback_active") == 0
    server.stop()
    assert [p.name for p in tmp.iterdir() if p.name.startswith("gatehouse-metrics-")] == []


def test_request_series_count_every_request_past_the_kept_label_sets() -> None:
    """observe_request keeps each label set's children; a flood of odd methods past the cap
    is still counted, each request once, in both series."""
    from gatehouse.ops.metrics import _MAX_REQUEST_CHILDREN, Metrics

    metrics = Metrics()
    for _ in range(3):
        metrics.observe_request("GET", "/api/v1/users/profile", 200, 0.002)
    odd = [f"M{i}" for i in range(_MAX_REQUEST_CHILDREN + 50)]
    for method in odd + odd:
        metrics.observe_request(method, "unmatched", 405, 0.001)

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert value("gatehouse_http_requests_total", method="GET", route="/api/v1/users/profile",
                 status="200") == 3
    assert value("gatehouse_http_request_duration_seconds_count", method="GET",
                 route="/api/v1/users/profile") == 3
    for method in (odd[0], odd[-1]):  # one kept, one past the cap
        assert value("gatehouse_http_requests_total", method=method, route="unmatched",
                     status="405") == 2
        assert value("gatehouse_http_request_duration_seconds_count", method=method,
                     route="unmatched") == 2
