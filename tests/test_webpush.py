"""Web Push delivery (API.md §10): VAPID-signed, aes128gcm-encrypted, retried, never blocking.

A real HTTP server on a loopback port plays the push service (tests/_fake_push.py): it
verifies the VAPID JWT and decrypts each payload with the fake browser's keys.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from email.utils import formatdate
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import select

from gatehouse.context import Context
from gatehouse.notify.subscriptions import PushSubscriptions
from gatehouse.notify.vapid import generate_vapid_pair
from gatehouse.notify.webpush import Outcome, WebPushSender
from gatehouse.store.db.models import PushSubscription
from tests._fake_push import FakeBrowser, FakePushService
from tests.conftest import asgi_client, bearer, create_user, login

SUBJECT = "mailto:security@example.com"
PAYLOAD = {"type": "password.changed", "title": "Your password was changed",
           "body": "If this was not you, reset it now.", "at": "2026-12-02T18:00:00Z"}
VAPID_PUBLIC, VAPID_PRIVATE = generate_vapid_pair()


@pytest.fixture
def push() -> Iterator[FakePushService]:
    service = FakePushService(VAPID_PUBLIC, SUBJECT)
    yield service
    service.close()


@pytest_asyncio.fixture
async def app(make_app: Any) -> Any:
    """The app with VAPID configured and loopback push endpoints allowed (tests only)."""
    return make_app(VAPID_PUBLIC_KEY=VAPID_PUBLIC, VAPID_PRIVATE_KEY=VAPID_PRIVATE,
                    VAPID_SUBJECT=SUBJECT, GATEHOUSE_PUSH_ALLOW_PRIVATE="1")


@pytest.fixture
def outcomes() -> list[Outcome]:
    return []


@pytest_asyncio.fixture
async def sender(ctx: Context, outcomes: list[Outcome]) -> AsyncIterator[WebPushSender]:
    webpush = WebPushSender(ctx.settings, ctx.db, ctx.metrics, on_outcome=outcomes.append)
    webpush.retry_base = 0.01
    yield webpush
    await webpush.close()


async def subscribe(ctx: Context, user: Any, *browsers: FakeBrowser) -> None:
    store = PushSubscriptions(ctx.db, allow_private=True)
    for browser in browsers:
        keys = browser.subscription()["keys"]
        await store.subscribe(user.id, browser.endpoint, keys["p256dh"], keys["auth"])


async def endpoints(ctx: Context) -> set[str]:
    async with ctx.db() as db:
        return set(await db.scalars(select(PushSubscription.endpoint)))


@pytest.mark.asyncio
async def test_every_subscription_of_the_user_decrypts_the_payload(
    app: Any, ctx: Context, alice: Any, push: FakePushService, sender: WebPushSender,
    outcomes: list[Outcome],
) -> None:
    """Two browsers subscribed through the API each get the payload, VAPID-signed for the push
    origin and encrypted for their own keys, at high urgency; another user's browser gets
    nothing."""
    phone, laptop, bobs = push.browser(), push.browser(), push.browser()
    await subscribe(ctx, await create_user(ctx, "bob@example.com", name="Bob"), bobs)
    async with asgi_client(app) as client:
        tokens = await login(client)
        for browser in (phone, laptop):
            r = await client.post("/api/v1/push/subscriptions", headers=bearer(tokens),
                                  json=browser.subscription())
            assert r.status_code == 201, r.text

    await sender.deliver(alice.id, PAYLOAD)

    assert push.errors == []
    assert [r.payload for r in push.received_by(phone)] == [PAYLOAD]
    assert [r.payload for r in push.received_by(laptop)] == [PAYLOAD]
    assert push.received_by(bobs) == []
    for got in push.received:
        assert (got.claims["aud"], got.claims["sub"]) == (push.origin, SUBJECT)
        assert (got.headers["urgency"], int(got.headers["ttl"]) > 0) == ("high", True)
    assert outcomes == ["sent", "sent"]


@pytest.mark.asyncio
async def test_gone_subscriptions_are_deleted_and_the_rest_kept(
    ctx: Context, alice: Any, push: FakePushService,
) -> None:
    """A subscription answered 410 or 404 is deleted; the one answered 201 stays; the push
    metric counts one sent and two dropped."""
    unsubscribed, expired, live = push.browser(410), push.browser(404), push.browser()
    await subscribe(ctx, alice, unsubscribed, expired, live)
    registry = CollectorRegistry()
    metrics = SimpleNamespace(notifications=Counter(
        "gatehouse_notifications_total", "Notifications", ["channel", "result"],
        registry=registry))
    webpush = WebPushSender(ctx.settings, ctx.db, metrics)  # type: ignore[arg-type]
    try:
        await webpush.deliver(alice.id, PAYLOAD)
    finally:
        await webpush.close()

    assert await endpoints(ctx) == {live.endpoint}
    assert len(push.received) == 3
    counted = {result: registry.get_sample_value(
        "gatehouse_notifications_total", {"channel": "push", "result": result})
        for result in ("sent", "dropped", "failed")}
    assert counted == {"sent": 1.0, "dropped": 2.0, "failed": None}


@pytest.mark.asyncio
async def test_server_errors_are_retried_until_delivered(
    ctx: Context, alice: Any, push: FakePushService, sender: WebPushSender,
    outcomes: list[Outcome],
) -> None:
    """A push service answering 500, then 503, then 201 gets the same payload three times and
    the notification counts as sent once; the subscription is kept."""
    flaky = push.browser(500, 503)
    await subscribe(ctx, alice, flaky)

    await sender.deliver(alice.id, PAYLOAD)

    assert [r.payload for r in push.received_by(flaky)] == [PAYLOAD] * 3
    assert outcomes == ["sent"]
    assert await endpoints(ctx) == {flaky.endpoint}


@pytest.mark.asyncio
@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_429_is_retried_no_sooner_than_retry_after(
    ctx: Context, alice: Any, push: FakePushService, sender: WebPushSender,
    outcomes: list[Outcome], form: str,
) -> None:
    """After a 429 with `Retry-After` (seconds or an HTTP date) the retry waits that long,
    though the sender's own backoff is 10 ms, and then delivers. The date is written when the
    service answers, 3 s ahead: whole seconds only, so at least 2 s after the answer."""
    retry_after: str | Callable[[], str] = "1" if form == "seconds" else (
        lambda: formatdate(time.time() + 3, usegmt=True))
    busy = push.browser(429, retry_after=retry_after)
    await subscribe(ctx, alice, busy)

    await sender.deliver(alice.id, PAYLOAD)

    first, second = push.received_by(busy)
    assert second.at - first.at >= 1.0
    assert (second.payload, outcomes) == (PAYLOAD, ["sent"])


@pytest.mark.asyncio
async def test_a_hanging_push_service_is_given_up_without_blocking_the_loop(
    ctx: Context, alice: Any, push: FakePushService, sender: WebPushSender,
    outcomes: list[Outcome],
) -> None:
    """A service that accepts and never answers is tried retries + 1 times, each cut at the
    timeout, then given up (subscription kept); meanwhile other coroutines keep running."""
    stuck = push.browser(None, None)
    await subscribe(ctx, alice, stuck)
    sender.timeout, sender.retries = 0.3, 1
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        async with asyncio.timeout(30):  # a guard against a hang, not a timing assertion
            await sender.deliver(alice.id, PAYLOAD)
    finally:
        task.cancel()

    assert len(push.received_by(stuck)) == 2
    assert outcomes == ["failed"]
    assert await endpoints(ctx) == {stuck.endpoint}
    assert ticks > 10


@pytest.mark.asyncio
async def test_logs_name_the_push_origin_never_the_endpoint_or_a_key(
    ctx: Context, alice: Any, push: FakePushService, sender: WebPushSender,
    outcomes: list[Outcome], capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    """Retries, give-ups, refusals and deletions are logged with the push origin, and no log
    line holds an endpoint path, a subscription key, an auth secret or the VAPID private key."""
    caplog.set_level(logging.DEBUG)
    failing, refused, gone = push.browser(500, 500), push.browser(400), push.browser(410)
    await subscribe(ctx, alice, failing, refused, gone)
    unusable = push.browser()  # keys a browser never made: nothing to encrypt for
    await PushSubscriptions(ctx.db, allow_private=True).subscribe(
        alice.id, unusable.endpoint, "BPk-x_1", "aXV0aA")
    sender.retries = 1

    await sender.deliver(alice.id, PAYLOAD)

    assert sorted(outcomes) == ["dropped", "failed", "failed", "failed"]
    assert push.received_by(unusable) == []
    # Our structlog lines, and anything the Web Push libraries log (pywebpush logs to root).
    # The drivers' own DEBUG traces (httpx, aiosqlite) hold URLs and SQL parameters; they are
    # not configured to print.
    ours = ("root", "gatehouse", "pywebpush", "py_vapid", "http_ece")
    stdlib = [r.getMessage() for r in caplog.records if r.name.split(".")[0] in ours]
    logged = capsys.readouterr().out + "\n".join(stdlib)
    assert logged.count(push.origin) >= 4
    secrets = [VAPID_PRIVATE]
    for browser in (failing, refused, gone):
        keys = browser.subscription()["keys"]
        secrets += [browser.endpoint.rsplit("/", 1)[1], keys["p256dh"], keys["auth"]]
    assert [s for s in secrets if s in logged] == []


@pytest.mark.asyncio
async def test_an_endpoint_is_checked_again_before_sending(
    ctx: Context, alice: Any, push: FakePushService, outcomes: list[Outcome],
) -> None:
    """A stored endpoint that now reaches a private address (as loopback does) is not contacted
    when private endpoints are not allowed: given up, nothing sent, the row kept."""
    browser = push.browser()
    await subscribe(ctx, alice, browser)
    strict = ctx.settings.model_copy(update={"push_allow_private": False})
    webpush = WebPushSender(strict, ctx.db, on_outcome=outcomes.append)
    try:
        await webpush.deliver(alice.id, PAYLOAD)
    finally:
        await webpush.close()

    assert (push.received, outcomes) == ([], ["failed"])
    assert await endpoints(ctx) == {browser.endpoint}
