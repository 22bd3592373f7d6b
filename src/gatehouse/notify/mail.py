"""Email (API.md §8): templates, SMTP delivery, and the queue that keeps it off the request path.

A request that wants an email hands it to `Mailer.submit` (or a job that will
build it to `Mailer.defer`) and answers at once: an in-process asyncio queue,
drained by a few worker tasks started with the app, delivers it through
`SMTP_URL` with aiosmtplib. A failed delivery is retried GATEHOUSE_MAIL_RETRIES
times with exponential backoff (GATEHOUSE_MAIL_RETRY_BASE seconds, doubling),
then counted `failed`; a full queue (GATEHOUSE_MAIL_QUEUE_MAX) drops the email
and counts it `failed` too. `gatehouse_mail_sent_total{kind,result}` counts
every outcome.

Without SMTP_URL, `serve --dev` prints each email (subject, recipient, text
with its link) to stderr; otherwise nothing is sent and one warning is logged.
Every email has a plain-text and an HTML part, rendered from
`notify/templates/<kind>.txt|.html` with Jinja2 (HTML autoescaped).
"""

from __future__ import annotations

import asyncio
import functools
import random
import ssl
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import TYPE_CHECKING, Any, TextIO

import structlog

from gatehouse.notify.background import BackgroundQueue
from gatehouse.notify.smtp_url import SmtpTarget, parse_smtp_url
from gatehouse.ops.metrics import Metrics
from gatehouse.settings import Settings

if TYPE_CHECKING:  # aiosmtplib is imported where mail is sent: a worker that sends none
    import aiosmtplib  # never loads it (bench/RESULTS.md, memory)

log = structlog.get_logger("gatehouse.mail")

KINDS = ("password_reset", "email_verify", "notification", "test")
SUBJECTS = {
    "password_reset": "Reset your Gatehouse password",
    "email_verify": "Confirm your email address",
    "test": "Gatehouse test email",
}
WORKERS = 4
MAX_BACKOFF = 600.0



@functools.cache
def _templates() -> Any:
    """The Jinja2 environment, built (and Jinja2 imported, ~3 MB) for the first email."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=PackageLoader("gatehouse.notify", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


@dataclass(frozen=True)
class Email:
    kind: str
    to: str
    subject: str
    text: str
    html: str


def render(kind: str, to: str, subject: str | None = None, **values: Any) -> Email:
    """The email `kind` for `to`, both parts from its templates (`values` fill them in)."""
    assert kind in KINDS, kind
    subject = subject or SUBJECTS[kind]
    context = {"subject": subject, "email": to, **values}
    text = _templates().get_template(f"{kind}.txt").render(context)
    html = _templates().get_template(f"{kind}.html").render(context)
    return Email(kind=kind, to=to, subject=subject, text=text, html=html)


def message_of(email: Email, sender: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = email.to
    msg["Subject"] = email.subject
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    domain = parseaddr(sender)[1].rpartition("@")[2] or None
    msg["Message-ID"] = make_msgid(domain=domain)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(email.text)
    msg.add_alternative(email.html, subtype="html")
    return msg


class MailError(Exception):
    """Delivery failed; the message is safe to print (no password)."""


def _client(target: SmtpTarget, timeout: float) -> aiosmtplib.SMTP:
    import aiosmtplib

    return aiosmtplib.SMTP(
        hostname=target.host, port=target.port,
        username=target.username, password=target.password,
        use_tls=target.implicit_tls,
        # None: STARTTLS when the server offers it; True: refuse to go on without it.
        start_tls=None if target.implicit_tls else (True if target.starttls == "require" else None),
        tls_context=ssl.create_default_context(),  # verifies; honours SSL_CERT_FILE
        timeout=timeout,
    )


def _describe(target: SmtpTarget, exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError | asyncio.TimeoutError) and not str(exc):
        text = "timed out"
    return target.scrub(f"{type(exc).__name__}: {text}")


async def _quit(client: aiosmtplib.SMTP) -> None:
    """QUIT politely; the message is already accepted, so a failing QUIT changes nothing."""
    import aiosmtplib

    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        pass


def _hang_up(client: aiosmtplib.SMTP) -> None:
    """Close the connection at once. The conversation is over (QUIT answered) or abandoned,
    so TLS's close_notify exchange buys nothing, and it keeps the socket open (up to 30 s)
    past the end of a stopping app's event loop, which then leaks it."""
    if client.transport is not None:
        client.transport.abort()
    client.close()


async def smtp_send(target: SmtpTarget, msg: EmailMessage, *, timeout: float) -> str:
    """Deliver one message; the server's answer to DATA. MailError on any failure."""
    import aiosmtplib

    client = _client(target, timeout)
    try:
        async with asyncio.timeout(timeout * 3):
            await client.connect()
            refused, answer = await client.send_message(msg)
            await _quit(client)
    except (aiosmtplib.SMTPException, OSError, TimeoutError, ssl.SSLError, ValueError) as exc:
        raise MailError(_describe(target, exc)) from None
    finally:
        _hang_up(client)  # also when cancelled (the app stopping): no socket left open
    if refused:
        raise MailError("recipient refused: " + "; ".join(str(r) for r in refused.values()))
    return answer


