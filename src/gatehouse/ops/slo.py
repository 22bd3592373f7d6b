"""The service-level objectives of DESIGN.md "Targets", measured from a server's `/metrics`.

The series are those of API.md §7. Counters and histograms are totals since the
worker started, so each figure is the server's lifetime value, not a window:
to judge one load run, check right after it against a freshly started server.

- `error_rate` < 0.1 %: 5xx / all of `gatehouse_http_requests_total`.
- `login_success` > 99.9 %: `success` / all of `gatehouse_auth_logins_total` except
  `invalid_credentials` and `throttled` (those say nothing about correct credentials) and
  `mfa_required` (the password step of a login that the second step counts).
- `refresh_latency_avg_ms` < 100 ms: `gatehouse_auth_refresh_duration_seconds` sum / count.
- `api_latency_p95_ms` < 200 ms: `gatehouse_http_request_duration_seconds` buckets summed
  over every method and route, estimated the way Prometheus's `histogram_quantile` does.

A check without data (no requests, no logins, no refreshes) passes with
`measured` None: an idle server breaks no promise. The 95th percentile of fewer than
20 requests is the slowest of them (its rank, 0.95 n, is above n - 1), so below 20 it is
shown but judges nothing: one slow login on a server that just started is not a breach.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families

ERROR_RATE_MAX = 0.001
LOGIN_SUCCESS_MIN = 0.999
REFRESH_AVG_MAX_MS = 100.0
API_P95_MAX_MS = 200.0
#: Requests a 95th percentile needs before it can leave out the slowest one.
API_P95_MIN_REQUESTS = 20

Samples = dict[str, list[tuple[dict[str, str], float]]]  # sample name -> [(labels, value)]

# Login results that say nothing about whether correct credentials work.
# `mfa_required` is the first half of a second-factor login, whose end is counted again
# (`success`, or nothing when the code is wrong): counting both would halve the ratio.
_NOT_CORRECT_CREDENTIALS = {"invalid_credentials", "throttled", "mfa_required"}


class MetricsUnavailable(Exception):
    """The URL cannot be read, or what it serves is not Gatehouse metrics; one line of text."""


@dataclass(frozen=True)
class Check:
    """One objective: `measured op target` must hold; both in `unit` ("ratio" 0-1, or "ms")."""

    name: str
    objective: str
    op: str
    target: float
    measured: float | None
    ok: bool
    unit: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def metrics_url(base: str) -> str:
    """`base` + `/metrics` (a URL that already ends in /metrics is kept as it is)."""
    parts = urlsplit(base.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MetricsUnavailable(f"{_shown(base)} is not an http(s) URL")
    path = parts.path.rstrip("/")
    if not path.endswith("/metrics"):
        path += "/metrics"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _shown(url: str) -> str:
    """The URL without any user:password part, for messages."""
    parts = urlsplit(url.strip())
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", "")) if parts.scheme else url.strip()


def fetch_metrics(base: str, token: str | None = None, timeout: float = 10.0) -> str:
    """The Prometheus text at `base/metrics`, sent with the bearer token when one is given."""
    url = metrics_url(base)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(url, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise MetricsUnavailable(f"cannot read {_shown(url)} ({type(exc).__name__})") from None
    if response.status_code in (401, 403):
        hint = "the token was refused" if token else "set GATEHOUSE_METRICS_TOKEN"
        raise MetricsUnavailable(f"{_shown(url)} answered {response.status_code}: {hint}")
    if response.status_code != 200:
        raise MetricsUnavailable(f"{_shown(url)} answered {response.status_code}, not metrics")
    return response.text


def _samples(text: str) -> Samples:
    by_name: Samples = defaultdict(list)
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                by_name[sample.name].append((sample.labels, sample.value))
    except Exception:  # the parser's errors are not documented types; any of them means "not ours"
        raise MetricsUnavailable("not Prometheus text: is this a Gatehouse /metrics URL?") from None
    if not {"gatehouse_http_requests_total", "gatehouse_auth_logins_total"} & by_name.keys():
        raise MetricsUnavailable("no gatehouse_* series: is this a Gatehouse /metrics URL?")
    return by_name


def evaluate(text: str) -> list[Check]:
    """The four checks of the module docstring, from Prometheus text."""
    samples = _samples(text)
    return [_error_rate(samples), _login_success(samples), _refresh_latency(samples),
            _api_p95(samples)]


def check_url(base: str, token: str | None = None, timeout: float = 10.0) -> list[Check]:
    return evaluate(fetch_metrics(base, token, timeout))


def _error_rate(samples: Samples) -> Check:
    rows = samples.get("gatehouse_http_requests_total", [])
    total = sum(value for _, value in rows)
    failed = sum(value for labels, value in rows if labels.get("status", "").startswith("5"))
    measured = failed / total if total else None
    return Check("error_rate", "5xx responses / all requests", "<", ERROR_RATE_MAX, measured,
                 measured is None or measured < ERROR_RATE_MAX, "ratio",
                 f"{failed:,.0f} of {total:,.0f} requests answered 5xx")


def _login_success(samples: Samples) -> Check:
    rows = samples.get("gatehouse_auth_logins_total", [])
    relevant = [(labels.get("result", ""), value) for labels, value in rows
                if labels.get("result") not in _NOT_CORRECT_CREDENTIALS]
    attempts = sum(value for _, value in relevant)
    success = sum(value for result, value in relevant if result == "success")
    measured = success / attempts if attempts else None
    return Check("login_success", "successful logins with correct credentials", ">",
                 LOGIN_SUCCESS_MIN,
                 measured, measured is None or measured > LOGIN_SUCCESS_MIN, "ratio",
                 f"{success:,.0f} of {attempts:,.0f} logins (wrong passwords, throttling excluded)")


def _refresh_latency(samples: Samples) -> Check:
    total = sum(v for _, v in samples.get("gatehouse_auth_refresh_duration_seconds_sum", []))
    count = sum(v for _, v in samples.get("gatehouse_auth_refresh_duration_seconds_count", []))
    measured = round(total / count * 1000, 3) if count else None
    return Check("refresh_latency_avg_ms", "average token refresh time", "<", REFRESH_AVG_MAX_MS,
                 measured, measured is None or measured < REFRESH_AVG_MAX_MS, "ms",
                 f"{count:,.0f} refreshes")


def _api_p95(samples: Samples) -> Check:
    cumulative: dict[float, float] = defaultdict(float)
    for labels, value in samples.get("gatehouse_http_request_duration_seconds_bucket", []):
        cumulative[float(labels.get("le", "+Inf"))] += value
    p95 = histogram_quantile(0.95, sorted(cumulative.items()))
    measured = round(p95 * 1000, 3) if p95 is not None else None
    count = max(cumulative.values(), default=0.0)
    detail = f"estimated from the histogram of {count:,.0f} requests"
    judged = count >= API_P95_MIN_REQUESTS
    if measured is not None and not judged:
        detail = (f"only {count:,.0f} requests: the slowest of them, not judged below "
                  f"{API_P95_MIN_REQUESTS}")
    return Check("api_latency_p95_ms", "95th percentile request time, all routes", "<",
                 API_P95_MAX_MS,
                 measured, measured is None or not judged or measured < API_P95_MAX_MS, "ms",
                 detail)


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus's estimate: linear inside the bucket holding rank q; None with no observations.

    `buckets` are (upper bound, cumulative count) in ascending order, ending with +Inf.
    A rank in the +Inf bucket gives the highest finite bound, as Prometheus does.
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower
