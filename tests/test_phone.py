"""The profile's notification switches and phone, and proving the phone by a texted code
(API.md §10). Texts go to a local fake OpenPhone (tests/_fake_openphone.py), a real HTTP
server; the code the tests type back is read from the request it received.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests._fake_openphone import FakeOpenPhone
from tests.conftest import bearer, create_user, login
from tests.test_alerts import until
from tests.test_recovery import audit, running

P = "/api/v1/users/profile"
PHONE = "+14155552671"
OTHER_PHONE = "+442079460958"
API_KEY = "op-test-key-123"
SENDER = "+14155550100"


@pytest.fixture
def sms_app(make_app: Callable[..., Any], openphone: FakeOpenPhone) -> Callable[..., Any]:
    def factory(**env: Any) -> Any:
        return make_app(OPENPHONE_API_KEY=API_KEY, OPENPHONE_FROM=SENDER,
                        OPENPHONE_API_URL=openphone.url, **env)
    return factory


async def signed_in(
    app: Any, client: httpx.AsyncClient, phone: str | None = PHONE
) -> dict[str, str]:
    """Alice, signed in, with `phone` on her profile."""
    await create_user(app.state.ctx)
    headers = bearer(await login(client))
    if phone:
        r = await client.patch(P, json={"phone": phone}, headers=headers)
        assert r.status_code == 200, r.text
    return headers


async def request_code(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.post(f"{P}/phone/verify-request", headers=headers)


async def send_code(
    client: httpx.AsyncClient, headers: dict[str, str], code: str
) -> httpx.Response:
    return await client.post(f"{P}/phone/verify", json={"code": code}, headers=headers)


async def code_texted(openphone: FakeOpenPhone, count: int) -> str:
    await until(lambda: len(openphone.received) >= count)
    return openphone.code_sent_to(PHONE)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


@pytest.mark.asyncio
async def test_profile_shows_switches_and_phone_and_patch_changes_only_what_is_sent(
    sms_app: Callable[..., Any]
) -> None:
    """A new profile has every channel on and no phone; PATCH changes one switch, stores the
    phone in E.164, refuses a number that is not one (422), and `phone: null` removes it."""
    app = sms_app()
    async with running(app) as client:
        headers = await signed_in(app, client, phone=None)
        profile = (await client.get(P, headers=headers)).json()
        assert profile["notify"] == {"push": True, "sms": True, "email": True}
        assert (profile["phone"], profile["phone_verified"]) == (None, False)
        r = await client.patch(P, json={"notify": {"sms": False}, "phone": "+1 415 555 2671"},
                               headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["notify"] == {"push": True, "sms": False, "email": True}
        assert r.json()["phone"] == PHONE and r.json()["name"] == "Alice"
        assert (await client.get(P, headers=headers)).json()["phone"] == PHONE
        bad = await client.patch(P, json={"phone": "12345"}, headers=headers)
        assert (bad.status_code, bad.json()["code"]) == (422, "validation_failed")
        assert "12345" not in bad.text
        r = await client.patch(P, json={"phone": None}, headers=headers)
        assert r.json()["phone"] is None


@pytest.mark.asyncio
async def test_the_texted_code_verifies_the_phone_and_is_audited(
    sms_app: Callable[..., Any], openphone: FakeOpenPhone
) -> None:
    """verify-request answers 202 and OpenPhone gets POST /v1/messages with the bare API key,
    the sender and the phone; that code answers 204, the phone is verified, `phone.verified`
    is audited; a wrong code before it is 422."""
    app = sms_app()
    async with running(app) as client:
        headers = await signed_in(app, client)
        assert (await request_code(client, headers)).status_code == 202
        code = await code_texted(openphone, 1)
        [sent] = openphone.received
        assert (sent.method, sent.path) == ("POST", "/v1/messages")
        assert sent.headers["authorization"] == API_KEY
        assert sent.headers["content-type"] == "application/json"
        assert sent.body == {"content": sent.body["content"], "from": SENDER, "to": [PHONE]}
        miss = await send_code(client, headers, wrong(code))
        assert (miss.status_code, miss.json()["code"]) == (422, "validation_failed")
        assert (await send_code(client, headers, code)).status_code == 204
        assert (await client.get(P, headers=headers)).json()["phone_verified"] is True
        again = await send_code(client, headers, code)
        assert again.status_code == 422  # spent
    events = await audit(app.state.ctx, "phone.verified")
    assert len(events) == 1 and code not in str(events[0].data)


@pytest.mark.asyncio
async def test_at_most_three_codes_an_hour(
    sms_app: Callable[..., Any], openphone: FakeOpenPhone
) -> None:
    """The fourth verify-request within the hour answers 429 rate_limited with Retry-After,
    and no fourth text leaves."""
    app = sms_app()
    async with running(app) as client:
        headers = await signed_in(app, client)
        for _ in range(3):
            assert (await request_code(client, headers)).status_code == 202
        fourth = await request_code(client, headers)
        assert (fourth.status_code, fourth.json()["code"]) == (429, "rate_limited")
        assert 0 < int(fourth.headers["Retry-After"]) <= 3600
        await until(lambda: len(openphone.received) >= 3)
        await app.state.ctx.sms.drain()
    assert len(openphone.received) == 3


@pytest.mark.asyncio
async def test_five_wrong_codes_spend_it(
    sms_app: Callable[..., Any], openphone: FakeOpenPhone
) -> None:
    """After five wrong codes even the right one answers 422; a new code works."""
    app = sms_app()
    async with running(app) as client:
        headers = await signed_in(app, client)
        await request_code(client, headers)
        code = await code_texted(openphone, 1)
        for _ in range(5):
            assert (await send_code(client, headers, wrong(code))).status_code == 422
        assert (await send_code(client, headers, code)).status_code == 422
        await request_code(client, headers)
        fresh = await code_texted(openphone, 2)
        assert (await send_code(client, headers, fresh)).status_code == 204


@pytest.mark.asyncio
async def test_changing_the_phone_unverifies_it_and_voids_its_code(
    sms_app: Callable[..., Any], openphone: FakeOpenPhone
) -> None:
    """A verified phone changed to another number is unverified again, and a code texted
    before the change does not verify the new number."""
    app = sms_app()
    async with running(app) as client:
        headers = await signed_in(app, client)
        await request_code(client, headers)
        code = await code_texted(openphone, 1)
        assert (await send_code(client, headers, code)).status_code == 204
        await request_code(client, headers)  # verified: nothing is texted
        r = await client.patch(P, json={"phone": OTHER_PHONE}, headers=headers)
        assert (r.json()["phone"], r.json()["phone_verified"]) == (OTHER_PHONE, False)
        await request_code(client, headers)
        await until(lambda: len(openphone.received) >= 2)
        stale = openphone.code_sent_to(OTHER_PHONE)
        await client.patch(P, json={"phone": PHONE}, headers=headers)
        assert (await send_code(client, headers, stale)).status_code == 422
        assert (await client.get(P, headers=headers)).json()["phone_verified"] is False
    assert len(openphone.received) == 2


@pytest.mark.asyncio
async def test_verify_request_without_a_phone_is_refused(sms_app: Callable[..., Any]) -> None:
    """Asking for a code with no phone on the profile answers 422."""
    app = sms_app()
    async with running(app) as client:
        headers = await signed_in(app, client, phone=None)
        r = await request_code(client, headers)
        assert (r.status_code, r.json()["code"]) == (422, "validation_failed")

