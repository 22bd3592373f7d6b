"""`gatehouse keys`: generate secrets, rotate EdDSA signing keys."""

from __future__ import annotations

import secrets

import typer

from gatehouse.auth.jwks import write_new_key
from gatehouse.cli.common import fail, out, settings_or_exit

app = typer.Typer(help="Secrets and signing keys.", no_args_is_help=True)


@app.command()
def generate(vapid: bool = typer.Option(False, "--vapid", help="Also print a VAPID key pair.")) -> None:
    """Print fresh JWT_SECRET= and ENCRYPTION_KEY= lines (and VAPID keys with --vapid)."""
    print(f"JWT_SECRET={secrets.token_urlsafe(48)}")
    print(f"ENCRYPTION_KEY={secrets.token_urlsafe(24)[:32]}")
    if vapid:
        # cryptography, which `serve` (this process) loads only if its config needs it
        from gatehouse.notify.vapid import generate_vapid_pair

        public, private = generate_vapid_pair()
        print(f"VAPID_PUBLIC_KEY={public}")
        print(f"VAPID_PRIVATE_KEY={private}")


@app.command()
def rotate() -> None:
    """EdDSA: add a new signing key to JWT_KEYS_DIR; older keys keep verifying."""
    settings = settings_or_exit()
    if settings.jwt_keys_dir is None:
        fail("JWT_KEYS_DIR is not set; rotation applies to JWT_ALGORITHM=EdDSA keys", code=2)
    try:
        path = write_new_key(settings.jwt_keys_dir)
    except OSError as exc:
        fail(f"cannot write to {settings.jwt_keys_dir}: {exc.strerror}")
    out.print(f"new signing key {path.name}; older keys in {settings.jwt_keys_dir} keep verifying")
