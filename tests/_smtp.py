"""A real SMTP server for tests: aiosmtpd on a free port, STARTTLS or implicit TLS with a
self-signed certificate made here, AUTH, and the delivered messages kept for reading.

The server runs in its own thread and event loop (aiosmtpd's Controller), so a slow
handler never blocks the app under test. Clients trust the certificate through
SSL_CERT_FILE, as an operator with a private CA would.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import ipaddress
import re
import ssl
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from aiosmtpd.smtp import SMTP as SMTPServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

USER, PASSWORD = "mailer", "smtp-pa55word-Z9"


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    return cert_path, key_path


class Inbox:
    """aiosmtpd handler: keeps every delivered message; `delay` seconds before answering DATA."""

    def __init__(self, delay: float = 0.0) -> None:
        self.messages: list[EmailMessage] = []
        self.delay = delay
        self.auth_seen: list[str] = []
        self.open_connections = 0
        self.transports: set[Any] = set()  # the server's side of each open connection

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:  # noqa: N802
        if self.delay:
            await asyncio.sleep(self.delay)
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        return "250 2.0.0 Ok: queued as TEST"

    def wait(self, count: int = 1, timeout: float = 10.0) -> list[EmailMessage]:
        """Block until `count` messages arrived (or fail after `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.messages) >= count, f"{len(self.messages)} of {count} emails arrived"
        return self.messages


def _authenticator(inbox: Inbox) -> Any:
    def check(server: SMTPServer, session: Session, envelope: Envelope, mechanism: str,
              auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode()
              and auth_data.password == PASSWORD.encode())
        if ok:
            inbox.auth_seen.append(mechanism)
        return AuthResult(success=ok, handled=False)  # False: aiosmtpd answers 535
    return check


class _TrackedSMTP(SMTPServer):
    """aiosmtpd's protocol, counting the open connections (so `stop` can wait them out)."""

    def __init__(self, inbox: Inbox, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._inbox = inbox

    def connection_made(self, transport: Any) -> None:
        if not getattr(self, "_counted", False):  # STARTTLS calls it again, on the TLS layer
            self._counted = True
            self._inbox.open_connections += 1
            self._socket_transport = transport
            self._inbox.transports.add(transport)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if getattr(self, "_counted", False):
            self._counted = False
            self._inbox.open_connections -= 1
            self._inbox.transports.discard(self._socket_transport)
        super().connection_lost(error)


class _Controller(Controller):
    def factory(self) -> SMTPServer:
        inbox = self.handler
        assert isinstance(inbox, Inbox)
        return _TrackedSMTP(inbox, self.handler, **self.SMTP_kwargs)


class SmtpServer:
    """One aiosmtpd server; `url` is the SMTP_URL that reaches it (with the credentials)."""

    def __init__(self, tmp_path: Path, port: int, *, implicit_tls: bool = False,
                 delay: float = 0.0) -> None:
        self.cert, self.key = tmp_path / "smtp-cert.pem", tmp_path / "smtp-key.pem"
        if not self.cert.exists():
            make_certificate(tmp_path)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        self.inbox = Inbox(delay)
        self.port = port
        self.implicit_tls = implicit_tls
        kwargs: dict[str, Any] = {
            "authenticator": _authenticator(self.inbox), "auth_require_tls": True,
        }
        if implicit_tls:
            # aiosmtpd only counts STARTTLS as TLS; here the whole connection is TLS.
            kwargs["auth_require_tls"] = False
            self.controller = _Controller(self.inbox, hostname="127.0.0.1", port=port,
                                          ssl_context=context, server_hostname="localhost",
                                         **kwargs)
        else:
            self.controller = _Controller(self.inbox, hostname="127.0.0.1", port=port,
                                          tls_context=context, require_starttls=True, **kwargs)

    @property
    def url(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        return f"{scheme}://{USER}:{PASSWORD}@127.0.0.1:{self.port}"

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        """Stop once the clients have hung up (at most 5 s): no connection is left unclosed."""
        deadline = time.monotonic() + 5
        while self.inbox.open_connections > 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        # A connection a client never closed (an app stopped mid-conversation) is aborted
        # here; a closed connection's socket is released a loop turn or two after
        # connection_lost: let the server's loop run those turns before it stops, so no
        # socket is left for the garbage collector to find unclosed in a later test.
        asyncio.run_coroutine_threadsafe(_close(self.inbox.transports), self.controller.loop) \
            .result(5)
        self.controller.stop()


async def _close(transports: set[Any], turns: int = 5) -> None:
    for transport in list(transports):
        transport.abort()
    for _ in range(turns):
        await asyncio.sleep(0)


def link_token(msg: EmailMessage, path: str) -> str:
    """The token of the `{app}/<path>#token=...` link in the text part (same in the HTML)."""
    text = part(msg, "plain")
    found = re.search(rf"/{path}#token=([A-Za-z0-9_-]+)", text)
    assert found, text
    html = part(msg, "html")
    assert f"/{path}#token={found.group(1)}" in html
    return found.group(1)


def part(msg: EmailMessage, subtype: str) -> str:
    body = msg.get_body(preferencelist=(subtype,))
    assert body is not None and body.get_content_subtype() == subtype, subtype
    content = body.get_content()
    assert isinstance(content, str)
    return content
