"""Prometheus series (API.md §7: names and labels are part of the contract).

Each app gets its own registry so tests and several apps in one process do
not share counters; `/metrics` renders that registry.

With `serve --workers N`, `serve` points PROMETHEUS_MULTIPROC_DIR at a fresh
directory before the workers start (prometheus-client's multiprocess mode):
every worker writes its values to files there, and whichever worker answers
`/metrics` renders the sum over all of them. Counters and histograms add up
(a worker that exits keeps its counts, so they never go backwards); the pool
gauges are summed over live workers, and `gatehouse_cache_fallback_active` is
the maximum (1 while any worker is in the cache fallback).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy.ext.asyncio import AsyncEngine

from gatehouse.store.db.engine import follow_pool

_MAX_REQUEST_CHILDREN = 1024
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "gatehouse_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.http_duration = Histogram(
            "gatehouse_http_request_duration_seconds", "HTTP request duration",
            ["method", "route"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.logins = Counter("gatehouse_auth_logins_total", "Login attempts", ["result"], registry=r)
        self.refreshes = Counter(
            "gatehouse_auth_refresh_total", "Refresh attempts", ["result"], registry=r
        )
        self.refresh_duration = Histogram(
            "gatehouse_auth_refresh_duration_seconds", "Refresh duration",
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.sessions_revoked = Counter(
            "gatehouse_sessions_revoked_total", "Sessions revoked", ["reason"], registry=r
        )
        self.rate_limited = Counter(
            "gatehouse_rate_limited_total", "Requests refused by a rate limit", ["scope"], registry=r
        )
        self.dependency_errors = Counter(
            "gatehouse_dependency_errors_total", "Failures talking to a dependency",
            ["dependency"], registry=r,
        )
        self.cache_fallback_active = Gauge(
            "gatehouse_cache_fallback_active",
            "1 while Redis is unreachable and the fallback is in force", registry=r,
            multiprocess_mode="livemax",
        )
        self.db_pool_in_use = Gauge(
            "gatehouse_db_pool_in_use", "Database connections checked out now", registry=r,
            multiprocess_mode="livesum",
        )
        self.db_pool_size = Gauge(
            "gatehouse_db_pool_size", "Database connections the pool may hold", registry=r,
            multiprocess_mode="livesum",
        )
        self.db_pool_timeouts = Counter(
            "gatehouse_db_pool_timeouts_total",
            "Requests that waited GATEHOUSE_DB_POOL_TIMEOUT for a connection and got 503", registry=r,
        )
        self.mail_sent = Counter(
            "gatehouse_mail_sent_total", "Emails delivered or given up on", ["kind", "result"],
            registry=r,
        )
        self.alerts = Counter(
            "gatehouse_alerts_total", "Operator alerts (Slack) sent, failed or suppressed",
            ["kind", "result"], registry=r,
        )
        # User notifications (API.md §10): delivered, given up on, or not sent (hourly cap).
        self.notifications = Counter(
            "gatehouse_notifications_total", "User notifications sent, failed or dropped",
            ["channel", "result"], registry=r,
        )
        self.mfa = Counter(
            "gatehouse_auth_mfa_total", "Second-factor attempts", ["result"], registry=r
        )
        self.client_errors = Counter(
            "gatehouse_client_errors_total", "Error reports received from browsers", registry=r
        )
        # Pre-create the label sets dashboards expect, so they read 0 rather than absent.
        for result in ("success", "invalid_credentials", "throttled", "disabled", "unverified",
                       "mfa_required"):
            self.logins.labels(result)
        for result in ("success", "invalid", "expired", "recovery_code"):
            self.mfa.labels(result)
        for result in ("success", "grace", "expired", "invalid", "revoked", "reused"):
            self.refreshes.labels(result)
        for reason in ("logout", "logout_all", "password_change", "password_reset", "admin",
                       "reuse", "disabled"):
            self.sessions_revoked.labels(reason)
        for kind in ("password_reset", "email_verify", "notification", "test"):
            for outcome in ("sent", "failed"):
                self.mail_sent.labels(kind, outcome)
        for channel in ("push", "sms", "email"):
            for outcome in ("sent", "failed", "dropped"):
                self.notifications.labels(channel, outcome)
        for kind in ("reuse", "throttle_burst", "role_change", "revoke_all", "mfa_reset"):
            for outcome in ("sent", "failed", "suppressed"):
                self.alerts.labels(kind, outcome)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one HTTP request and its duration.

        `labels()` takes a lock and re-checks the label values at every call (two per request,
        about 2 % of a token-checked request): each label set's children are looked up once.
        The label sets are few (route templates, not paths); past _MAX_REQUEST_CHILDREN (odd
        methods in a flood) they are counted without being kept.
        """
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            children = (self.http_requests.labels(method, route, str(status)),
                        self.http_duration.labels(method, route))
            if len(self._request_children) < _MAX_REQUEST_CHILDREN:
                self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def watch_pool(self, engine: AsyncEngine) -> None:
        """The pool gauges follow the engine's pool."""

        def report(in_use: int, size: int) -> None:
            self.db_pool_in_use.set(in_use)
            self.db_pool_size.set(size)

        follow_pool(engine, report)

    def render(self) -> bytes:
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory:  # serve --workers N: the sum over every worker's files
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=directory)
            return generate_latest(registry)
        return generate_latest(self.registry)
