"""REDIS_URL as users run Redis (API.md §6, issue 12): TLS (`rediss://`), Sentinel
(`redis+sentinel://`) and Cluster (`redis+cluster://`), each a real server of the test's own.

On each, two app instances share revocations and rate limits through that Redis, and every
key they write is under the deployment's prefix (read from the data nodes directly).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from gatehouse.settings import SettingsError, load_settings
from gatehouse.store.kv.redis import RedisKV
from tests._servers import RedisProcess
from tests._smtp import make_certificate
from tests.conftest import BASE_ENV, asgi_client, bearer, create_user, free_port, login

P = "/api/v1"


@pytest.fixture
def backend() -> str:
    """The Redis flavour is under test here; SQLite keeps the module fast."""
    return "sqlite"


def _start(*servers: RedisProcess) -> None:
    for server in servers:
        server.start()


def _stop(*servers: RedisProcess) -> None:
    for server in servers:
        server.kill()


def _keys(nodes: list[dict[str, Any]], prefix: str) -> set[str]:
    """Every key under `prefix` on the data nodes, read with plain redis-py clients."""
    found: set[str] = set()
    for node in nodes:
        with redis.Redis(host="127.0.0.1", decode_responses=True, **node) as client:
            found |= set(client.scan_iter(match=f"{prefix}*", count=500))
    return found


async def refused_within(client: httpx.AsyncClient, tokens: dict[str, Any],
                         seconds: float) -> bool:
    """The access token answers 401 on `client`'s instance before `seconds` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        status = (await client.get(f"{P}/users/profile", headers=bearer(tokens))).status_code
        if status == 401:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)


async def _two_instances_share_everything(make_app: Any, url: str,
                                          nodes: list[dict[str, Any]]) -> None:
    """Login on A, refresh on B, logout on A refuses the token on B; the login bucket spent
    on A holds on B; the keys are in this Redis, under the prefix."""
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    env = {"REDIS_URL": url, "GATEHOUSE_REDIS_PREFIX": prefix,
           "GATEHOUSE_AUTH_RATE_LIMIT": "2/minute"}
    app_a, app_b = make_app(**env), make_app(**env)
    await create_user(app_a.state.ctx)
    async with asgi_client(app_a) as a, asgi_client(app_b) as b:
        first = await login(a)
        body = {"refresh_token": first["refresh_token"]}
        refreshed = await b.post(f"{P}/auth/refresh", json=body)
        assert refreshed.status_code == 200, refreshed.text
        tokens = refreshed.json()
        assert (await b.get(f"{P}/users/profile", headers=bearer(tokens))).status_code == 200
        assert (await a.post(f"{P}/auth/logout", headers=bearer(tokens))).status_code == 204
        assert await refused_within(b, tokens, 1.0)  # API.md §3: on every instance within 1 s
        # The login bucket (2/minute) has one hit from A; one more on B, then A is refused.
        wrong = {"email": "alice@example.com", "password": "wrong-password-123"}
        assert (await b.post(f"{P}/auth/login", json=wrong)).status_code == 401
        limited = await a.post(f"{P}/auth/login", json=wrong)
        assert limited.status_code == 429, limited.text
    written = _keys(nodes, prefix)
    assert any(k.startswith(f"{prefix}LIMITS:") for k in written), written
    assert any(k.startswith(f"{prefix}rev:") for k in written), written


