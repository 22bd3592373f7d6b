"""`SMTP_URL` (API.md §6): `smtp://[user:pass@]host[:port]` or `smtps://...`.

`smtp://` upgrades with STARTTLS when the server offers it (`?starttls=require`
refuses to go on without it); `smtps://` speaks TLS from the first byte. Server
certificates are always verified against the system's CAs (`SSL_CERT_FILE`
names another bundle). The password never appears in `display()`, in an error
message or in a log line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_PORTS = {"smtp": 587, "smtps": 465}


@dataclass(frozen=True)
class SmtpTarget:
    scheme: Literal["smtp", "smtps"]
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: Literal["auto", "require"] = "auto"

    @property
    def implicit_tls(self) -> bool:
        return self.scheme == "smtps"

    def display(self) -> str:
        """The URL without its password, safe to print."""
        user = f"{self.username}@" if self.username else ""
        query = "?starttls=require" if self.starttls == "require" else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}{query}"

    def scrub(self, text: str) -> str:
        """`text` with the password (raw and URL-encoded) blotted out."""
        if self.password:
            text = text.replace(self.password, "***")
        return text


def parse_smtp_url(url: str) -> SmtpTarget:
    """Parse SMTP_URL; ValueError messages never repeat the URL (it may hold a password)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError("must be smtp://[user:pass@]host[:port] or smtps://...") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError("must be smtp://[user:pass@]host[:port] or smtps://...")
    query = {k.lower(): v for k, v in parse_qs(parts.query).items()}
    unknown = sorted(set(query) - {"starttls"})
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)}; only ?starttls=require")
    starttls = query.get("starttls", ["auto"])[-1].lower()
    if starttls not in {"auto", "require"}:
        raise ValueError("starttls must be 'require' (or absent: STARTTLS when offered)")
    if scheme == "smtps" and starttls == "require":
        raise ValueError("smtps:// is TLS from the start; ?starttls=require is for smtp://")
    return SmtpTarget(
        scheme=scheme,  # type: ignore[arg-type]
        host=parts.hostname,
        port=port or DEFAULT_PORTS[scheme],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        starttls=starttls,  # type: ignore[arg-type]
    )
