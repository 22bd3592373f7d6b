"""REDIS_URL → a redis-py asyncio client and the matching `limits` storage (API.md §6).

One parser for every Redis user (key-value store, rate limits, notification queue),
so they all reach the same Redis the same way. The notations are the ones the
`limits` library and redis-py use:

- `redis://[[user]:password@]host:port[/db]`, `unix:///path/redis.sock[?db=N]`;
- `rediss://...` — TLS; redis-py reads `ssl_ca_certs`, `ssl_cert_reqs`,
  `ssl_certfile`, `ssl_keyfile`, `ssl_check_hostname` from the query;
- `redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]` —
  the password is sent to the sentinels and to the master, as `limits` does;
- `redis+cluster://[[user]:password@]host:port[,host:port...]` — the startup nodes.

Parse errors are one line that never contains the URL (it may hold a password).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

# redis-py is imported by the functions that build clients: a server without REDIS_URL
# never loads it (2.3 MB of a worker's RSS).
if TYPE_CHECKING:
    from limits.aio.storage import RedisStorage
    from redis.asyncio import Redis, RedisCluster

SINGLE = ("redis", "rediss", "unix")
FORMS = ("redis://HOST:PORT/DB, rediss://..., unix:///PATH, "
         "redis+sentinel://HOST:PORT[,HOST:PORT]/SERVICE[/DB] or redis+cluster://HOST:PORT[,HOST:PORT]")


@dataclass(frozen=True)
class RedisTarget:
    """What REDIS_URL names: one server (`single`), a Sentinel-watched master, or a Cluster."""

    kind: str  # "single" | "sentinel" | "cluster"
    nodes: list[tuple[str, int]] = field(default_factory=list)
    service: str = ""
    db: int = 0
    auth: dict[str, Any] = field(default_factory=dict)  # username/password, unquoted


def _nodes(netloc: str) -> list[tuple[str, int]]:
    nodes = []
    for location in netloc.rpartition("@")[2].split(","):
        host, sep, port = location.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"each node must be HOST:PORT; expected {FORMS}")
        nodes.append((host.strip("[]"), int(port)))
    return nodes


def parse_redis_url(url: str) -> RedisTarget:
    """Validate `url` and say what it names; ValueError (one line, no URL) otherwise."""
    scheme, _, rest = url.partition("://")
    if not rest:
        raise ValueError(f"must be one of {FORMS}")
    if scheme in SINGLE:
        try:
            urlsplit(url).port  # noqa: B018 - raises on a malformed port
        except ValueError:
            raise ValueError(f"the port must be a number; expected {FORMS}") from None
        return RedisTarget("single")
    if scheme not in ("redis+sentinel", "redis+cluster"):
        # The scheme is named only when it cannot be part of a mistyped password.
        named = f" {scheme!r}" if re.fullmatch(r"[a-z0-9+.-]{1,20}", scheme) else ""
        raise ValueError(f"unknown scheme{named}; expected {FORMS}")
    netloc, _, path = rest.partition("/")
    if "?" in rest or "#" in rest:
        raise ValueError(f"{scheme}:// takes no query; TLS is rediss:// (one server) only")
    userinfo = netloc.rpartition("@")[0]
    user, _, password = userinfo.partition(":")
    auth = {k: unquote(v) for k, v in (("username", user), ("password", password)) if v}
    parts = [p for p in path.split("/") if p]
    if scheme == "redis+cluster":
        if parts:
            raise ValueError("redis+cluster:// takes no path (a Cluster has only database 0)")
        return RedisTarget("cluster", _nodes(netloc), auth=auth)
    if len(parts) not in (1, 2) or (len(parts) == 2 and not parts[1].isdigit()):
        raise ValueError("redis+sentinel:// needs /SERVICE_NAME[/DB] after the sentinels")
    return RedisTarget("sentinel", _nodes(netloc), parts[0],
                       int(parts[1]) if len(parts) == 2 else 0, auth)


def _socket_options(options: dict[str, Any]) -> dict[str, Any]:
    """The timeouts, which the sentinels themselves get too (not decode_responses & co)."""
    return {k: v for k, v in options.items() if k.startswith("socket_")}


def redis_client(url: str, **options: Any) -> Redis | RedisCluster:
    """A redis-py asyncio client for REDIS_URL; `options` go to every connection."""
    from redis.asyncio import Redis, RedisCluster
    from redis.asyncio.cluster import ClusterNode
    from redis.asyncio.sentinel import Sentinel

    target = parse_redis_url(url)
    if target.kind == "cluster":
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in target.nodes],
                            **target.auth, **options)
    client: Redis
    if target.kind == "sentinel":
        sentinel = Sentinel(target.nodes, **target.auth, **options,  # type: ignore[no-untyped-call]
                            sentinel_kwargs={**target.auth, **_socket_options(options)})
        client = sentinel.master_for(target.service, db=target.db)
    else:
        client = Redis.from_url(url, **options)
    return client


async def close_client(client: Redis | RedisCluster) -> None:
    """Close `client` and, behind a Sentinel master, the connections to the sentinels."""
    await client.aclose()
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", ()):
        await sentinel.aclose()


def limits_storage(url: str, key_prefix: str, **options: Any) -> RedisStorage:
    """The `limits` storage (redis-py implementation) for the same REDIS_URL.

    Sentinel reads go to the master (`use_replicas=False`): a replica may lag, and a
    lagging count would let a client past its limit.
    """
    from limits.aio.storage import RedisClusterStorage, RedisSentinelStorage, RedisStorage

    target = parse_redis_url(url)
    common: dict[str, Any] = {"implementation": "redispy", "wrap_exceptions": True,
                              "key_prefix": key_prefix, **options}
    hosts = ",".join(f"{h}:{p}" for h, p in target.nodes)
    # Credentials go as options, unquoted: limits would pass them on still %-encoded.
    if target.kind == "cluster":
        return RedisClusterStorage(f"async+redis+cluster://{hosts}", **common, **target.auth)
    if target.kind == "sentinel":
        return RedisSentinelStorage(
            f"async+redis+sentinel://{hosts}/{target.service}", use_replicas=False,
            sentinel_kwargs=_socket_options(options), db=target.db, **common, **target.auth)
    # limits' own schemes: "async+redis://", "async+rediss://", "async+redis+unix://".
    return RedisStorage("async+redis+" + url if url.startswith("unix:") else "async+" + url,
                        **common)
