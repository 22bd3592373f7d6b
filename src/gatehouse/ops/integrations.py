"""The optional outside services (API.md §6): Slack, OpenAI and OpenPhone.

Format checks cost nothing; `probe` makes one real, harmless call per service
for `gatehouse doctor --online`: Slack gets a one-line message on its webhook
(a webhook has no read-only call), OpenAI lists models, OpenPhone lists the
workspace's numbers and must include OPENPHONE_FROM. Details never contain a
key or a webhook URL, only HTTP statuses and exception class names. Alerts
and SMS notifications will send through the same base URLs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from gatehouse.settings import Settings

TIMEOUT = 5.0
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class Verdict:
    name: str
    ok: bool
    detail: str
    hint: str = ""


def webhook_url_ok(url: str) -> bool:
    """https, or plain http to a loopback relay (local tests and sidecars)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.netloc)
    return parts.scheme == "http" and (parts.hostname or "") in _LOOPBACK


def formats(settings: Settings) -> list[Verdict]:
    """Offline checks of whichever integrations are configured."""
    verdicts = []
    if settings.slack_webhook_url is not None:
        ok = webhook_url_ok(settings.slack_webhook_url.get_secret_value())
        verdicts.append(Verdict("slack", ok, "webhook URL set" if ok else "not an https URL",
                                "" if ok else "SLACK_WEBHOOK_URL must be https://hooks.slack.com/..."))
    if settings.openai_api_key is not None:
        ok = settings.openai_api_key.get_secret_value().startswith("sk-")
        verdicts.append(Verdict("openai", ok, "key set" if ok else "does not look like an OpenAI key",
                                "" if ok else "OPENAI_API_KEY starts with sk-"))
    if settings.openphone_api_key is not None:
        ok = bool(settings.openphone_from and settings.openphone_from.startswith("+"))
        verdicts.append(Verdict(
            "openphone", ok, "key and sender set" if ok else "OPENPHONE_FROM missing",
            "" if ok else "set OPENPHONE_FROM to an E.164 number like +15551234567"))
    return verdicts


def probe(settings: Settings) -> list[Verdict]:
    """One real call to each configured integration."""
    verdicts = []
    with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as http:
        if settings.slack_webhook_url is not None:
            webhook = settings.slack_webhook_url.get_secret_value()
            verdicts.append(_call("slack_online", lambda: http.post(
                webhook, json={"text": "gatehouse doctor: connectivity check"}))[0])
        if settings.openai_api_key is not None:
            key = settings.openai_api_key.get_secret_value()
            verdicts.append(_call("openai_online", lambda: http.get(
                f"{settings.openai_base_url}/models", headers={"Authorization": f"Bearer {key}"}))[0])
        if settings.openphone_api_key is not None:
            verdicts.append(_openphone(http, settings))
    return verdicts


def _call(name: str, send: Callable[[], httpx.Response]) -> tuple[Verdict, httpx.Response | None]:
    try:
        r = send()
    except httpx.HTTPError as exc:
        return Verdict(name, False, f"unreachable ({type(exc).__name__})", "check the network"), None
    if r.status_code in (401, 403):
        return Verdict(name, False, f"credentials refused (HTTP {r.status_code})", "replace the key"), r
    return Verdict(name, r.is_success, f"HTTP {r.status_code}"), r


def _openphone(http: httpx.Client, settings: Settings) -> Verdict:
    assert settings.openphone_api_key is not None
    url = f"{settings.openphone_api_url}/v1/phone-numbers"
    headers = {"Authorization": settings.openphone_api_key.get_secret_value()}
    verdict, answer = _call("openphone_online", lambda: http.get(url, headers=headers))
    if not verdict.ok or answer is None:
        return verdict
    try:
        numbers = {str(n.get("number")) for n in answer.json()["data"]}
    except (ValueError, KeyError, TypeError, AttributeError):
        return Verdict("openphone_online", False, "unexpected answer from the phone-numbers API")
    if settings.openphone_from not in numbers:
        return Verdict("openphone_online", False,
                       f"OPENPHONE_FROM {settings.openphone_from} is not a number of this workspace",
                       f"use one of {len(numbers)} workspace number(s)")
    return Verdict("openphone_online", True, f"sender is one of {len(numbers)} workspace number(s)")
