"""Password hashing (argon2id, bcrypt imports) and the password policy, through the API."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from typing import Any

import bcrypt
import httpx
import pytest
import pytest_asyncio
from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from sqlalchemy import select

from gatehouse.audit.service import CLI
from gatehouse.auth.passwords import PasswordHasher, below_owasp
from gatehouse.cli.doctor import check_hashing
from gatehouse.context import Context
from gatehouse.settings import SettingsError, load_settings
from gatehouse.store.db.models import User
from gatehouse.users.importer import ImportRow, import_users
from tests.conftest import PASSWORD, asgi_client, create_user, login

STRONG_12 = "Tr0ub4dor&3x"
LONG_PASSPHRASE = (
    "vivid otter quietly juggles seventeen crimson lanterns beside a frozen waterfall at dawn"
)


def _parameters(encoded: str) -> dict[str, int]:
    """The m/t/p numbers of an encoded argon2 hash (`$argon2id$v=19$m=..,t=..,p=..$...`)."""
    fields = encoded.split("$")[3]
    return {k: int(v) for k, v in (part.split("=") for part in fields.split(","))}


async def _stored_hash(ctx: Context, email: str) -> str:
    async with ctx.db() as db:
        value = await db.scalar(select(User.password_hash).where(User.email == email))
    assert value is not None
    return value


async def _register(client: httpx.AsyncClient, password: str,
                    email: str = "new@example.com") -> httpx.Response:
    return await client.post("/api/v1/auth/register",
                             json={"email": email, "password": password, "name": "New"})


# -- argon2id ---------------------------------------------------------------------------


def test_default_argon2_parameters_are_an_owasp_pair() -> None:
    """Without configuration the hasher uses argon2id with one of OWASP's pairs: m=7 MiB, t=5,
    p=1, which OWASP rates equal to m=19 MiB, t=2 with 12 MiB less held per hash in flight."""
    settings = load_settings()  # the environment is empty here (see conftest._clean_env)
    assert (settings.argon2_memory_kib, settings.argon2_time_cost,
            settings.argon2_parallelism) == (7168, 5, 1)
    assert below_owasp(settings.argon2_memory_kib, settings.argon2_time_cost) is None
    hasher = PasswordHasher(time_cost=settings.argon2_time_cost,
                            memory_kib=settings.argon2_memory_kib,
                            parallelism=settings.argon2_parallelism, workers=1)
    try:
        encoded = hasher.hash_sync(PASSWORD)
    finally:
        hasher.close()
    assert encoded.startswith("$argon2id$v=19$")
    assert _parameters(encoded) == {"m": 7168, "t": 5, "p": 1}


@pytest.mark.parametrize(("memory_kib", "time_cost", "weak"), [
    (47_104, 1, False), (19_456, 2, False), (12_288, 3, False), (9_216, 4, False),
    (7_168, 5, False), (7_168, 9, False), (65_536, 3, False),
    (19_456, 1, True), (12_288, 2, True), (9_216, 3, True), (8_192, 4, True), (8_192, 1, True),
])
def test_owasp_pairs_decide_what_is_below_the_minimum(memory_kib: int, time_cost: int,
                                                      weak: bool) -> None:
    assert (below_owasp(memory_kib, time_cost) is not None) == weak


def test_doctor_warns_about_hashing_below_owasp(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test suite's cheap hashing (m=8 MiB, t=1) is a doctor warning naming OWASP's pairs;
    the default passes quietly."""
    monkeypatch.setenv("GATEHOUSE_ARGON2_MEMORY_KIB", "8192")
    monkeypatch.setenv("GATEHOUSE_ARGON2_TIME_COST", "1")
    check = check_hashing(load_settings())
    assert (check.ok, check.warning) == (True, True)
    assert "m=7168 t=5" in check.detail and "GATEHOUSE_ARGON2_MEMORY_KIB" in check.hint
    monkeypatch.delenv("GATEHOUSE_ARGON2_MEMORY_KIB")
    monkeypatch.delenv("GATEHOUSE_ARGON2_TIME_COST")
    check = check_hashing(load_settings())
    assert (check.ok, check.warning, check.detail) == (True, False, "argon2id m=7168 KiB t=5 p=1")


@pytest.mark.asyncio
async def test_created_user_password_is_stored_as_argon2id(ctx: Context, alice: Any) -> None:
    """A user created through the service gets an argon2id hash with the configured parameters."""
    stored = await _stored_hash(ctx, "alice@example.com")
    assert stored.startswith("$argon2id$")
    assert _parameters(stored) == {"m": ctx.settings.argon2_memory_kib,
                                   "t": ctx.settings.argon2_time_cost,
                                   "p": ctx.settings.argon2_parallelism}
    assert PASSWORD not in stored


