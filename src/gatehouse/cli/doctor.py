"""`gatehouse doctor`: configuration, secrets, database, migrations, cache, keys, integrations.

Also the Python runtime: a release with a known security bug that reaches an
HTTP service is a warning (exit status unchanged), with the release that fixes it.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

import typer
from rich.markup import escape

from gatehouse.cli.common import out
from gatehouse.secrets_policy import weakness  # shared with `serve`
from gatehouse.settings import Settings, SettingsError, load_settings


@dataclass
class DoctorCheck:
    name: str
    ok: bool
    detail: str
    hint: str = ""
    # A warning passes (`ok`), prints WARN and is listed in --json's `warnings`.
    warning: bool = field(default=False, repr=False)


@dataclass(frozen=True)
class RuntimeAdvisory:
    """A CPython security bug that an HTTP service reaches, and the releases that fix it."""

    cve: str
    summary: str
    fixed_in: tuple[tuple[int, int, int], ...]  # the first fixed release of each affected branch
    first_unaffected_branch: tuple[int, int]  # branches from this one on were never affected

    def affects(self, version: tuple[int, int, int]) -> str | None:
        """The release that fixes `version`'s branch when `version` is affected, else None."""
        if version[:2] >= self.first_unaffected_branch:
            return None
        for fixed in self.fixed_in:
            if fixed[:2] == version[:2]:
                return ".".join(map(str, fixed)) if version < fixed else None
        # An older branch than any fix: upgrade to the oldest fixed branch.
        return ".".join(map(str, min(self.fixed_in)))


# Only bugs that reach the service. CVE-2024-7592: quadratic unquoting of "-quoted cookie
# values (gh-123067); Starlette parsed request cookies with it (Gatehouse now parses them
# itself, see api/cookies.py, but other code in the interpreter may not).
RUNTIME_ADVISORIES = (
    RuntimeAdvisory(
        "CVE-2024-7592", "quadratic-time parsing of quoted cookies (http.cookies)",
        ((3, 8, 20), (3, 9, 20), (3, 10, 15), (3, 11, 10), (3, 12, 6)), (3, 13),
    ),
)


def check_runtime(version: tuple[int, int, int] | None = None) -> DoctorCheck:
    """Warn when this Python release has a known security bug that reaches the service."""
    current = version or (sys.version_info.major, sys.version_info.minor, sys.version_info.micro)
    shown = ".".join(map(str, current))
    found = [(a, fix) for a in RUNTIME_ADVISORIES if (fix := a.affects(current)) is not None]
    if not found:
        return DoctorCheck("python_runtime", True, f"Python {shown}, no known advisory")
    detail = "; ".join(f"{a.cve}: {a.summary}, fixed in {fix}" for a, fix in found)
    newest = max((fix for _, fix in found), key=lambda v: tuple(map(int, v.split("."))))
    return DoctorCheck("python_runtime", True, f"Python {shown} has {detail}",
                       f"upgrade Python to {newest} or later", warning=True)


# Checks that fail because of the configuration itself: exit 2, like `serve` and `db`.
CONFIG_CHECKS = {"settings", "jwt_secret", "encryption_key", "signing_keys"}


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


def _dsn_problem(dsn: str) -> str | None:
    """Why `dsn` is not `https://<public key>@<host>/<project id>`, or None. The words never
    quote it: its user part is the key. Plain http only to this machine, as for Slack."""
    from gatehouse.ops.integrations import webhook_url_ok

    try:
        parts = urlsplit(dsn)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        return "not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not an https://<public key>@<host>/<project id> URL"
    if not parts.username:
        return "no public key before the @"
    if not re.fullmatch(r"[0-9]+", parts.path.rsplit("/", 1)[-1]):
        return "the path does not end in a numeric project id"
    if not webhook_url_ok(dsn):
        return "plain http to another machine: events would travel unencrypted"
    return None


def check_sentry(dsn: str, environment: str) -> DoctorCheck:
    """SENTRY_DSN as sentry-sdk will read it (its own parser, when the extra is installed)."""
    problem = _dsn_problem(dsn)
    try:
        from sentry_sdk.utils import BadDsn, Dsn
    except ImportError:
        installed = False
    else:
        installed = True
        try:
            Dsn(dsn)
        except (BadDsn, ValueError):  # ValueError: urlsplit's, on a port that is not a number
            problem = problem or "sentry-sdk cannot parse it"
    if problem:
        return DoctorCheck("sentry", False, f"SENTRY_DSN is invalid: {problem}",
                           "copy the DSN from the Sentry project's Client Keys page")
    if not installed:
        return DoctorCheck("sentry", False, "SENTRY_DSN is set but sentry-sdk is not installed",
                           "pip install 'gatehouse-auth[sentry]'")
    parts = urlsplit(dsn)
    return DoctorCheck("sentry", True, f"project {parts.path.rsplit('/', 1)[-1]} on "
                       f"{parts.hostname}, environment {environment}")