# The Redis fixtures come before make_app in each test, so the apps close before Redis stops.
@pytest.fixture
def tls(tmp_path: Path) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    cert, key = make_certificate(tmp_path)
    server = RedisProcess(ssl=True, ssl_ca_certs=str(cert))
    server.args = ["--port", "0", "--tls-port", str(server.port), "--tls-cert-file", str(cert),
                   "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
                   "--tls-auth-clients", "no"]
    try:
        server.start()
        yield (f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={cert}",
               [{"port": server.port, "ssl": True, "ssl_ca_certs": str(cert)}])
    finally:
        server.kill()


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    master = RedisProcess()
    config = tmp_path / "sentinel.conf"
    config.write_text(f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n")
    watcher = RedisProcess("--sentinel", "--dir", str(tmp_path), config=str(config))
    try:
        _start(master, watcher)
        yield f"redis+sentinel://127.0.0.1:{watcher.port}/mymaster/0", [{"port": master.port}]
    finally:
        _stop(watcher, master)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    nodes = [RedisProcess() for _ in range(3)]
    for node in nodes:
        node.args = ["--cluster-enabled", "yes", "--cluster-port", str(free_port()),
                     "--cluster-config-file", str(tmp_path / f"nodes-{node.port}.conf"),
                     "--dir", str(tmp_path)]
    try:
        _start(*nodes)
        subprocess.run(["redis-cli", "--cluster", "create",
                        *(f"127.0.0.1:{n.port}" for n in nodes),
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=30)
        for node in nodes:
            with redis.Redis(port=node.port, decode_responses=True) as client:
                deadline = time.monotonic() + 15
                while client.cluster("info")["cluster_state"] != "ok":
                    assert time.monotonic() < deadline, "the cluster never became ok"
                    time.sleep(0.1)
        yield (f"redis+cluster://127.0.0.1:{nodes[0].port},127.0.0.1:{nodes[1].port}",
               [{"port": n.port} for n in nodes])
    finally:
        _stop(*nodes)


@pytest.mark.asyncio
async def test_rediss_with_a_ca_file_serves_sessions_and_rate_limits(
    tls: Any, make_app: Any
) -> None:
    """On a TLS-only redis-server (`rediss://...?ssl_ca_certs=`), revocations and rate limits
    are shared by two instances and stored in that Redis."""
    await _two_instances_share_everything(make_app, *tls)


@pytest.mark.asyncio
async def test_sentinel_url_reaches_the_master(sentinel: Any, make_app: Any) -> None:
    """Through `redis+sentinel://SENTINEL/mymaster/0` the app finds the master the sentinel
    watches and shares revocations and rate limits there."""
    await _two_instances_share_everything(make_app, *sentinel)


@pytest.mark.asyncio
async def test_cluster_url_serves_the_store_across_slots_and_the_app(
    cluster: Any, make_app: Any
) -> None:
    """On a three-node Cluster the key-value store reads, deletes and prefix-deletes keys that
    live in different hash slots on different nodes; the app shares sessions and limits."""
    url, nodes = cluster
    kv = RedisKV(url, prefix=f"kv{uuid.uuid4().hex[:6]}:")
    try:
        assert await kv.ping()
        names = [f"many:{i}" for i in range(30)]
        for i, name in enumerate(names):
            await kv.set(name, str(i))
        assert await kv.get_many([*names, "missing"]) == [str(i) for i in range(30)] + [None]
        holders = [n for n in nodes if _keys([n], kv.prefix)]
        assert len(holders) == 3  # the keys really are spread over every primary
        await kv.delete(*names[:10])
        assert await kv.get_many(names[:11]) == [None] * 10 + ["10"]
        assert await kv.incr("count", ttl=5) == 1 and await kv.incr("count", ttl=5) == 2
        assert await kv.delete_prefix("many:") == 20
        assert _keys(nodes, kv.prefix) == {f"{kv.prefix}count"}
        assert await kv.delete_prefix("") == 1
    finally:
        await kv.close()
    await _two_instances_share_everything(make_app, url, nodes)


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:6379/0", "rediss://:pw@cache.internal:6380/1?ssl_cert_reqs=required",
    "unix:///run/redis/redis.sock?db=2", "redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379/mymaster",
    "redis+sentinel://s1:26379/mymaster/3", "redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7000",
])
def test_every_documented_notation_is_accepted(url: str) -> None:
    """Each REDIS_URL form of docs/deploy.md loads."""
    assert load_settings(**BASE_ENV, REDIS_URL=url).redis_url == url


@pytest.mark.parametrize("url", [
    "http://:s3cret-pw@cache:6379", "redis+sentinel://:s3cret-pw@s1:26379",
    "redis+sentinel://:s3cret-pw@s1/mymaster", "redis+cluster://:s3cret-pw@n1:7000/0",
    "redis+cluster://:s3cret-pw@n1:7000?ssl=true", "redis://:s3cret-pw@cache:port/0",
])
def test_a_wrong_scheme_or_shape_is_refused_in_one_line_without_the_password(url: str) -> None:
    """A REDIS_URL of the wrong scheme or shape stops start-up with one line naming the
    variable, and the password in it is never repeated."""
    with pytest.raises(SettingsError) as refused:
        load_settings(**BASE_ENV, REDIS_URL=url)
    assert len(refused.value.lines) == 1
    assert refused.value.lines[0].startswith("REDIS_URL: ")
    assert "s3cret-pw" not in refused.value.lines[0]
