"""`gatehouse`: serve, db, users, sessions, cache, keys, doctor, mail, logs, slo."""

from __future__ import annotations

import sys

import typer

from gatehouse.cli.common import guard

HELP = "Gatehouse: self-hosted authentication and API-token service."


def _typer() -> typer.Typer:
    return typer.Typer(name="gatehouse", help=HELP, no_args_is_help=True,
                       pretty_exceptions_enable=False, add_completion=False)


def full_app() -> typer.Typer:
    """Every command."""
    from gatehouse.cli import db, doctor, keys, mail, ops, serve, users

    app = _typer()
    app.command("serve")(serve.serve)
    app.add_typer(db.app, name="db")
    app.add_typer(users.app, name="users")
    app.add_typer(users.sessions_app, name="sessions")
    app.add_typer(users.cache_app, name="cache")
    app.add_typer(keys.app, name="keys")
    app.command("doctor")(doctor.doctor)
    app.add_typer(mail.app, name="mail")
    app.add_typer(ops.logs_app, name="logs")
    app.add_typer(ops.slo_app, name="slo")
    return app


def serve_app() -> typer.Typer:
    """`gatehouse serve` alone. The server runs in this process (one worker) or supervises
    the workers, so the other commands' modules (imports, reports, doctor, the CLI tables:
    ~3 MB) would stay in its memory for nothing (bench/RESULTS.md, memory per worker)."""
    from gatehouse.cli import serve

    app = _typer()
    app.callback()(lambda: None)  # a group, as in the full app: `serve` stays a subcommand
    app.command("serve")(serve.serve)
    return app


def run() -> None:
    guard(serve_app() if sys.argv[1:2] == ["serve"] else full_app())


if __name__ == "__main__":
    run()
