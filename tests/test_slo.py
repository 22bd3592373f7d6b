"""`gatehouse slo check`: DESIGN.md targets from /metrics; exit 0 met, 1 breached, 2 unreadable."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from gatehouse.context import Context
from gatehouse.ops.metrics import Metrics
from gatehouse.ops.slo import MetricsUnavailable, evaluate, histogram_quantile, metrics_url
from gatehouse.settings import Settings
from tests.conftest import PASSWORD, Server, create_user, free_port, run_cli

METRICS_TOKEN = "slo-scrape-token-for-tests"
NAMES = ["error_rate", "login_success", "refresh_latency_avg_ms", "api_latency_p95_ms"]


def checks_of(metrics: Metrics) -> dict[str, Any]:
    return {c.name: c for c in evaluate(metrics.render().decode())}


def assert_one_line_failure(result: subprocess.CompletedProcess[str], code: int) -> None:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# -- the arithmetic, from real prometheus_client output -------------------------------------


def test_idle_server_passes_with_nothing_measured() -> None:
    """With no requests, logins or refreshes every objective is ok and measured is None."""
    checks = checks_of(Metrics())
    assert list(checks) == NAMES
    assert [(c.ok, c.measured) for c in checks.values()] == [(True, None)] * 4


def test_error_rate_counts_only_5xx() -> None:
    """401s and 404s are not server errors; 2 of 1000 answers as 5xx breach the 0.1 % target."""
    metrics = Metrics()
    metrics.http_requests.labels("GET", "/api/v1/users/profile", "200").inc(900)
    metrics.http_requests.labels("GET", "/api/v1/users/profile", "401").inc(98)
    error_rate = checks_of(metrics)["error_rate"]
    assert (error_rate.measured, error_rate.ok) == (0.0, True)
    metrics.http_requests.labels("POST", "/api/v1/auth/refresh", "503").inc(2)
    error_rate = checks_of(metrics)["error_rate"]
    assert (error_rate.measured, error_rate.ok) == (0.002, False)


def test_login_success_ignores_wrong_passwords_and_throttling() -> None:
    """Wrong passwords and throttled attempts are left out; a disabled account is a failure."""
    metrics = Metrics()
    metrics.logins.labels("success").inc(1999)
    metrics.logins.labels("invalid_credentials").inc(500)
    metrics.logins.labels("throttled").inc(40)
    assert checks_of(metrics)["login_success"].ok is True
    metrics.logins.labels("disabled").inc(1)
    login = checks_of(metrics)["login_success"]
    assert (login.measured, login.ok) == (1999 / 2000, True)
    metrics.logins.labels("disabled").inc(2)
    login = checks_of(metrics)["login_success"]
    assert (login.measured, login.ok) == (1999 / 2002, False)


def test_login_success_counts_a_second_factor_login_once() -> None:
    """A login through the second factor (mfa_required, then success) is one successful login."""
    metrics = Metrics()
    metrics.logins.labels("mfa_required").inc(1000)
    metrics.logins.labels("success").inc(1000)
    login = checks_of(metrics)["login_success"]
    assert (login.measured, login.ok) == (1.0, True)


def test_refresh_latency_is_the_average_in_ms() -> None:
    """Refreshes of 20 and 40 ms average 30 ms, inside the 100 ms target; 150 ms ones breach it."""
    metrics = Metrics()
    metrics.refresh_duration.observe(0.020)
    metrics.refresh_duration.observe(0.040)
    refresh = checks_of(metrics)["refresh_latency_avg_ms"]
    assert (refresh.measured, refresh.ok) == (30.0, True)
    for _ in range(8):
        metrics.refresh_duration.observe(0.150)
    refresh = checks_of(metrics)["refresh_latency_avg_ms"]
    assert (refresh.measured, refresh.ok) == (126.0, False)


def test_api_p95_comes_from_the_buckets_of_every_route() -> None:
    """95 fast and 5 slow requests on two routes keep p95 at 5 ms; a sixth slow one breaches."""
    metrics = Metrics()
    for _ in range(95):
        metrics.http_duration.labels("GET", "/api/v1/auth/validate").observe(0.004)
    for _ in range(5):
        metrics.http_duration.labels("POST", "/api/v1/auth/login").observe(3.0)
    p95 = checks_of(metrics)["api_latency_p95_ms"]
    assert (p95.measured, p95.ok) == (5.0, True)
    metrics.http_duration.labels("POST", "/api/v1/auth/login").observe(3.0)
    p95 = checks_of(metrics)["api_latency_p95_ms"]
    assert p95.ok is False and 2500 < p95.measured < 5000


def test_a_p95_of_fewer_than_20_requests_is_shown_but_not_judged() -> None:
    """One slow login among the first few requests of a server is shown but is no breach; at 20
    requests the 95th percentile leaves out the slowest one and is judged."""
    metrics = Metrics()
    for _ in range(5):
        metrics.http_duration.labels("GET", "/api/v1/users/profile").observe(0.004)
    metrics.http_duration.labels("POST", "/api/v1/auth/login").observe(0.400)
    p95 = checks_of(metrics)["api_latency_p95_ms"]
    assert p95.ok is True and 250 < p95.measured <= 500
    assert "only 6 requests" in p95.detail
    for _ in range(13):
        metrics.http_duration.labels("GET", "/api/v1/users/profile").observe(0.004)
    metrics.http_duration.labels("POST", "/api/v1/auth/login").observe(0.400)
    p95 = checks_of(metrics)["api_latency_p95_ms"]  # 20 requests, 2 slow: p95 is slow
    assert p95.ok is False and 250 < p95.measured <= 500
    assert p95.detail == "estimated from the histogram of 20 requests"


def test_histogram_quantile_matches_prometheus() -> None:
    """Linear inside a bucket; a rank in +Inf gives the highest finite bound; no data gives None."""
    buckets = [(0.1, 50.0), (0.2, 100.0), (float("inf"), 100.0)]
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.15)
    assert histogram_quantile(0.99, [(0.1, 1.0), (float("inf"), 10.0)]) == 0.1
    assert histogram_quantile(0.95, [(0.1, 0.0), (float("inf"), 0.0)]) is None


def test_what_is_not_gatehouse_metrics_is_refused() -> None:
    """An HTML page or another program's metrics are not read as Gatehouse metrics."""
    with pytest.raises(MetricsUnavailable):
        evaluate("<!doctype html><html><body>Welcome to nginx!</body></html>")
    with pytest.raises(MetricsUnavailable, match="Gatehouse"):
        evaluate("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.5\n")


