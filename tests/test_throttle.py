"""Login throttling against brute force (API.md §4): doubling waits, ceilings, isolation, unlock."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from gatehouse.context import Context
from tests._abuse_helpers import metric, metrics_text
from tests.conftest import PASSWORD, asgi_client, bearer, create_user, login, run_cli

WRONG = "not-the-password-at-all"
METRICS_TOKEN = "metrics-scraper-token-0123456789abcdef"


async def _attempt(
    client: httpx.AsyncClient, email: str = "alice@example.com", password: str = WRONG
) -> httpx.Response:
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password})


def _throttled(r: httpx.Response) -> int:
    """Assert a 429 login_throttled answer and return its wait."""
    assert r.status_code == 429, r.text
    body = r.json()
    assert (body["code"], body["type"]) == ("login_throttled", "/errors/login_throttled")
    assert r.headers["retry-after"] == str(body["retry_after"])
    wait: int = body["retry_after"]
    return wait


def _sleep_until(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.monotonic()))


async def _audit(
    client: httpx.AsyncClient, admin_headers: dict[str, str], type_: str
) -> list[dict[str, Any]]:
    r = await client.get(
        "/api/v1/admin/audit", params={"type": type_, "limit": 200}, headers=admin_headers
    )
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


@pytest.mark.asyncio
async def test_waits_double_after_max_failures_and_reset_on_success(make_app: Any) -> None:
    """After LOGIN_MAX_FAILURES the pair waits 1 s, then 2 s; 429s do not count, and success resets
    the counter."""
    app = make_app(LOGIN_MAX_FAILURES="2")
    await create_user(app.state.ctx)
    async with asgi_client(app) as client:
        assert [(await _attempt(client)).status_code for _ in range(2)] == [401, 401]
        locked_at = time.monotonic()
        assert _throttled(await _attempt(client, password=PASSWORD)) == 1  # even the right password
        for _ in range(5):  # answered 429, not checked, not counted
            assert _throttled(await _attempt(client)) == 1
        _sleep_until(locked_at + 1.05)
        assert (await _attempt(client)).status_code == 401  # after the wait: checked again
        locked_at = time.monotonic()
        assert _throttled(await _attempt(client)) == 2  # and the next wait doubled (not 2**7)
        _sleep_until(locked_at + 1.1)
        assert _throttled(await _attempt(client, password=PASSWORD)) == 1  # still waiting
        _sleep_until(locked_at + 2.05)
        assert (await _attempt(client, password=PASSWORD)).status_code == 200
        # The success reset the email+IP counter: two failures again before the next wait.
        assert [(await _attempt(client)).status_code for _ in range(3)] == [401, 401, 429]


@pytest.mark.asyncio
async def test_wait_is_capped_by_login_max_wait(make_app: Any) -> None:
    """The doubling wait never exceeds GATEHOUSE_LOGIN_MAX_WAIT."""
    app = make_app(LOGIN_MAX_FAILURES="1", GATEHOUSE_LOGIN_MAX_WAIT="1")
    await create_user(app.state.ctx)
    async with asgi_client(app) as client:
        assert (await _attempt(client)).status_code == 401
        for _ in range(2):
            locked_at = time.monotonic()
            assert _throttled(await _attempt(client)) == 1
            _sleep_until(locked_at + 1.05)
            assert (await _attempt(client)).status_code == 401
        assert _throttled(await _attempt(client)) == 1


@pytest.mark.asyncio
async def test_attack_on_one_account_locks_neither_other_accounts_nor_other_ips(
    make_app: Any,
) -> None:
    """A locked email+IP pair leaves other accounts from that IP and the same account from other IPs
    alone."""
    app = make_app(LOGIN_MAX_FAILURES="2")
    ctx: Context = app.state.ctx
    await create_user(ctx)
    await create_user(ctx, "bob@example.com", name="Bob")
    async with (
        asgi_client(app, client_ip="10.0.0.66") as attacker,
        asgi_client(app, client_ip="10.0.0.7") as alice_at_home,
    ):
        for _ in range(2):
            await _attempt(attacker)
        _throttled(await _attempt(attacker, password=PASSWORD))
        assert (await _attempt(attacker, "bob@example.com", PASSWORD)).status_code == 200
        assert (await _attempt(alice_at_home, password=PASSWORD)).status_code == 200


@pytest.mark.asyncio
async def test_unknown_email_is_answered_exactly_like_a_wrong_password(make_app: Any) -> None:
    """Failures and throttling look the same for an unknown email as for an existing one."""
    app = make_app(LOGIN_MAX_FAILURES="2")
    await create_user(app.state.ctx)

    def shape(r: httpx.Response) -> tuple[Any, ...]:
        body = {k: v for k, v in r.json().items() if k != "request_id"}
        # The request id and the API rate-limit countdown differ from request to request anyway.
        varying = {"x-request-id", "content-length", "ratelimit-remaining", "ratelimit-reset"}
        headers = {k: v for k, v in r.headers.items() if k not in varying}
        return r.status_code, body, headers

    async with asgi_client(app) as client:
        real = [shape(await _attempt(client, "alice@example.com")) for _ in range(3)]
        ghost = [shape(await _attempt(client, "nobody@example.com")) for _ in range(3)]
    assert real == ghost
    assert [answer[0] for answer in real] == [401, 401, 429]
    assert real[0][1]["code"] == "invalid_credentials"


@pytest.mark.asyncio
async def test_per_email_ceiling_throttles_the_account_across_ips(make_app: Any) -> None:
    """More than GATEHOUSE_LOGIN_EMAIL_CEILING failures for one email from many IPs throttle it
    everywhere for the window."""
    app = make_app(LOGIN_MAX_FAILURES="100", GATEHOUSE_LOGIN_EMAIL_CEILING="3")
    ctx: Context = app.state.ctx
    await create_user(ctx)
    await create_user(ctx, "bob@example.com", name="Bob")
    for i in range(4):
        async with asgi_client(app, client_ip=f"10.1.0.{i}") as client:
            assert (await _attempt(client)).status_code == 401
    async with asgi_client(app, client_ip="10.1.1.1") as fresh:
        wait = _throttled(await _attempt(fresh, password=PASSWORD))
        assert 3590 <= wait <= 3600  # until GATEHOUSE_LOGIN_EMAIL_WINDOW ends
        assert (await _attempt(fresh, "bob@example.com", PASSWORD)).status_code == 200


@pytest.mark.asyncio
async def test_per_ip_ceiling_throttles_the_ip_across_emails(make_app: Any) -> None:
    """More than GATEHOUSE_LOGIN_IP_CEILING failures from one IP across emails throttle that IP
    only."""
    app = make_app(LOGIN_MAX_FAILURES="100", GATEHOUSE_LOGIN_IP_CEILING="3")
    await create_user(app.state.ctx)
    async with (
        asgi_client(app, client_ip="10.2.0.1") as sprayer,
        asgi_client(app, client_ip="10.2.0.2") as other,
    ):
        for i in range(4):
            assert (await _attempt(sprayer, f"user{i}@example.com")).status_code == 401
        wait = _throttled(await _attempt(sprayer, password=PASSWORD))
        assert 890 <= wait <= 900  # until GATEHOUSE_LOGIN_IP_WINDOW ends
        assert (await _attempt(other, password=PASSWORD)).status_code == 200


@pytest.mark.asyncio
async def test_ipv6_pair_throttle_counts_the_whole_64(make_app: Any) -> None:
    """Moving to another address of the same IPv6 /64 does not escape the email+IP lock; another
    /64 is another client. Audit events keep the full address."""
    app = make_app(LOGIN_MAX_FAILURES="2")
    ctx: Context = app.state.ctx
    await create_user(ctx)
    await create_user(ctx, "root@example.com", ["admin"], name="Root")
    async with (
        asgi_client(app, client_ip="2001:db8:7:8::1") as attacker,
        asgi_client(app, client_ip="2001:db8:7:8:dead:beef:0:1") as same_64,
        asgi_client(app, client_ip="2001:db8:7:9::1") as next_64,
        asgi_client(app) as ops,
    ):
        assert (await _attempt(attacker)).status_code == 401
        assert (await _attempt(same_64)).status_code == 401
        _throttled(await _attempt(same_64, password=PASSWORD))
        _throttled(await _attempt(attacker, password=PASSWORD))
        assert (await _attempt(next_64, password=PASSWORD)).status_code == 200
        failures = await _audit(ops, bearer(await login(ops, "root@example.com")), "login.failure")
    assert sorted(e["ip"] for e in failures) == ["2001:db8:7:8::1", "2001:db8:7:8:dead:beef:0:1"]


@pytest.mark.asyncio
async def test_ipv6_per_ip_ceiling_counts_the_whole_64(make_app: Any) -> None:
    """Spraying many emails from many addresses of one /64 reaches the per-IP ceiling as from one
    address."""
    app = make_app(LOGIN_MAX_FAILURES="100", GATEHOUSE_LOGIN_IP_CEILING="3")
    await create_user(app.state.ctx)
    for i in range(4):
        async with asgi_client(app, client_ip=f"2001:db8:a:b::{i + 1:x}") as sprayer:
            assert (await _attempt(sprayer, f"user{i}@example.com")).status_code == 401
    async with asgi_client(app, client_ip="2001:db8:a:b:1:2:3:4") as same_64:
        _throttled(await _attempt(same_64, password=PASSWORD))
    async with asgi_client(app, client_ip="2001:db8:a:c::1") as next_64:
        assert (await _attempt(next_64, password=PASSWORD)).status_code == 200


@pytest.mark.asyncio
async def test_ipv6_wrong_current_password_counts_for_the_whole_64(make_app: Any) -> None:
    """Guessing the current password through password change from rotating addresses of one /64
    meets the same email+IP lock as login."""
    app = make_app(LOGIN_MAX_FAILURES="2")
    await create_user(app.state.ctx)
    body = {"current_password": WRONG, "new_password": "a-brand-new-passphrase-42"}
    async with asgi_client(app, client_ip="2001:db8:c:d::1") as first:
        tokens = await login(first)
        r = await first.post("/api/v1/users/profile/password", json=body, headers=bearer(tokens))
        assert r.status_code == 422
    async with asgi_client(app, client_ip="2001:db8:c:d::2") as second:
        r = await second.post("/api/v1/users/profile/password", json=body, headers=bearer(tokens))
        assert r.status_code == 422
        _throttled(await _attempt(second, password=PASSWORD))


@pytest.mark.asyncio
async def test_parallel_guesses_get_no_more_verdicts_than_max_failures(make_app: Any) -> None:
    """A burst of parallel wrong guesses cannot outrun the counter: only LOGIN_MAX_FAILURES of them
    get a 401."""
    app = make_app(LOGIN_MAX_FAILURES="3", GATEHOUSE_RATE_LIMITS="off")
    await create_user(app.state.ctx)
    async with asgi_client(app) as client:
        answers = await asyncio.gather(
            *(_attempt(client, password=f"guess-{i}") for i in range(24))
        )
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [401] * 3 + [429] * 21


@pytest.mark.asyncio
async def test_throttled_logins_are_audited_and_counted(make_app: Any) -> None:
    """Each throttled attempt writes a login.throttled audit event and counts in
    logins_total{result="throttled"}."""
    app = make_app(LOGIN_MAX_FAILURES="2", GATEHOUSE_METRICS_TOKEN=METRICS_TOKEN)
    ctx: Context = app.state.ctx
    await create_user(ctx)
    await create_user(ctx, "root@example.com", ["admin"], name="Root")
    async with asgi_client(app, client_ip="10.3.0.1") as client, asgi_client(app) as ops:
        root = bearer(await login(ops, "root@example.com"))
        for _ in range(2):
            await _attempt(client)
        for _ in range(3):
            _throttled(await _attempt(client))
        events = await _audit(ops, root, "login.throttled")
        failures = await _audit(ops, root, "login.failure")
        text = await metrics_text(ops, METRICS_TOKEN)
    assert [(e["ip"], e["data"].get("email")) for e in events] == [
        ("10.3.0.1", "alice@example.com")
    ] * 3
    assert len(failures) == 2
    assert metric(text, "gatehouse_auth_logins_total", result="throttled") == 3
    assert metric(text, "gatehouse_auth_logins_total", result="invalid_credentials") == 2


@pytest.mark.asyncio
async def test_a_password_typed_into_the_email_field_stays_out_of_the_audit_log(
    make_app: Any,
) -> None:
    """login.failure and login.throttled keep the identifier only when it is a well-formed
    address; anything else (a password typed in the wrong field) is recorded as a marker."""
    app = make_app(LOGIN_MAX_FAILURES="1")
    ctx: Context = app.state.ctx
    await create_user(ctx, "root@example.com", ["admin"], name="Root")
    secret = "Sup3r-s3cret passphrase!"
    async with asgi_client(app, client_ip="10.5.0.1") as client, asgi_client(app) as ops:
        assert (await _attempt(client, email=secret, password="x")).status_code == 401
        _throttled(await _attempt(client, email=secret, password="x"))
        assert (await _attempt(client, email="bob@example.com")).status_code == 401
        root = bearer(await login(ops, "root@example.com"))
        r = await ops.get("/api/v1/admin/audit", params={"limit": 200}, headers=root)
        assert r.status_code == 200, r.text
    events = [e for e in r.json()["items"] if e["type"] in ("login.failure", "login.throttled")]
    assert secret.lower() not in r.text.lower()
    seen = [(e["type"], e["data"].get("email"), e["data"].get("email_malformed")) for e in events]
    assert sorted(seen, key=repr) == [
        ("login.failure", "bob@example.com", None),
        ("login.failure", None, True),
        ("login.throttled", None, True),
    ]


@pytest.mark.asyncio
async def test_wrong_current_password_on_password_change_counts_as_a_failed_login(
    make_app: Any,
) -> None:
    """Wrong current_password answers 422 and counts, so guessing it through password change gets
    throttled too."""
    app = make_app(LOGIN_MAX_FAILURES="2")
    await create_user(app.state.ctx)
    async with asgi_client(app) as client:
        tokens = await login(client)
        body = {"current_password": WRONG, "new_password": "a-brand-new-passphrase-42"}
        for _ in range(2):
            r = await client.post(
                "/api/v1/users/profile/password", json=body, headers=bearer(tokens)
            )
            assert (r.status_code, r.json()["code"]) == (422, "validation_failed")
        _throttled(await _attempt(client, password=PASSWORD))
        right = {**body, "current_password": PASSWORD}
        _throttled(
            await client.post("/api/v1/users/profile/password", json=right, headers=bearer(tokens))
        )


@pytest.mark.asyncio
async def test_admin_unlock_clears_every_counter_of_the_account(make_app: Any) -> None:
    """POST /admin/users/{id}/unlock lifts pair locks and the per-email ceiling at once, and is
    audited."""
    app = make_app(LOGIN_MAX_FAILURES="2", GATEHOUSE_LOGIN_EMAIL_CEILING="2")
    ctx: Context = app.state.ctx
    alice = await create_user(ctx)
    await create_user(ctx, "root@example.com", ["admin"], name="Root")
    async with (
        asgi_client(app, client_ip="10.4.0.1") as one,
        asgi_client(app, client_ip="10.4.0.2") as two,
        asgi_client(app) as ops,
    ):
        for client in (one, one, two):
            assert (await _attempt(client)).status_code == 401
        _throttled(await _attempt(one, password=PASSWORD))
        _throttled(await _attempt(two, password=PASSWORD))
        root = bearer(await login(ops, "root@example.com"))
        r = await ops.post(f"/api/v1/admin/users/{alice.id}/unlock", headers=root)
        assert r.status_code == 204
        assert (await _attempt(one, password=PASSWORD)).status_code == 200
        assert (await _attempt(two, password=PASSWORD)).status_code == 200
        events = await _audit(ops, root, "user.unlocked")
    assert [e["data"]["target_user_id"] for e in events] == [alice.id]


@pytest.mark.asyncio
async def test_unlock_needs_users_write(make_app: Any) -> None:
    """A caller without users:write cannot unlock an account (403 forbidden)."""
    app = make_app()
    alice = await create_user(app.state.ctx)
    async with asgi_client(app) as client:
        r = await client.post(
            f"/api/v1/admin/users/{alice.id}/unlock", headers=bearer(await login(client))
        )
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")


def test_cli_unlock_reaches_a_running_server(make_server: Any, database_url: str) -> None:
    """`gatehouse users unlock EMAIL` in another process lifts the lock on a running server within
    seconds."""
    env = {"DATABASE_URL": database_url}
    created = run_cli(
        "users", "create", "--email", "alice@example.com", "--password", PASSWORD, env=env
    )
    assert created.returncode == 0, created.stderr
    server = make_server(LOGIN_MAX_FAILURES="100", GATEHOUSE_LOGIN_EMAIL_CEILING="2")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        login_url = "/api/v1/auth/login"
        for _ in range(3):
            client.post(login_url, json={"email": "alice@example.com", "password": WRONG})
        r = client.post(login_url, json={"email": "alice@example.com", "password": PASSWORD})
        assert (
            _throttled(r) > 60
        )  # the per-email ceiling: it would not lift by itself during the test
        unlocked = run_cli("users", "unlock", "alice@example.com", env=env)
        assert unlocked.returncode == 0, unlocked.stderr
        deadline = time.monotonic() + 5
        while True:
            r = client.post(login_url, json={"email": "alice@example.com", "password": PASSWORD})
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert r.status_code == 200, r.text


def test_cli_unlock_of_an_unknown_email_fails_cleanly(database_url: str) -> None:
    """Unlocking an email that has no account exits non-zero with one line and no traceback."""
    result = run_cli("users", "unlock", "nobody@example.com", env={"DATABASE_URL": database_url})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "nobody@example.com" in result.stderr