def _mail(settings: Settings, online: bool) -> DoctorCheck:
    """SMTP_URL unset is a warning; `--online` does a real SMTP handshake (cli/mail.py)."""
    from gatehouse.cli.mail import doctor_check

    ok, detail, hint, warning = doctor_check(settings, online)
    return DoctorCheck("mail", ok, detail, hint, warning=warning)


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


def _schema(settings: Settings) -> DoctorCheck:
    """`gatehouse db check`: the live schema against the models."""
    from gatehouse.store.db import drift
    from gatehouse.store.db.engine import is_database_outage

    try:
        found = drift.differences(settings.database_url)
    except Exception as exc:  # one failed check, never a traceback
        if is_database_outage(exc):
            return DoctorCheck("schema", False,
                               f"cannot reach the database ({type(exc).__name__})",
                               "check DATABASE_URL")
        return DoctorCheck("schema", False, f"comparison failed ({type(exc).__name__})",
                           "run `gatehouse db check`")
    if not found:
        return DoctorCheck("schema", True, "matches the models")
    shown = "; ".join(found[:3]) + (" ..." if len(found) > 3 else "")
    return DoctorCheck("schema", False, f"{len(found)} difference(s): {shown}",
                       "run `gatehouse db check` for the list")


def check_hashing(settings: Settings) -> DoctorCheck:
    """argon2id costs against OWASP's pairs: a warning below them (logins still work)."""
    from gatehouse.auth.passwords import below_owasp

    m, t, p = settings.argon2_memory_kib, settings.argon2_time_cost, settings.argon2_parallelism
    weak = below_owasp(m, t)
    if weak:
        return DoctorCheck("password_hashing", True, weak, "raise GATEHOUSE_ARGON2_MEMORY_KIB or "
                           "GATEHOUSE_ARGON2_TIME_COST (docs/configuration.md)", warning=True)
    return DoctorCheck("password_hashing", True, f"argon2id m={m} KiB t={t} p={p}")


def run_checks(online: bool = False) -> list[DoctorCheck]:
    import asyncio

    try:
        settings = load_settings()
    except SettingsError as exc:
        return [DoctorCheck("settings", False, line, "fix the variable named") for line in exc.lines]
    checks = [DoctorCheck("settings", True, "all variables valid")]
    checks += _secrets(settings)
    checks.append(check_hashing(settings))
    checks += asyncio.run(_services(settings))
    if all(c.ok for c in checks if c.name in {"database", "migrations"}):
        checks.append(_schema(settings))  # drift only means something on a migrated database
    checks += _integrations(settings, online)
    if settings.sentry_dsn is not None:
        checks.append(check_sentry(settings.sentry_dsn.get_secret_value(),
                                   settings.sentry_environment))
    checks.append(_mail(settings, online))
    checks.append(check_runtime())
    return checks


def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print {ok, checks} as JSON."),
    online: bool = typer.Option(
        False, "--online", help="Also call the configured integrations and the SMTP server."),
) -> None:
    """Check configuration, secrets, database, migrations, cache and integrations."""
    checks = run_checks(online)
    ok = all(c.ok for c in checks)
    if as_json:
        shown = [{k: v for k, v in asdict(c).items() if k != "warning"} for c in checks]
        warnings = [c.name for c in checks if c.warning]
        print(json.dumps({"ok": ok, "checks": shown, "warnings": warnings}, indent=2))
    else:
        # One line per check, never wrapped, so each problem reads (and greps) as one line.
        width = max(len(c.name) for c in checks)
        for c in checks:
            mark = ("[yellow]WARN[/yellow]" if c.warning else "[green]ok  [/green]") if c.ok \
                else "[red]FAIL[/red]"
            hint = f" [dim]({escape(c.hint)})[/dim]" if c.hint else ""
            out.print(f"{mark} {c.name:<{width}}  {escape(c.detail)}{hint}", soft_wrap=True)
    config_broken = any(c.name in CONFIG_CHECKS and not c.ok for c in checks)
    raise typer.Exit(0 if ok else 2 if config_broken else 1)