# -- bcrypt and argon2 imports are upgraded at the next login -------------------------


def _bcrypt_hash(password: str, prefix: str) -> str:
    encoded = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    return prefix + encoded[4:]


@pytest.mark.asyncio
@pytest.mark.parametrize("prefix", ["$2a$", "$2b$", "$2y$"])
async def test_bcrypt_import_is_rehashed_to_argon2id_on_login(
    ctx: Context, client: httpx.AsyncClient, prefix: str
) -> None:
    """An imported bcrypt hash verifies at login and is replaced by argon2id right after."""
    imported = _bcrypt_hash(PASSWORD, prefix)
    report = await import_users(ctx.db, [ImportRow(1, "legacy@example.com", "Legacy", imported,
                                                   ["user"])], CLI)
    assert (report.imported, report.skipped) == (1, 0)
    assert await _stored_hash(ctx, "legacy@example.com") == imported

    tokens = await login(client, "legacy@example.com")
    assert tokens["user"]["email"] == "legacy@example.com"
    upgraded = await _stored_hash(ctx, "legacy@example.com")
    assert upgraded.startswith("$argon2id$")
    # The upgraded hash still accepts the same password.
    await login(client, "legacy@example.com")


@pytest.mark.asyncio
async def test_wrong_password_does_not_rehash_bcrypt_import(
    ctx: Context, client: httpx.AsyncClient
) -> None:
    """A failed login leaves the imported bcrypt hash untouched."""
    imported = _bcrypt_hash(PASSWORD, "$2b$")
    await import_users(ctx.db, [ImportRow(1, "legacy@example.com", "", imported, ["user"])], CLI)
    r = await client.post("/api/v1/auth/login",
                          json={"email": "legacy@example.com", "password": "wrong-password-99"})
    assert (r.status_code, r.json()["code"]) == (401, "invalid_credentials")
    assert await _stored_hash(ctx, "legacy@example.com") == imported


@pytest.mark.asyncio
async def test_bcrypt_import_with_password_longer_than_72_bytes_still_logs_in(
    ctx: Context, client: httpx.AsyncClient
) -> None:
    """bcrypt only ever read 72 bytes, so a long legacy password keeps working after import."""
    long_password = "q7-" + "x9Lm" * 30  # 123 bytes
    legacy = bcrypt.hashpw(long_password.encode()[:72], bcrypt.gensalt(rounds=4)).decode()
    await import_users(ctx.db, [ImportRow(1, "long@example.com", "", legacy, ["user"])], CLI)
    await login(client, "long@example.com", long_password)
    assert (await _stored_hash(ctx, "long@example.com")).startswith("$argon2id$")


@pytest.mark.asyncio
async def test_argon2_import_with_other_parameters_is_rehashed_on_login(
    ctx: Context, client: httpx.AsyncClient
) -> None:
    """An argon2i hash with foreign parameters verifies and is upgraded to the current argon2id."""
    foreign = Argon2Hasher(time_cost=3, memory_cost=8192 + 1024, parallelism=2,
                           type=Type.I).hash(PASSWORD)
    await import_users(ctx.db, [ImportRow(1, "argon@example.com", "", foreign, ["user"])], CLI)
    await login(client, "argon@example.com")
    upgraded = await _stored_hash(ctx, "argon@example.com")
    assert upgraded.startswith("$argon2id$")
    assert _parameters(upgraded) == {"m": ctx.settings.argon2_memory_kib,
                                     "t": ctx.settings.argon2_time_cost,
                                     "p": ctx.settings.argon2_parallelism}


