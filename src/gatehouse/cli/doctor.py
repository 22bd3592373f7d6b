"""`gatehouse doctor`: configuration, secrets, database, migrations, cache, keys, integrations."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import typer
from rich.markup import escape

from gatehouse.cli.common import out
from gatehouse.settings import Settings, SettingsError, load_settings


@dataclass
class DoctorCheck:
    name: str
    ok: bool
    detail: str
    hint: str = ""


# Checks that fail because of the configuration itself: exit 2, like `serve` and `db`.
CONFIG_CHECKS = {"settings", "jwt_secret", "encryption_key", "signing_keys"}


def weakness(raw: str) -> str | None:
    """Why a secret does not look random (a pattern a person typed), or None."""
    if len(set(raw)) < 8:
        return "fewer than 8 distinct characters"
    for period in range(1, min(16, len(raw) // 2) + 1):
        if raw == (raw[:period] * (len(raw) // period + 1))[:len(raw)]:
            return f"repeats a {period}-character pattern"
    return None


def _strength(name: str, variable: str, raw: str, size: str) -> DoctorCheck:
    why = weakness(raw)
    if why is None:
        return DoctorCheck(name, True, size)
    return DoctorCheck(name, False, f"{variable} is weak: {why}",
                       f"replace it with the {variable}= line of `gatehouse keys generate`")


def _secrets(settings: Settings) -> list[DoctorCheck]:
    checks = []
    if settings.jwt_algorithm == "HS256":
        if settings.jwt_secret is None:
            checks.append(DoctorCheck("jwt_secret", False, "JWT_SECRET is not set",
                                      "run `gatehouse keys generate` and set JWT_SECRET"))
        else:
            raw = settings.jwt_secret.get_secret_value()
            checks.append(_strength("jwt_secret", "JWT_SECRET", raw, f"{len(raw.encode())} bytes"))
    try:
        from gatehouse.auth.jwks import KeyRing

        ring = KeyRing(settings.jwt_algorithm,
                       secret=settings.jwt_secret.get_secret_value() if settings.jwt_secret else "x",
                       keys_dir=settings.jwt_keys_dir)
        checks.append(DoctorCheck("signing_keys", True,
                                  f"{settings.jwt_algorithm}, {len(ring.jwks()['keys'])} public key(s)"))
    except SettingsError as exc:
        checks.append(DoctorCheck("signing_keys", False, exc.lines[0], "run `gatehouse keys rotate`"))
    if settings.encryption_key is None:
        checks.append(DoctorCheck("encryption_key", False, "ENCRYPTION_KEY is not set",
                                  "run `gatehouse keys generate` and set ENCRYPTION_KEY"))
    else:
        checks.append(_strength("encryption_key", "ENCRYPTION_KEY",
                                settings.encryption_key.get_secret_value(), "32 characters"))
    return checks


def _integrations(settings: Settings, online: bool) -> list[DoctorCheck]:
    from gatehouse.ops import integrations

    verdicts = integrations.formats(settings)
    if settings.vapid_public_key:
        verdicts.append(integrations.Verdict(
            "vapid", bool(settings.vapid_subject),
            "matching P-256 pair" + ("" if settings.vapid_subject else ", no subject"),
            "" if settings.vapid_subject else "set VAPID_SUBJECT=mailto:you@example.com"))
    if online:
        verdicts += integrations.probe(settings)
    return [DoctorCheck(v.name, v.ok, v.detail, v.hint) for v in verdicts]


async def _services(settings: Settings) -> list[DoctorCheck]:
    from gatehouse.ops.health import check_cache, check_database
    from gatehouse.store.db.engine import create_engine
    from gatehouse.store.kv import create_kv

    engine = create_engine(settings.database_url)
    kv = create_kv(settings.redis_url)
    try:
        database, migrations = await check_database(engine)
        cache = await check_cache(kv)
    finally:
        await engine.dispose()
        try:
            await kv.close()
        except Exception:  # noqa: S110 - closing a cache that is down has nothing to report
            pass
    return [
        DoctorCheck("database", database.ok, database.detail,
                    "" if database.ok else "check DATABASE_URL and that the server runs"),
        DoctorCheck("migrations", migrations.ok, migrations.detail,
                    "" if migrations.ok else "run `gatehouse db upgrade`"),
        DoctorCheck("cache", cache.ok, cache.detail, "" if cache.ok else "check REDIS_URL"),
    ]


def run_checks(online: bool = False) -> list[DoctorCheck]:
    import asyncio

    try:
        settings = load_settings()
    except SettingsError as exc:
        return [DoctorCheck("settings", False, line, "fix the variable named") for line in exc.lines]
    checks = [DoctorCheck("settings", True, "all variables valid")]
    checks += _secrets(settings)
    checks += asyncio.run(_services(settings))
    checks += _integrations(settings, online)
    return checks


def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print {ok, checks} as JSON."),
    online: bool = typer.Option(False, "--online", help="Also call the configured integrations."),
) -> None:
    """Check configuration, secrets, database, migrations, cache and integrations."""
    checks = run_checks(online)
    ok = all(c.ok for c in checks)
    if as_json:
        print(json.dumps({"ok": ok, "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        # One line per check, never wrapped, so each problem reads (and greps) as one line.
        width = max(len(c.name) for c in checks)
        for c in checks:
            mark = "[green]ok  [/green]" if c.ok else "[red]FAIL[/red]"
            hint = f" [dim]({escape(c.hint)})[/dim]" if c.hint else ""
            out.print(f"{mark} {c.name:<{width}}  {escape(c.detail)}{hint}", soft_wrap=True)
    config_broken = any(c.name in CONFIG_CHECKS and not c.ok for c in checks)
    raise typer.Exit(0 if ok else 2 if config_broken else 1)