def test_metrics_url_appends_metrics_once_and_hides_passwords() -> None:
    """The base URL gets /metrics once; a non-http URL is refused without echoing its password."""
    assert metrics_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/metrics"
    assert metrics_url("https://auth.example.com/gh/") == "https://auth.example.com/gh/metrics"
    assert metrics_url("http://h:1/metrics") == "http://h:1/metrics"
    with pytest.raises(MetricsUnavailable) as caught:
        metrics_url("ftp://user:s3cret@example.com/")
    assert "s3cret" not in str(caught.value)


# -- the command, against real and fake servers -------------------------------------------


def seed_user(settings: Settings) -> None:
    async def work() -> None:
        ctx = Context.build(settings)
        try:
            await create_user(ctx)
        finally:
            await ctx.close()

    asyncio.run(work())


def test_real_server_meets_the_objectives(
    make_server: Callable[..., Server], make_settings: Callable[..., Settings]
) -> None:
    """After logins, refreshes and API calls a real server passes every check with the metrics
    token, and without the token the check exits 2 asking for GATEHOUSE_METRICS_TOKEN.
    """
    seed_user(make_settings())
    server = make_server(GATEHOUSE_METRICS_TOKEN=METRICS_TOKEN)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        login = {"email": "alice@example.com", "password": PASSWORD}
        tokens = client.post("/api/v1/auth/login", json=login).json()
        wrong = client.post("/api/v1/auth/login", json={**login, "password": "not-the-password-1"})
        assert wrong.status_code == 401  # invalid_credentials: not counted against the SLO
        for _ in range(3):
            r = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            assert r.status_code == 200, r.text
            tokens = r.json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        for _ in range(30):
            assert client.get("/api/v1/users/profile", headers=headers).status_code == 200
        assert client.get("/api/v1/users/profile").status_code == 401

    result = run_cli("slo", "check", "--url", server.url, "--json",
                     env={"GATEHOUSE_METRICS_TOKEN": METRICS_TOKEN})
    assert result.returncode == 0, result.stdout + result.stderr
    body = json.loads(result.stdout)
    assert body["ok"] is True
    measured = {c["name"]: c["measured"] for c in body["checks"]}
    assert list(measured) == NAMES and all(c["ok"] for c in body["checks"])
    assert (measured["error_rate"], measured["login_success"]) == (0.0, 1.0)
    assert measured["refresh_latency_avg_ms"] > 0 and measured["api_latency_p95_ms"] > 0

    refused = run_cli("slo", "check", "--url", server.url)
    assert_one_line_failure(refused, 2)
    assert "GATEHOUSE_METRICS_TOKEN" in refused.stderr