# -- enumeration safety -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_unknown_email_runs_a_dummy_verification(
    ctx: Context, client: httpx.AsyncClient, alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A login for an unknown email still runs one argon2 verification, like a wrong password."""
    verified: list[str] = []
    original = PasswordHasher._verify_argon2

    def spy(self: PasswordHasher, stored_hash: str, password: str) -> bool:
        verified.append(stored_hash)
        return original(self, stored_hash, password)

    monkeypatch.setattr(PasswordHasher, "_verify_argon2", spy)
    unknown = await client.post("/api/v1/auth/login",
                                json={"email": "nobody@example.com", "password": PASSWORD})
    wrong = await client.post("/api/v1/auth/login",
                              json={"email": "alice@example.com", "password": "not-the-password-9"})
    assert len(verified) == 2
    assert verified[0] == ctx.hasher._dummy_hash
    assert verified[0].startswith("$argon2id$")
    assert (unknown.status_code, unknown.json()["code"]) == (
        wrong.status_code, wrong.json()["code"])


# -- hashing stays off the event loop -------------------------------------------------------


@pytest.mark.asyncio
async def test_password_hashing_does_not_block_the_event_loop(
    ctx: Context, client: httpx.AsyncClient, alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a login's password check runs, /healthz on the same app still answers first."""
    entered = threading.Event()
    release = threading.Event()
    original = ctx.hasher.verify_sync

    def slow_verify(stored_hash: str | None, password: str) -> Any:
        # A blocking sleep: had it run on the event loop, /healthz could not answer meanwhile.
        entered.set()
        release.wait(timeout=10)
        return original(stored_hash, password)

    monkeypatch.setattr(ctx.hasher, "verify_sync", slow_verify)
    login_task = asyncio.create_task(
        client.post("/api/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD})
    )
    assert await asyncio.to_thread(entered.wait, 10)
    health = await client.get("/healthz")
    assert (health.status_code, login_task.done()) == (200, False)
    release.set()
    r = await login_task
    assert r.status_code == 200


# -- the policy -------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def signup_client(make_app: Any) -> Any:
    async with asgi_client(make_app(GATEHOUSE_SIGNUP="open")) as c:
        yield c


@pytest.mark.asyncio
async def test_password_shorter_than_twelve_characters_is_refused(signup_client: Any) -> None:
    """The default minimum length is 12; an 11-character password gets 422 with the reason."""
    r = await _register(signup_client, STRONG_12[:-1])
    body = r.json()
    assert (r.status_code, body["code"]) == (422, "validation_failed")
    assert "too short" in body["detail"]
    assert body["errors"][0]["loc"] == ["body", "password"]
    assert STRONG_12[:-1] not in r.text


@pytest.mark.asyncio
async def test_twelve_character_password_is_accepted(signup_client: Any) -> None:
    """A strong password of exactly the minimum length is accepted."""
    r = await _register(signup_client, STRONG_12)
    assert r.status_code == 201
    await login(signup_client, "new@example.com", STRONG_12)


@pytest.mark.asyncio
async def test_long_passphrase_is_accepted(signup_client: Any) -> None:
    """Passphrases of 64 characters and more are allowed (and work at login)."""
    assert len(LONG_PASSPHRASE) > 64
    r = await _register(signup_client, LONG_PASSPHRASE)
    assert r.status_code == 201, r.text
    await login(signup_client, "new@example.com", LONG_PASSPHRASE)


@pytest.mark.asyncio
async def test_password_of_1024_bytes_is_accepted(signup_client: Any) -> None:
    """1024 bytes is the longest password allowed."""
    password = "".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(16))
    assert len(password.encode()) == 1024
    r = await _register(signup_client, password)
    assert r.status_code == 201, r.text
    await login(signup_client, "new@example.com", password)


@pytest.mark.asyncio
async def test_password_over_1024_bytes_is_refused(signup_client: Any) -> None:
    """A password over 1024 bytes (counted in UTF-8) is 422 with the reason, not hashed."""
    password = "é" * 513  # 513 characters, 1026 bytes
    r = await _register(signup_client, password)
    body = r.json()
    assert (r.status_code, body["code"]) == (422, "validation_failed")
    assert "too long" in body["detail"]


@pytest.mark.asyncio
@pytest.mark.parametrize("password", ["password1234", "qwertyuiop123", "123456789012"])
async def test_common_password_is_refused(signup_client: Any, password: str) -> None:
    """Common or easily guessed passwords are 422, and `detail` says they are common."""
    r = await _register(signup_client, password)
    body = r.json()
    assert (r.status_code, body["code"]) == (422, "validation_failed")
    assert "common" in body["detail"]
    assert password not in r.text


@pytest.mark.asyncio
async def test_email_as_password_is_refused(signup_client: Any) -> None:
    """The account's own email (in any case) is refused as its password."""
    r = await _register(signup_client, "New@Example.com", email="new@example.com")
    body = r.json()
    assert (r.status_code, body["code"]) == (422, "validation_failed")
    assert "email" in body["detail"]


