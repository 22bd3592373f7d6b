"""Email delivery (API.md §5, §6, §8): `gatehouse mail test`, `doctor`'s mail check, the
console under --dev, retries, the queue bound, templates, and SMTP_URL's password kept out
of every output. The SMTP servers are real (aiosmtpd, tests/_smtp.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from gatehouse.notify.mail import Mailer, render
from gatehouse.ops.metrics import Metrics
from gatehouse.settings import SettingsError, load_settings
from tests._abuse_helpers import metric
from tests._smtp import PASSWORD as SMTP_PASSWORD
from tests._smtp import USER, Inbox, SmtpServer, part
from tests.conftest import BASE_ENV, free_port, run_cli
from tests.test_recovery import forgot, running


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    server = SmtpServer(tmp_path, free_port()).start()
    yield server
    server.stop()


def cli_env(url: str, cert: Path | None = None, **extra: str) -> dict[str, str]:
    env = {"SMTP_URL": url, **extra}
    if cert is not None:
        env["SSL_CERT_FILE"] = str(cert)
    return env


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


# -- gatehouse mail test ---------------------------------------------------------------------


def test_mail_test_sends_through_starttls_with_auth_and_prints_the_answer(
    smtp: SmtpServer, tmp_path: Path
) -> None:
    """`mail test --to` delivers one email (STARTTLS, AUTH, text and HTML parts) and prints the
    server's answer, never the password."""
    r = run_cli("mail", "test", "--to", "ops@example.com", env=cli_env(smtp.url, smtp.cert),
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "queued as TEST" in r.stdout and f"smtp://{USER}@127.0.0.1:{smtp.port}" in r.stdout
    assert SMTP_PASSWORD not in r.stdout + r.stderr
    (msg,) = smtp.inbox.wait(1)
    assert msg["To"] == "ops@example.com" and msg["Subject"] == "Gatehouse test email"
    assert "SMTP_URL works" in part(msg, "plain") and "<code>SMTP_URL</code>" in part(msg, "html")
    assert smtp.inbox.auth_seen  # it authenticated


def test_mail_test_over_implicit_tls(tmp_path: Path) -> None:
    """`smtps://` speaks TLS from the first byte, and authenticates."""
    server = SmtpServer(tmp_path, free_port(), implicit_tls=True).start()
    try:
        r = run_cli("mail", "test", "--to", "ops@example.com",
                    env=cli_env(server.url, server.cert), cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert server.inbox.wait(1)[0]["To"] == "ops@example.com"
        assert server.inbox.auth_seen
    finally:
        server.stop()


def test_mail_test_against_a_closed_port_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """Nothing listening: exit 1 with one line naming the server, without the password."""
    url = f"smtp://{USER}:{SMTP_PASSWORD}@127.0.0.1:{free_port()}"
    r = run_cli("mail", "test", "--to", "ops@example.com", env=cli_env(url), cwd=tmp_path)
    assert r.returncode == 1
    line = one_line(r.stderr + r.stdout)
    assert line.startswith("error:") and "127.0.0.1" in line and "Traceback" not in line
    assert SMTP_PASSWORD not in r.stdout + r.stderr


def test_a_wrong_smtp_password_fails_without_printing_it(smtp: SmtpServer, tmp_path: Path) -> None:
    """The server refuses the credentials: one line, exit 1, and the wrong password is not in it."""
    wrong = "Wr0ng-smtp-secret-Q7"
    url = f"smtp://{USER}:{wrong}@127.0.0.1:{smtp.port}"
    r = run_cli("mail", "test", "--to", "ops@example.com", env=cli_env(url, smtp.cert),
                cwd=tmp_path)
    assert r.returncode == 1
    line = one_line(r.stderr + r.stdout)
    assert "535" in line or "Authentication" in line, line
    assert wrong not in r.stdout + r.stderr and not smtp.inbox.messages


def test_an_untrusted_certificate_is_refused(smtp: SmtpServer, tmp_path: Path) -> None:
    """Without trusting the server's self-signed certificate, STARTTLS fails and nothing is sent
    (the password never goes over an unverified connection)."""
    r = run_cli("mail", "test", "--to", "ops@example.com", env=cli_env(smtp.url), cwd=tmp_path)
    assert r.returncode == 1
    assert "certificate" in one_line(r.stderr + r.stdout).lower()
    assert not smtp.inbox.messages and not smtp.inbox.auth_seen


def test_starttls_require_refuses_a_server_without_starttls(tmp_path: Path) -> None:
    """`?starttls=require` refuses a plain server; without it, the plain server is used."""
    inbox = Inbox()
    port = free_port()
    plain = Controller(inbox, hostname="127.0.0.1", port=port)
    plain.start()
    try:
        r = run_cli("mail", "test", "--to", "ops@example.com",
                    env=cli_env(f"smtp://127.0.0.1:{port}?starttls=require"), cwd=tmp_path)
        assert r.returncode == 1 and "STARTTLS" in one_line(r.stderr + r.stdout)
        assert not inbox.messages
        r = run_cli("mail", "test", "--to", "ops@example.com",
                    env=cli_env(f"smtp://127.0.0.1:{port}"), cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert inbox.wait(1)[0]["To"] == "ops@example.com"
    finally:
        time.sleep(0.1)
        plain.stop()


def test_mail_test_without_smtp_url_or_with_a_bad_address_is_one_line(tmp_path: Path) -> None:
    """No SMTP_URL, or a --to that is not an address: one line, non-zero exit."""
    r = run_cli("mail", "test", "--to", "ops@example.com", cwd=tmp_path)
    assert r.returncode == 1 and "SMTP_URL is unset" in one_line(r.stderr + r.stdout)
    r = run_cli("mail", "test", "--to", "not-an-address", env=cli_env("smtp://127.0.0.1:1"),
                cwd=tmp_path)
    assert r.returncode == 1 and "--to" in one_line(r.stderr + r.stdout)


def test_a_malformed_smtp_url_is_a_config_error_that_does_not_repeat_it() -> None:
    """SMTP_URL errors name the variable, never its value (it may hold a password)."""
    for url in ("ftp://u:Sekrit-value-1@h", "smtp://u:Sekrit-value-1@h:port",
                "smtp://u:Sekrit-value-1@h?starttls=maybe", "smtp://u:Sekrit-value-1@h?x=1"):
        with pytest.raises(SettingsError) as caught:
            load_settings(**BASE_ENV, SMTP_URL=url)
        assert all(line.startswith("SMTP_URL:") for line in caught.value.lines)
        assert "Sekrit" not in " ".join(caught.value.lines)


# -- doctor ------------------------------------------------------------------------------------


def _doctor(tmp_path: Path, *args: str, **env: str) -> dict[str, Any]:
    base = {"DATABASE_URL": f"sqlite:///{tmp_path}/d.db", **env}
    run_cli("db", "upgrade", env=base, cwd=tmp_path)
    r = run_cli("doctor", "--json", *args, env=base, cwd=tmp_path)
    report: dict[str, Any] = json.loads(r.stdout)
    report["_output"] = r.stdout + r.stderr
    return report


def test_doctor_warns_without_smtp_url_and_handshakes_with_online(
    smtp: SmtpServer, tmp_path: Path
) -> None:
    """doctor: SMTP_URL unset is a warning (exit status unchanged); --online does a real SMTP
    handshake (STARTTLS, AUTH, no message) and a dead server fails the check; no password."""
    report = _doctor(tmp_path)
    (mail,) = [c for c in report["checks"] if c["name"] == "mail"]
    assert mail["ok"] is True and "SMTP_URL unset" in mail["detail"]
    assert "mail" in report["warnings"]

    report = _doctor(tmp_path, "--online", **cli_env(smtp.url, smtp.cert))
    (mail,) = [c for c in report["checks"] if c["name"] == "mail"]
    assert mail["ok"] is True and "TLS, authenticated" in mail["detail"], mail
    assert "mail" not in report["warnings"] and not smtp.inbox.messages
    assert SMTP_PASSWORD not in report["_output"]

    dead = f"smtp://{USER}:{SMTP_PASSWORD}@127.0.0.1:{free_port()}"
    report = _doctor(tmp_path, "--online", **cli_env(dead))
    (mail,) = [c for c in report["checks"] if c["name"] == "mail"]
    assert mail["ok"] is False and report["ok"] is False
    assert SMTP_PASSWORD not in report["_output"]


# -- the app's mailer ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_dev_without_smtp_url_prints_each_email_with_its_link_to_the_console(
    make_app: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Under `serve --dev` (GATEHOUSE_DEV=1) without SMTP_URL, each email (subject, recipient,
    text with the link) is printed to stderr so a developer can follow it."""
    from tests.conftest import create_user

    app = make_app(GATEHOUSE_DEV="1")
    async with running(app) as client:
        await create_user(app.state.ctx)
        await forgot(client, "alice@example.com")
        await app.state.ctx.mailer.drain()
    err = capsys.readouterr().err
    assert "Email to alice@example.com" in err and "Subject: Reset your Gatehouse password" in err
    assert "http://127.0.0.1:8000/console/reset-password#token=" in err


@pytest.mark.asyncio
async def test_without_smtp_url_nothing_is_sent_and_one_warning_is_logged(
    make_app: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Outside --dev, no SMTP_URL: emails are counted failed and one warning is logged."""
    from tests.conftest import create_user

    app = make_app()
    async with running(app) as client:
        await create_user(app.state.ctx)
        for _ in range(2):
            await forgot(client, "alice@example.com")
        await app.state.ctx.mailer.drain()
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count('"mail_disabled"') == 1
    text = app.state.ctx.metrics.render().decode()
    assert metric(text, "gatehouse_mail_sent_total", kind="password_reset", result="failed") == 2


@pytest.mark.asyncio
async def test_a_failing_server_is_retried_then_counted_failed_without_logging_the_password(
    make_app: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Delivery to a dead server is retried GATEHOUSE_MAIL_RETRIES times, then counted
    `failed`; the logs name the server's error but never SMTP_URL's password."""
    from tests.conftest import create_user

    url = f"smtp://{USER}:{SMTP_PASSWORD}@127.0.0.1:{free_port()}"
    app = make_app(SMTP_URL=url, GATEHOUSE_MAIL_RETRIES="2", GATEHOUSE_MAIL_RETRY_BASE="0.05")
    async with running(app) as client:
        await create_user(app.state.ctx)
        await forgot(client, "alice@example.com")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = app.state.ctx.metrics.render().decode()
            if metric(text, "gatehouse_mail_sent_total", kind="password_reset", result="failed"):
                break
            await asyncio.sleep(0.05)
    captured = capsys.readouterr()
    logs = captured.out + captured.err
    assert logs.count('"mail_retry"') == 2 and logs.count('"mail_failed"') == 1
    assert SMTP_PASSWORD not in logs
    assert metric(text, "gatehouse_mail_sent_total", kind="password_reset", result="failed") == 1


@pytest.mark.asyncio
async def test_a_full_queue_drops_the_email_and_counts_it_failed() -> None:
    """GATEHOUSE_MAIL_QUEUE_MAX bounds the queue: past it an email is dropped (counted failed)
    instead of growing memory without bound."""
    metrics = Metrics()
    mailer = Mailer(load_settings(**BASE_ENV, GATEHOUSE_MAIL_QUEUE_MAX="1",
                                  SMTP_URL="smtp://127.0.0.1:1"), metrics)
    email = render("test", "ops@example.com", server="x")
    assert mailer.submit(email) is True
    assert mailer.submit(email) is False
    text = metrics.render().decode()
    assert metric(text, "gatehouse_mail_sent_total", kind="test", result="failed") == 1


def test_templates_autoescape_html_and_keep_the_text_part_plain() -> None:
    """Values in the HTML part are escaped (no markup injection through a name or message);
    the text part carries them as they are."""
    email = render("notification", "ops@example.com", subject="New sign-in",
                   title="<script>alert(1)</script>", message="Tom & Jerry", link=None)
    assert "<script>" not in email.html and "&lt;script&gt;" in email.html
    assert "Tom &amp; Jerry" in email.html
    assert "<script>alert(1)</script>" in email.text and "Tom & Jerry" in email.text
