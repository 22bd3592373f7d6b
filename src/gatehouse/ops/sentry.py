"""Optional error tracking (API.md §6 `SENTRY_DSN`, `SENTRY_ENVIRONMENT`): Sentry.

`setup(settings)` (from `create_app`) initialises sentry-sdk with its FastAPI integration
when SENTRY_DSN is set and the `sentry` extra is installed; otherwise every function
here does nothing. Unhandled errors are reported by `capture_exception` (called where
the 500 is made, with the request id as a tag), browser reports of POST /client-errors
by `client_error`.

Redaction is the logs' (ops/logging.py): `send_default_pii` is off (the SDK's default),
and `before_send` removes the Authorization, Cookie, X-API-Key, X-Signature and
X-CSRF-Token headers, any cookie, the query string of every URL, and request-body fields
named like a password, token, secret or code, whatever the SDK's own scrubber kept.
"""

from __future__ import annotations

import re
from typing import Any

import structlog

from gatehouse.settings import Settings

log = structlog.get_logger("gatehouse.sentry")

REDACTED = "[redacted]"
_HEADERS = {"authorization", "cookie", "set-cookie", "x-api-key", "x-signature",
            "x-csrf-token", "proxy-authorization"}
_BODY_KEY = re.compile(r"password|token|secret|code|key|signature|authorization|cookie", re.I)
_QUERY = re.compile(r"\?[^\s\"'<>)]*")

_enabled = False


def enabled() -> bool:
    return _enabled


def setup(settings: Settings) -> bool:
    """Start Sentry when SENTRY_DSN is set; True when it is on."""
    global _enabled
    if settings.sentry_dsn is None:
        return False
    try:
        import sentry_sdk
        from sentry_sdk.integrations.fastapi import FastApiIntegration
        from sentry_sdk.integrations.starlette import StarletteIntegration
    except ImportError:
        log.warning("sentry_unavailable",
                    reason="SENTRY_DSN is set but sentry-sdk is not installed "
                           "(pip install 'gatehouse-auth[sentry]')")
        return False
    from gatehouse import __version__

    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        environment=settings.sentry_environment,
        release=f"gatehouse@{__version__}",
        # send_default_pii stays unset, i.e. off (newer SDKs deprecate passing it at all).
        max_request_body_size="never",  # bodies carry passwords and tokens: never sent
        include_local_variables=False,  # frames' locals would hold them too
        traces_sample_rate=0.0,
        integrations=[StarletteIntegration(), FastApiIntegration()],
        before_send=before_send,
    )
    _enabled = True
    return True


def shutdown(timeout: float = 2.0) -> None:
    """Send what is pending and turn Sentry off (tests; a stopping process)."""
    global _enabled
    if not _enabled:
        return
    import sentry_sdk

    sentry_sdk.flush(timeout=timeout)
    sentry_sdk.get_client().close(timeout=timeout)
    sentry_sdk.init()  # no DSN: a client that sends nothing
    _enabled = False


def flush(timeout: float = 2.0) -> None:
    if _enabled:
        import sentry_sdk

        sentry_sdk.flush(timeout=timeout)


def capture_exception(exc: BaseException, request_id: str | None) -> None:
    """Report an unhandled error (the 500 path), tagged with the request id."""
    if not _enabled:
        return
    import sentry_sdk

    with sentry_sdk.new_scope() as scope:
        if request_id:
            scope.set_tag("request_id", request_id)
        sentry_sdk.capture_exception(exc)


def client_error(message: str, *, url: str | None, stack: str | None,
                 reported_request_id: str | None, request_id: str | None) -> None:
    """A browser's error report (POST /client-errors) as a Sentry message."""
    if not _enabled:
        return
    import sentry_sdk

    with sentry_sdk.new_scope() as scope:
        scope.set_tag("source", "browser")
        if request_id:
            scope.set_tag("request_id", request_id)
        if reported_request_id:
            scope.set_tag("reported_request_id", reported_request_id)
        scope.set_context("client_error", {"url": url, "stack": strip_queries(stack or "")[:4000]})
        sentry_sdk.capture_message(f"client error: {strip_queries(message)[:500]}", level="error")


def strip_queries(text: str) -> str:
    """`text` with every URL query string (where tokens travel) cut off."""
    return _QUERY.sub("", text)


# -- redaction ------------------------------------------------------------------------


def before_send(event: dict[str, Any], _hint: dict[str, Any]) -> dict[str, Any]:
    request = event.get("request")
    if isinstance(request, dict):
        _redact_request(request)
    for key in ("message", "logentry"):
        value = event.get(key)
        if isinstance(value, str):
            event[key] = strip_queries(value)
        elif isinstance(value, dict) and isinstance(value.get("message"), str):
            value["message"] = strip_queries(value["message"])
    for breadcrumb in (event.get("breadcrumbs") or {}).get("values", []) or []:
        if isinstance(breadcrumb, dict):
            data = breadcrumb.get("data")
            if isinstance(data, dict):
                _redact_mapping(data)
                if isinstance(data.get("url"), str):
                    data["url"] = strip_queries(data["url"])
    return event


def _redact_request(request: dict[str, Any]) -> None:
    headers = request.get("headers")
    if isinstance(headers, dict):
        for name in list(headers):
            if name.lower() in _HEADERS:
                headers[name] = REDACTED
    elif isinstance(headers, list):
        request["headers"] = [[k, REDACTED if str(k).lower() in _HEADERS else v]
                              for k, v in (pair for pair in headers if len(pair) == 2)]
    if request.get("cookies"):
        request["cookies"] = REDACTED
    if request.get("query_string"):
        request["query_string"] = REDACTED
    if isinstance(request.get("url"), str):
        request["url"] = strip_queries(request["url"])
    data = request.get("data")
    if isinstance(data, dict):
        _redact_mapping(data)
    elif data:
        request["data"] = REDACTED


def _redact_mapping(data: dict[str, Any]) -> None:
    for key in list(data):
        if _BODY_KEY.search(str(key)):
            data[key] = REDACTED
        elif isinstance(data[key], dict):
            _redact_mapping(data[key])
