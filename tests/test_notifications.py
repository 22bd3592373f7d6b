"""User notifications (API.md §10): security events reach the user by SMS (a local fake
OpenPhone, a real HTTP server) and email (a local aiosmtpd server), after the change
commits, on the channels the user left on, at most 10 an hour per channel, and never
slow the request that caused them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import update

from gatehouse.context import Context
from gatehouse.notify.dispatch.events import notify_after_commit
from gatehouse.store.db.models import User
from tests._fake_openphone import FakeOpenPhone
from tests._smtp import SmtpServer, part
from tests.conftest import PASSWORD, REDIS_URL, asgi_client, bearer, create_user, login
from tests.test_alerts import until
from tests.test_recovery import running, smtp  # noqa: F401 - smtp is a fixture

PHONE = "+14155552671"
NEW_PASSWORD = "a-brand-new-passphrase-42"


@pytest.fixture
def notify_app(make_app: Callable[..., Any], openphone: FakeOpenPhone) -> Callable[..., Any]:
    def factory(**env: Any) -> Any:
        app = make_app(OPENPHONE_API_KEY="op-key", OPENPHONE_FROM="+14155550100",
                       OPENPHONE_API_URL=openphone.url, **env)
        app.state.ctx.sms.retry_base = 0.05
        return app
    return factory


def sent(ctx: Context, channel: str, result: str = "sent") -> float:
    value = ctx.metrics.registry.get_sample_value(
        "gatehouse_notifications_total", {"channel": channel, "result": result})
    return value or 0.0


async def user_with_phone(ctx: Context, **notify: bool) -> User:
    """Alice with a verified phone (the verification itself is tests/test_phone.py's)."""
    user = await create_user(ctx)
    async with ctx.db.begin() as db:
        await db.execute(update(User).where(User.id == user.id).values(
            phone=PHONE, phone_verified=True, notify={"push": True, "sms": True, "email": True,
                                                      **notify}))
    return user


async def raise_event(ctx: Context, user_id: str, type_: str = "password.changed") -> None:
    async with ctx.db.begin() as db:
        notify_after_commit(db, user_id, type_)


@pytest.mark.asyncio
async def test_a_password_change_is_texted_and_emailed(
    notify_app: Callable[..., Any], openphone: FakeOpenPhone, smtp: SmtpServer  # noqa: F811
) -> None:
    """Changing the password texts the verified phone through OpenPhone and emails the
    address (text and HTML parts); each is counted `sent`."""
    app = notify_app(SMTP_URL=smtp.url)
    ctx: Context = app.state.ctx
    await user_with_phone(ctx)
    async with running(app) as client:
        r = await client.post("/api/v1/users/profile/password", headers=bearer(await login(client)),
                              json={"current_password": PASSWORD, "new_password": NEW_PASSWORD})
        assert r.status_code == 204, r.text
        await until(lambda: sent(ctx, "sms") == 1 and sent(ctx, "email") == 1)
    [text] = openphone.received
    assert (text.path, text.headers["authorization"], text.body["to"]) == (
        "/v1/messages", "op-key", [PHONE])
    assert "password was changed" in text.body["content"]
    [mail] = smtp.inbox.wait(1)
    assert (mail["To"], mail["Subject"]) == ("alice@example.com", "Your password was changed")
    assert "password" in part(mail, "plain") and "<h1" in part(mail, "html")


@pytest.mark.asyncio
async def test_a_429_is_retried_after_its_retry_after(
    notify_app: Callable[..., Any], openphone: FakeOpenPhone
) -> None:
    """OpenPhone answering 429 with Retry-After: 1 gets the same text again no sooner than
    a second later (not on the 30 s backoff), and it is counted sent once."""
    openphone.answers = [429]
    app = notify_app()
    ctx: Context = app.state.ctx
    ctx.sms.retry_base = 30.0
    user = await user_with_phone(ctx)
    async with running(app):
        await raise_event(ctx, user.id)
        await until(lambda: sent(ctx, "sms") == 1)
    first, second = openphone.received
    assert first.body == second.body
    assert second.at - first.at >= 0.95


@pytest.mark.asyncio
async def test_channels_switched_off_get_nothing(
    notify_app: Callable[..., Any], openphone: FakeOpenPhone, smtp: SmtpServer  # noqa: F811
) -> None:
    """With `sms` and `email` off no text or email leaves; SMS back on, the next one does."""
    app = notify_app(SMTP_URL=smtp.url)
    ctx: Context = app.state.ctx
    user = await user_with_phone(ctx, sms=False, email=False)
    async with running(app) as client:
        await raise_event(ctx, user.id)
        headers = bearer(await login(client))
        r = await client.patch("/api/v1/users/profile", json={"notify": {"sms": True}},
                               headers=headers)
        assert r.json()["notify"] == {"push": True, "sms": True, "email": False}
        await raise_event(ctx, user.id)
        await until(lambda: sent(ctx, "sms") == 1)
        await ctx.mailer.drain()
    assert len(openphone.received) == 1 and smtp.inbox.messages == []
    assert sent(ctx, "email") == 0


@pytest.mark.asyncio
async def test_at_most_ten_an_hour_per_user_and_channel(
    notify_app: Callable[..., Any], openphone: FakeOpenPhone
) -> None:
    """Eleven events within the hour: ten texts, the eleventh counted dropped."""
    app = notify_app()
    ctx: Context = app.state.ctx
    user = await user_with_phone(ctx)
    async with running(app):
        for _ in range(11):
            await raise_event(ctx, user.id)
        await until(lambda: sent(ctx, "sms") == 10 and sent(ctx, "sms", "dropped") == 1)
        await ctx.notifier.drain()
        await ctx.sms.drain()
    assert len(openphone.received) == 10


@pytest.mark.asyncio
async def test_a_hanging_openphone_slows_no_request(
    notify_app: Callable[..., Any], openphone: FakeOpenPhone
) -> None:
    """While OpenPhone holds the connection of the first text open, the next password change
    still answers 204 at once, and nothing is counted yet."""
    openphone.answers = [None, None]
    app = notify_app()
    ctx: Context = app.state.ctx
    await user_with_phone(ctx)
    async with running(app) as client:
        headers = bearer(await login(client))
        body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
        r = await client.post("/api/v1/users/profile/password", json=body, headers=headers)
        assert r.status_code == 204
        await until(lambda: openphone.hanging == 1)
        body = {"current_password": NEW_PASSWORD, "new_password": PASSWORD + "-again"}
        r = await client.post("/api/v1/users/profile/password", json=body, headers=headers)
        assert r.status_code == 204
        assert openphone.hanging >= 1 and sent(ctx, "sms") == sent(ctx, "sms", "failed") == 0


@pytest.mark.asyncio
async def test_notices_leave_only_after_the_commit(
    notify_app: Callable[..., Any], openphone: FakeOpenPhone
) -> None:
    """A notice raised in a transaction is not sent while it is open, never when it rolls
    back, and sent once it commits."""
    app = notify_app()
    ctx: Context = app.state.ctx
    user = await user_with_phone(ctx)
    async with running(app):
        with pytest.raises(RuntimeError):
            async with ctx.db.begin() as db:
                notify_after_commit(db, user.id, "mfa.disabled")
                raise RuntimeError("rolled back")
        async with ctx.db.begin() as db:
            notify_after_commit(db, user.id, "password.reset")
            await asyncio.sleep(0.3)  # the workers run meanwhile
            assert openphone.received == []
        await until(lambda: sent(ctx, "sms") == 1)
        await ctx.notifier.drain()
    [text] = openphone.received
    assert "password was reset" in text.body["content"]


@pytest.mark.asyncio
async def test_a_sign_in_from_a_new_user_agent_or_ip_is_notified(
    notify_app: Callable[..., Any], openphone: FakeOpenPhone
) -> None:
    """The first sign-in ever and a repeat from a known device text nothing; a new IP and a
    new user agent each text `New sign-in` with that IP."""
    app = notify_app()
    ctx: Context = app.state.ctx
    await user_with_phone(ctx)
    async with running(app) as client:
        await login(client)
        await login(client)
        async with asgi_client(app, client_ip="10.9.8.7") as elsewhere:
            await login(elsewhere)
        await until(lambda: sent(ctx, "sms") == 1)
        client.headers["User-Agent"] = "Firefox/140.0 (test)"
        await login(client)
        await until(lambda: sent(ctx, "sms") == 2)
    first, second = (r.body["content"] for r in openphone.received)
    assert "New sign-in" in first and "10.9.8.7" in first
    assert "Firefox/140.0" in second and "127.0.0.1" in second


@pytest.mark.asyncio
async def test_a_replayed_refresh_token_is_notified(
    notify_app: Callable[..., Any], openphone: FakeOpenPhone
) -> None:
    """Refresh reuse, detected by the session service, texts the session's user."""
    app = notify_app(REFRESH_GRACE_SECONDS=0)
    ctx: Context = app.state.ctx
    await user_with_phone(ctx)
    async with running(app) as client:
        refresh = {"refresh_token": (await login(client))["refresh_token"]}
        assert (await client.post("/api/v1/auth/refresh", json=refresh)).status_code == 200
        await asyncio.sleep(0.05)
        replay = await client.post("/api/v1/auth/refresh", json=refresh)
        assert replay.json()["code"] == "refresh_reused"
        await until(lambda: sent(ctx, "sms") == 1)
    assert "session was ended" in openphone.received[0].body["content"]


@pytest.mark.asyncio
async def test_with_redis_a_notice_waits_in_redis_until_an_instance_runs(
    notify_app: Callable[..., Any], openphone: FakeOpenPhone
) -> None:
    """With REDIS_URL a committed notice is kept in Redis (under the prefix) while no
    instance delivers, and the next instance to start sends it."""
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    app = notify_app(REDIS_URL=REDIS_URL, GATEHOUSE_REDIS_PREFIX=prefix)
    ctx: Context = app.state.ctx
    user = await user_with_phone(ctx)
    redis = Redis.from_url(REDIS_URL)
    try:
        await raise_event(ctx, user.id)
        await ctx.notifier.close()  # the push to Redis has landed
        assert await redis.llen(f"{prefix}notify:queue") == 1
        async with running(app):
            await until(lambda: sent(ctx, "sms") == 1)
        assert await redis.llen(f"{prefix}notify:queue") == 0
    finally:
        await redis.delete(f"{prefix}notify:queue")
        await redis.aclose()
    assert len(openphone.received) == 1
