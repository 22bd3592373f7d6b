"""Where the server may send Web Push messages: public https endpoints only (API.md §4).

Delivering a notification is a server-side request to a URL the client chose, so an
endpoint is an SSRF vector. It must be `https` and every address its host resolves to
must be public. "Public" also looks inside the IPv6 forms that carry an IPv4 address
and reach it through a translator or tunnel, since a gateway on the way would deliver
to the embedded (possibly private) IPv4 host:

- IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, IPv4-translated
  `::ffff:0:a.b.c.d` (RFC 4291, RFC 2765);
- NAT64 well-known prefix `64:ff9b::/96` (RFC 6052); the local-use prefix
  `64:ff9b:1::/48` (RFC 8215) is never public, whatever it embeds;
- 6to4 `2002::/16` (RFC 3056) and Teredo `2001::/32` (RFC 4380; Python already counts
  all of 2001::/23 as not global).

GATEHOUSE_PUSH_ALLOW_PRIVATE=1 lifts both rules, for tests only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from gatehouse.errors import ValidationFailed

RESOLVE_TIMEOUT = 3.0
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address hands traffic to, through translation or tunnels."""
    low32 = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    found: list[ipaddress.IPv4Address] = []
    if addr.ipv4_mapped is not None:
        found.append(addr.ipv4_mapped)
    if addr in _NAT64_WELL_KNOWN or addr in _IPV4_COMPATIBLE or addr in _IPV4_TRANSLATED:
        found.append(low32)
    if addr.sixtofour is not None:
        found.append(addr.sixtofour)
    if addr.teredo is not None:
        found.extend(addr.teredo)  # (server, client)
    return found


def is_public(address: Address) -> bool:
    """True when delivering to `address` can reach only the public internet."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _NAT64_LOCAL_USE:
            return False  # RFC 8215: local-use, for a site's own translator
        if not all(is_public(v4) for v4 in _embedded_ipv4(address)):
            return False
    return address.is_global and not address.is_multicast


def _invalid(msg: str) -> ValidationFailed:
    return ValidationFailed(msg, [{"loc": ["body", "endpoint"], "msg": msg}])


async def check_endpoint(endpoint: str, *, allow_private: bool) -> None:
    """Raise ValidationFailed unless `endpoint` is an https URL whose host is public only."""
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname
        port = parts.port
    except ValueError:
        raise _invalid("endpoint must be an absolute https URL.") from None
    if not host or parts.scheme not in {"https", "http"}:
        raise _invalid("endpoint must be an absolute https URL.")
    if allow_private:
        return
    if parts.scheme != "https":
        raise _invalid("endpoint must use https.")
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port or 443, type=socket.SOCK_STREAM
            )
    except (OSError, TimeoutError, UnicodeError):
        raise _invalid("endpoint host does not resolve.") from None
    for info in infos:
        # Scoped IPv6 answers ("fe80::1%eth0") carry a zone; the address is what counts.
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not is_public(address):
            raise _invalid("endpoint must resolve only to public addresses.")
