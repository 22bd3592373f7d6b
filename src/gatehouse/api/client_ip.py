"""The client's IP address: the socket peer, or behind trusted proxies the X-Forwarded-For hop.

API.md §1: `X-Forwarded-For` is believed only from `GATEHOUSE_TRUSTED_PROXIES`.
Addresses are canonicalised (one spelling per address, IPv4-mapped IPv6 as IPv4)
so that rate-limit and throttle buckets cannot be dodged by rewriting them.

Every per-IP limit and throttle counts by `rate_key`, derived once per request
next to the address: IPv4 by address, IPv6 by its /64 prefix (API.md §4). One
IPv6 subscriber usually holds a whole /64 (RFC 6177 and SLAAC), so counting
single addresses would hand each attacker 2**64 fresh buckets. Logs and audit
events keep the full address.
"""

from __future__ import annotations

import functools
import ipaddress


@functools.lru_cache(maxsize=4096)  # the same peers and proxies call again and again
def canonical_ip(text: str) -> str | None:
    """One spelling per address (so buckets cannot be dodged by rewriting it); None if not an IP."""
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # "::ffff:10.0.0.1": an IPv4 peer on a dual-stack socket
    return str(addr)


@functools.lru_cache(maxsize=4096)
def rate_key(ip: str) -> str:
    """What per-IP limits count: the IPv4 address, or the /64 an IPv6 address lies in."""
    canonical = canonical_ip(ip)
    if canonical is None:
        return ip  # "unknown" (no peer): one shared bucket, as before
    addr = ipaddress.ip_address(canonical)
    if isinstance(addr, ipaddress.IPv4Address):
        return canonical
    return str(ipaddress.IPv6Network((addr, 64), strict=False))


class ClientIP:
    """The socket peer, or behind trusted proxies the nearest untrusted X-Forwarded-For hop (§1)."""

    def __init__(self, trusted: list[str]) -> None:
        self._nets = [ipaddress.ip_network(t, strict=False) for t in trusted]

    def _trusted(self, ip: str) -> bool:
        addr = ipaddress.ip_address(ip)
        return any(addr.version == net.version and addr in net for net in self._nets)

    def __call__(self, peer: str, forwarded_for: str | None) -> str:
        peer = canonical_ip(peer) or peer
        if not self._nets or not forwarded_for or canonical_ip(peer) is None:
            return peer  # off by default: a client's own X-Forwarded-For is never believed
        if not self._trusted(peer):
            return peer
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        # Walk from the nearest hop back: every proxy appends the address it saw, so the
        # first address we do not trust is the client; anything left of it is hearsay.
        client = peer
        for hop in reversed(hops):
            ip = canonical_ip(hop)
            if ip is None:
                return client  # garbage from a trusted hop: stop at the last address we know
            client = ip
            if not self._trusted(ip):
                return ip
        return client
