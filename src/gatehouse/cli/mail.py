"""`gatehouse mail test --to ADDRESS` (API.md §5), and the `mail` check of `doctor`.

Both talk to SMTP_URL directly (no queue, no database): the test email is sent
synchronously and the server's answer printed; a failure is one line and exit 1.
Neither ever prints the password of SMTP_URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from gatehouse.cli.common import fail, out, run_async, settings_or_exit
from gatehouse.errors import ValidationFailed
from gatehouse.notify.mail import MailError, message_of, render, smtp_handshake, smtp_send
from gatehouse.notify.smtp_url import parse_smtp_url
from gatehouse.users.emails import checked_email

if TYPE_CHECKING:
    from gatehouse.settings import Settings

app = typer.Typer(help="Email through SMTP_URL.", no_args_is_help=True)


@app.command("test")
def test(to: str = typer.Option(..., "--to", help="Recipient of the test email.")) -> None:
    """Send one test email through SMTP_URL now and print the SMTP server's answer."""
    try:
        address = checked_email(to, field="to")
    except ValidationFailed:
        fail("--to is not a valid email address")
    settings = settings_or_exit()
    if settings.smtp_url is None:
        fail("SMTP_URL is unset: set it to smtp://[user:pass@]host[:port] or smtps://...")
    target = parse_smtp_url(settings.smtp_url.get_secret_value())
    email = render("test", address, server=target.display())
    try:
        answer = run_async(smtp_send(target, message_of(email, settings.mail_sender),
                                     timeout=settings.mail_timeout))
    except MailError as exc:
        fail(escape(f"sending through {target.display()} failed: {exc}"))
    out.print(escape(f"sent to {address} through {target.display()}: {answer}"), soft_wrap=True)


def doctor_check(settings: Settings, online: bool) -> tuple[bool, str, str, bool]:
    """`doctor`'s mail line: (ok, detail, hint, warning). `online`: a real SMTP handshake."""
    if settings.smtp_url is None:
        where = "serve --dev prints emails to its console" if settings.dev else "no email is sent"
        return True, f"SMTP_URL unset: {where}", "set SMTP_URL to send reset and verification " \
                     "emails", True
    target = parse_smtp_url(settings.smtp_url.get_secret_value())
    if not online:
        return True, f"{target.display()}, from {settings.mail_sender}", "", False
    try:
        answer = run_async(smtp_handshake(target, timeout=min(settings.mail_timeout, 10.0)))
    except MailError as exc:
        return False, f"{target.display()}: {exc}", "check SMTP_URL and the mail server", False
    return True, f"{target.display()}: {answer}", "", False