@pytest.fixture
def fake_server() -> Iterator[tuple[str, dict[str, tuple[str, bytes]]]]:
    """A local HTTP server answering GET path -> (content type, body) from a dict the test fills."""
    pages: dict[str, tuple[str, bytes]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            content_type, body = pages.get(self.path, ("text/plain", b""))
            self.send_response(200 if self.path in pages else 404)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", pages
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_many_5xx_breach_the_error_rate(
    fake_server: tuple[str, dict[str, tuple[str, bytes]]],
) -> None:
    """Metrics with 5 % of answers 5xx exit 1 and mark only the error-rate check as not ok."""
    url, pages = fake_server
    metrics = Metrics()
    metrics.http_requests.labels("GET", "/api/v1/users/profile", "200").inc(950)
    metrics.http_requests.labels("GET", "/api/v1/users/profile", "500").inc(50)
    metrics.http_duration.labels("GET", "/api/v1/users/profile").observe(0.003)
    pages["/metrics"] = ("text/plain; version=0.0.4", metrics.render())
    result = run_cli("slo", "check", "--url", url, "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    body = json.loads(result.stdout)
    assert body["ok"] is False
    assert {c["name"]: c["ok"] for c in body["checks"]} == {
        "error_rate": False, "login_success": True, "refresh_latency_avg_ms": True,
        "api_latency_p95_ms": True}
    assert body["checks"][0]["measured"] == 0.05

    table = run_cli("slo", "check", "--url", url)
    assert table.returncode == 1 and "BREACH" in table.stdout and "error_rate" in table.stdout


def test_a_page_that_is_not_gatehouse_metrics_exits_2(
    fake_server: tuple[str, dict[str, tuple[str, bytes]]],
) -> None:
    """A URL whose /metrics is a web page, not Gatehouse metrics, exits 2 with one line."""
    url, pages = fake_server
    pages["/metrics"] = ("text/html", b"<!doctype html><title>Welcome to nginx!</title>")
    result = run_cli("slo", "check", "--url", url)
    assert_one_line_failure(result, 2)
    assert "Gatehouse" in result.stderr


def test_unreachable_url_exits_2_with_one_line() -> None:
    """A port nobody listens on exits 2 with one line naming the URL, no traceback."""
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli("slo", "check", "--url", url, "--json")
    assert_one_line_failure(result, 2)
    assert result.stdout == "" and f"{url}/metrics" in result.stderr