@pytest.mark.asyncio
async def test_password_change_applies_the_policy_to_the_new_password(
    client: httpx.AsyncClient, alice: Any
) -> None:
    """A weak new_password on password change is 422 naming new_password, and the old one still
    works.
    """
    tokens = await login(client)
    r = await client.post(
        "/api/v1/users/profile/password",
        json={"current_password": PASSWORD, "new_password": "password1234"},
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    body = r.json()
    assert (r.status_code, body["code"]) == (422, "validation_failed")
    assert body["errors"][0]["loc"] == ["body", "new_password"]
    await login(client)


@pytest.mark.asyncio
async def test_admin_create_applies_the_policy(ctx: Context, client: httpx.AsyncClient) -> None:
    """Admin-created users obey the same policy as self-registered ones."""
    await create_user(ctx, "root@example.com", ["admin"])
    tokens = await login(client, "root@example.com")
    r = await client.post(
        "/api/v1/admin/users",
        json={"email": "weak@example.com", "password": "short", "name": "W", "roles": ["user"]},
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert (r.status_code, r.json()["code"]) == (422, "validation_failed")
    assert "too short" in r.json()["detail"]


# -- bounded hashing queue ------------------------------------------------------------------

# One hashing thread and slow hashes, so concurrent requests find it busy.
SLOW_HASHING = {"GATEHOUSE_HASH_WORKERS": "1", "GATEHOUSE_ARGON2_MEMORY_KIB": "65536",
                "GATEHOUSE_RATE_LIMITS": "off", "LOGIN_MAX_FAILURES": "1000"}


def _assert_overloaded(r: httpx.Response) -> None:
    assert (r.status_code, r.json()["code"]) == (503, "service_unavailable"), r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["retry-after"] == str(r.json()["retry_after"]) == "7"


@pytest.mark.asyncio
async def test_login_flood_beyond_the_hash_queue_gets_503_with_retry_after(make_app: Any) -> None:
    """With GATEHOUSE_HASH_QUEUE_MAX reached, further logins answer 503 service_unavailable with
    Retry-After at once instead of queueing without bound; none is a 500, and the queue drains."""
    app = make_app(**SLOW_HASHING, GATEHOUSE_ARGON2_TIME_COST="4", GATEHOUSE_HASH_QUEUE_MAX="1",
                   GATEHOUSE_RETRY_AFTER="7")
    await create_user(app.state.ctx)
    async with asgi_client(app) as client:
        answers = await asyncio.gather(*(
            client.post("/api/v1/auth/login", json={"email": "alice@example.com",
                                                    "password": PASSWORD})
            for _ in range(12)
        ))
        statuses = sorted(r.status_code for r in answers)
        assert set(statuses) == {200, 503}, statuses
        # One hashing now, one waiting: the rest were refused without touching the pool.
        assert statuses.count(200) <= 4, statuses
        for r in answers:
            if r.status_code == 503:
                _assert_overloaded(r)
        assert (await client.post("/api/v1/auth/login", json={
            "email": "alice@example.com", "password": PASSWORD})).status_code == 200


@pytest.mark.asyncio
async def test_register_and_password_change_answer_503_while_the_hash_queue_is_full(
    make_app: Any,
) -> None:
    """Register and password change share the bounded hashing queue: while it is full they
    answer 503 with Retry-After, and work again once it drains."""
    app = make_app(**SLOW_HASHING, GATEHOUSE_ARGON2_TIME_COST="10", GATEHOUSE_HASH_QUEUE_MAX="0",
                   GATEHOUSE_RETRY_AFTER="7", GATEHOUSE_SIGNUP="open")
    await create_user(app.state.ctx)
    change = {"current_password": PASSWORD, "new_password": LONG_PASSPHRASE}
    async with asgi_client(app) as client:
        tokens = await login(client)
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        busy = asyncio.create_task(client.post(
            "/api/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD}))
        await asyncio.sleep(0.3)  # the slow login now holds the only place (about 1 s of hashing)
        _assert_overloaded(await _register(client, LONG_PASSPHRASE))
        _assert_overloaded(await client.post("/api/v1/users/profile/password", json=change,
                                              headers=auth))
        assert (await busy).status_code == 200
        assert (await _register(client, LONG_PASSPHRASE)).status_code == 201


@pytest.mark.asyncio
@pytest.mark.parametrize("nice", [0, 7])
async def test_hash_threads_run_below_the_event_loop(nice: int) -> None:
    """The hash threads run `GATEHOUSE_HASH_NICE` steps below the rest of the process (default
    10), so a login storm cannot take the core from token checks; 0 leaves them level."""
    assert load_settings().hash_nice == 10
    with pytest.raises(SettingsError, match="GATEHOUSE_HASH_NICE: Input should be less than"):
        load_settings(GATEHOUSE_HASH_NICE="20")
    hasher = PasswordHasher(time_cost=1, memory_kib=8, parallelism=1, workers=2, nice=nice)
    seen: list[int] = []

    def record_thread(_: str) -> str:
        seen.append(threading.get_native_id())
        return _

    try:
        await asyncio.gather(*(hasher._run(record_thread, "x") for _ in range(8)))
    finally:
        hasher.close()
    process = os.getpriority(os.PRIO_PROCESS, 0)
    assert seen and {os.getpriority(os.PRIO_PROCESS, tid) for tid in seen} == {process + nice}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == process
