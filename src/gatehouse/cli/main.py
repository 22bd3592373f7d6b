"""`gatehouse`: serve, db, users, sessions, cache, keys, doctor, mail."""

from __future__ import annotations

import typer

from gatehouse.cli import db, doctor, keys, mail, ops, serve, users
from gatehouse.cli.common import guard

app = typer.Typer(
    name="gatehouse",
    help="Gatehouse: self-hosted authentication and API-token service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
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


def run() -> None:
    guard(app)


if __name__ == "__main__":
    run()