async def smtp_handshake(target: SmtpTarget, *, timeout: float) -> str:
    """Connect, EHLO, STARTTLS and AUTH as a delivery would, send nothing: a summary line."""
    import aiosmtplib

    client = _client(target, timeout)
    try:
        async with asyncio.timeout(timeout * 3):
            greeting = await client.connect()
            tls = "TLS" if client.get_transport_info("sslcontext") else "plain"
            authenticated = bool(target.username)
            await _quit(client)
    except (aiosmtplib.SMTPException, OSError, TimeoutError, ssl.SSLError, ValueError) as exc:
        raise MailError(_describe(target, exc)) from None
    finally:
        _hang_up(client)
    auth = ", authenticated" if authenticated else ""
    return target.scrub(f"{greeting.code} {greeting.message.splitlines()[0] if greeting.message else ''}"
                        f" ({tls}{auth})").strip()


@dataclass
class _Outgoing:
    email: Email
    attempt: int = 0
    on_result: Callable[[str], None] | None = None  # told "sent" or "failed" (notifications)


@dataclass
class _Job:
    run: Callable[[], Awaitable[None]]
    name: str


class Mailer(BackgroundQueue[_Outgoing | _Job]):
    """The delivery queue of one process; `start()` in the app's lifespan, `stop()` after."""

    def __init__(self, settings: Settings, metrics: Metrics, *, console: TextIO | None = None):
        self.settings = settings
        self.metrics = metrics
        self.sender = settings.mail_sender
        self.target = (
            parse_smtp_url(settings.smtp_url.get_secret_value()) if settings.smtp_url else None
        )
        self.mode = "smtp" if self.target else ("console" if settings.dev else "off")
        self.console = console
        self.retries = settings.mail_retries
        self.retry_base = settings.mail_retry_base
        self.timeout = settings.mail_timeout
        super().__init__(settings.mail_queue_max)
        self._warned = False

    # -- the request side ---------------------------------------------------------------

    def submit(self, email: Email, on_result: Callable[[str], None] | None = None) -> bool:
        """Queue `email` for delivery and return at once; False (counted failed) when full.
        `on_result` is told the final outcome, "sent" or "failed"."""
        return self._put(_Outgoing(email, on_result=on_result))

    def defer(self, run: Callable[[], Awaitable[None]], name: str) -> bool:
        """Run `run` on a mail worker, after the request has answered (it may `submit`)."""
        return self._put(_Job(run, name))

    def _put(self, item: _Outgoing | _Job) -> bool:
        queue = self._ensure_queue()
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            kind = item.email.kind if isinstance(item, _Outgoing) else "job"
            log.warning("mail_queue_full", kind=kind, size=self.queue_max)
            if isinstance(item, _Outgoing):
                self._done(item, "failed")
            return False
        return True

    # -- the worker side ----------------------------------------------------------------

    def start(self) -> None:
        if self.mode == "off":
            log.warning("mail_disabled", reason="SMTP_URL unset: emails are not sent")
            self._warned = True
        self._ensure_queue()
        for _ in range(WORKERS):
            self._spawn(self._work())

    async def _handle(self, item: _Outgoing | _Job) -> None:
        if isinstance(item, _Job):
            await item.run()
        else:
            await self._deliver(item)

    def _failed(self, item: _Outgoing | _Job, exc: Exception) -> None:
        log.warning("mail_job_failed", job=getattr(item, "name", "delivery"),
                    error=type(exc).__name__)

    async def _deliver(self, item: _Outgoing) -> None:
        email = item.email
        if self.mode == "console":
            self._print(email)
            self._done(item, "sent")
            return
        if self.mode == "off" or self.target is None:
            if not self._warned:
                log.warning("mail_disabled", reason="SMTP_URL unset: emails are not sent")
                self._warned = True
            self._done(item, "failed")
            return
        try:
            await smtp_send(self.target, message_of(email, self.sender), timeout=self.timeout)
        except MailError as exc:
            item.attempt += 1
            if item.attempt > self.retries:
                log.warning("mail_failed", kind=email.kind, attempts=item.attempt, error=str(exc))
                self._done(item, "failed")
                return
            delay = min(MAX_BACKOFF, self.retry_base * 2 ** (item.attempt - 1))
            delay *= 1 + random.random() / 4  # jitter: many failed mails do not retry as one
            log.info("mail_retry", kind=email.kind, attempt=item.attempt,
                     in_seconds=round(delay, 2), error=str(exc))
            self._spawn(self._retry_later(item, delay))
            return
        self._done(item, "sent")
        log.info("mail_sent", kind=email.kind)

    def _done(self, item: _Outgoing, result: str) -> None:
        self.metrics.mail_sent.labels(item.email.kind, result).inc()
        if item.on_result is not None:
            item.on_result(result)

    async def _retry_later(self, item: _Outgoing, delay: float) -> None:
        await asyncio.sleep(delay)
        self._put(item)

    def _print(self, email: Email) -> None:
        out = self.console or sys.stderr
        rule = "-" * 72
        out.write(f"\n{rule}\nEmail to {email.to}\nSubject: {email.subject}\n\n{email.text}"
                  f"{'' if email.text.endswith(chr(10)) else chr(10)}{rule}\n")
        out.flush()
