"""The one reader of the environment: every variable of API.md §6, validated.

`load_settings()` builds :class:`Settings` from the environment and a `.env`
file, and turns every validation problem into one line naming the variable and
its rule (:class:`SettingsError`). The CLI prints those lines and exits 2.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from limits import parse_many
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


# Written by `gatehouse serve --dev` (0600), relative to the working directory.
DEV_SECRETS_FILE = ".gatehouse/secrets.env"
# Security events GATEHOUSE_ALERTS may name (API.md §6); notify/alerts.py posts them.
ALERT_KINDS = ("reuse", "throttle_burst", "role_change", "revoke_all", "mfa_reset")


class SettingsError(Exception):
    """Configuration is unusable; `lines` holds one message per problem."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


def _csv(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(",") if part.strip()]


class Settings(BaseSettings):
    """Gatehouse configuration (API.md §6). Field aliases are the env variable names."""

    # The local secrets `serve --dev` writes serve every command run in that folder; a real
    # `.env` overrides them, and the environment overrides both (later files win).
    model_config = SettingsConfigDict(
        env_file=(DEV_SECRETS_FILE, ".env"), env_file_encoding="utf-8", extra="ignore",
        populate_by_name=True,
    )

    database_url: str = Field("sqlite:///./gatehouse.db", alias="DATABASE_URL")
    redis_url: str | None = Field(None, alias="REDIS_URL")
    # Every Redis key starts with it, so one Redis serves several deployments.
    redis_prefix: str = Field("gh:", max_length=64, alias="GATEHOUSE_REDIS_PREFIX")
    # Redis unreachable: `local` counts rate limits and throttles per process; `deny` answers
    # 503 on the routes whose brute-force protection needs them.
    cache_fallback: Literal["local", "deny"] = Field("local", alias="GATEHOUSE_CACHE_FALLBACK")
    jwt_secret: SecretStr | None = Field(None, alias="JWT_SECRET")
    encryption_key: SecretStr | None = Field(None, alias="ENCRYPTION_KEY")

    openai_api_key: SecretStr | None = Field(None, alias="OPENAI_API_KEY")
    slack_webhook_url: SecretStr | None = Field(None, alias="SLACK_WEBHOOK_URL")
    alerts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(ALERT_KINDS), alias="GATEHOUSE_ALERTS"
    )
    sentry_dsn: SecretStr | None = Field(None, alias="SENTRY_DSN")
    sentry_environment: str = Field("production", min_length=1, max_length=64,
                                    alias="SENTRY_ENVIRONMENT")
    openphone_api_key: SecretStr | None = Field(None, alias="OPENPHONE_API_KEY")
    openphone_from: str | None = Field(None, alias="OPENPHONE_FROM")
    # Where those services live; changed only to point at a relay or a local stand-in.
    openai_base_url: str = Field("https://api.openai.com/v1", alias="GATEHOUSE_OPENAI_BASE_URL")
    # API.md §6 OPENPHONE_API_URL, without the `/v1`; the older GATEHOUSE_OPENPHONE_BASE_URL
    # (which ended in `/v1`) is still read.
    openphone_api_url: str = Field("https://api.openphone.com", validation_alias=AliasChoices(
        "OPENPHONE_API_URL", "GATEHOUSE_OPENPHONE_BASE_URL"))
    vapid_public_key: str | None = Field(None, alias="VAPID_PUBLIC_KEY")
    vapid_private_key: SecretStr | None = Field(None, alias="VAPID_PRIVATE_KEY")
    vapid_subject: str | None = Field(None, alias="VAPID_SUBJECT")
    # Email (API.md §6, §8). SMTP_URL may carry a password: a secret, never logged.
    smtp_url: SecretStr | None = Field(None, alias="SMTP_URL")
    mail_from: str | None = Field(None, alias="MAIL_FROM")
    public_app_url: str | None = Field(None, alias="PUBLIC_APP_URL")
    password_reset_ttl: int = Field(1800, ge=1, le=604_800, alias="PASSWORD_RESET_TTL")
    email_verify_ttl: int = Field(86_400, ge=1, le=2_592_000, alias="EMAIL_VERIFY_TTL")
    require_verified_email: bool = Field(False, alias="GATEHOUSE_REQUIRE_VERIFIED_EMAIL")
    mfa_issuer: str = Field("Gatehouse", min_length=1, max_length=100, alias="MFA_ISSUER")
    # Lifetime of an `mfa_token` (API.md §8: 5 minutes); lowered only by tests.
    mfa_token_ttl: int = Field(300, ge=1, le=300, alias="GATEHOUSE_MFA_TOKEN_TTL")
    mail_retries: int = Field(5, ge=0, le=20, alias="GATEHOUSE_MAIL_RETRIES")
    mail_retry_base: float = Field(2.0, gt=0, le=600, alias="GATEHOUSE_MAIL_RETRY_BASE")
    mail_timeout: float = Field(20.0, gt=0, le=300, alias="GATEHOUSE_MAIL_TIMEOUT")
    mail_queue_max: int = Field(1000, ge=1, le=100_000, alias="GATEHOUSE_MAIL_QUEUE_MAX")

    public_api_url: str = Field("http://127.0.0.1:8000", alias="PUBLIC_API_URL")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="CORS_ORIGINS"
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="GATEHOUSE_TRUSTED_PROXIES"
    )

    access_token_ttl: int = Field(900, ge=1, le=86_400, alias="ACCESS_TOKEN_TTL")
    refresh_token_ttl: int = Field(2_592_000, ge=1, le=31_536_000, alias="REFRESH_TOKEN_TTL")
    refresh_grace_seconds: int = Field(60, ge=0, le=3600, alias="REFRESH_GRACE_SECONDS")
    session_idle_ttl: int = Field(604_800, ge=1, le=31_536_000, alias="SESSION_IDLE_TTL")

    jwt_algorithm: Literal["HS256", "EdDSA"] = Field("HS256", alias="JWT_ALGORITHM")
    jwt_keys_dir: Path | None = Field(None, alias="JWT_KEYS_DIR")
    jwt_issuer: str | None = Field(None, alias="JWT_ISSUER")
    jwt_audience: str = Field("gatehouse", min_length=1, alias="JWT_AUDIENCE")

    login_max_failures: int = Field(5, ge=1, le=1000, alias="LOGIN_MAX_FAILURES")
    login_failure_window: int = Field(900, ge=1, alias="GATEHOUSE_LOGIN_FAILURE_WINDOW")
    login_max_wait: int = Field(900, ge=1, alias="GATEHOUSE_LOGIN_MAX_WAIT")
    login_email_ceiling: int = Field(100, ge=1, alias="GATEHOUSE_LOGIN_EMAIL_CEILING")
    login_email_window: int = Field(3600, ge=1, alias="GATEHOUSE_LOGIN_EMAIL_WINDOW")
    login_ip_ceiling: int = Field(100, ge=1, alias="GATEHOUSE_LOGIN_IP_CEILING")
    login_ip_window: int = Field(900, ge=1, alias="GATEHOUSE_LOGIN_IP_WINDOW")

    rate_limit: str = Field("600/minute", alias="GATEHOUSE_RATE_LIMIT")
    auth_rate_limit: str = Field("60/minute", alias="GATEHOUSE_AUTH_RATE_LIMIT")
    client_errors_rate_limit: str = Field("30/minute", alias="GATEHOUSE_CLIENT_ERRORS_RATE_LIMIT")
    rate_limits: Literal["on", "off"] = Field("on", alias="GATEHOUSE_RATE_LIMITS")
    signature_skew: int = Field(300, ge=1, le=3600, alias="GATEHOUSE_SIGNATURE_SKEW")

    push_allow_private: bool = Field(False, alias="GATEHOUSE_PUSH_ALLOW_PRIVATE")
    signup: Literal["open", "closed"] = Field("closed", alias="GATEHOUSE_SIGNUP")
    console: Literal["on", "off"] = Field("on", alias="GATEHOUSE_CONSOLE")
    insecure_cookies: bool = Field(False, alias="GATEHOUSE_INSECURE_COOKIES")
    metrics_token: SecretStr | None = Field(None, alias="GATEHOUSE_METRICS_TOKEN")
    log_file: Path | None = Field(None, alias="GATEHOUSE_LOG_FILE")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", alias="GATEHOUSE_LOG_LEVEL"
    )

    # Password hashing (argon2id; OWASP's m=7 MiB, t=5, p=1, as strong as its m=19 MiB, t=2:
    # auth/passwords.py OWASP_ARGON2ID) and policy.
    argon2_time_cost: int = Field(5, ge=1, le=20, alias="GATEHOUSE_ARGON2_TIME_COST")
    argon2_memory_kib: int = Field(7_168, ge=7_168, le=1_048_576,
                                   alias="GATEHOUSE_ARGON2_MEMORY_KIB")
    argon2_parallelism: int = Field(1, ge=1, le=16, alias="GATEHOUSE_ARGON2_PARALLELISM")
    hash_workers: int | None = Field(None, ge=1, le=64, alias="GATEHOUSE_HASH_WORKERS")
    # How much lower the hash threads' scheduling priority is than the event loop's (Linux
    # nice steps): a login storm queues logins instead of slowing every token check.
    hash_nice: int = Field(10, ge=0, le=19, alias="GATEHOUSE_HASH_NICE")
    # Password checks waiting for a hash thread; beyond it 503 (default 64 per worker).
    hash_queue_max: int | None = Field(None, ge=0, le=100_000, alias="GATEHOUSE_HASH_QUEUE_MAX")
    password_min_length: int = Field(12, ge=8, le=128, alias="GATEHOUSE_PASSWORD_MIN_LENGTH")

    max_body_bytes: int = Field(65_536, ge=1024, alias="GATEHOUSE_MAX_BODY_BYTES")
    max_header_bytes: int = Field(16_384, ge=4096, le=1_048_576, alias="GATEHOUSE_MAX_HEADER_BYTES")
    db_pool_size: int = Field(20, ge=1, le=200, alias="GATEHOUSE_DB_POOL_SIZE")
    db_pool_timeout: float = Field(5, gt=0, le=300, alias="GATEHOUSE_DB_POOL_TIMEOUT")
    db_statement_timeout: float = Field(10, gt=0, le=3600, alias="GATEHOUSE_DB_STATEMENT_TIMEOUT")
    retry_after_seconds: int = Field(5, ge=1, le=300, alias="GATEHOUSE_RETRY_AFTER")

    # Set by `serve --dev` only: allows generated secrets and relaxes nothing else.
    dev: bool = Field(False, alias="GATEHOUSE_DEV")

    @field_validator("log_level", "signup", "rate_limits", "console", "cache_fallback",
                     mode="before")
    @classmethod
    def _lowercase(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _split_csv(cls, value: Any) -> list[str]:
        return _csv(value)

    @field_validator("alerts", mode="before")
    @classmethod
    def _alerts(cls, value: Any) -> list[str]:
        kinds = [kind.lower() for kind in _csv(value)]
        unknown = [kind for kind in kinds if kind not in ALERT_KINDS]
        if unknown:
            raise ValueError(f"unknown alert kind {', '.join(unknown)} "
                             f"(known: {', '.join(ALERT_KINDS)})")
        return kinds

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        scheme = value.split(":", 1)[0]
        if scheme.split("+", 1)[0] not in {"sqlite", "postgresql", "postgres"} or "://" not in value:
            raise ValueError("must be sqlite:///PATH or postgresql://USER@HOST/DB")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        # Imported here: redis-py loads only when REDIS_URL is set.
        from gatehouse.store.kv.redis_url import parse_redis_url

        parse_redis_url(value)  # one line that never repeats the URL (it may hold a password)
        return value

    @field_validator("redis_prefix")
    @classmethod
    def _redis_prefix(cls, value: str) -> str:
        # SCAN MATCH patterns treat these specially; spaces and control bytes make unreadable keys.
        if any(c in "*?[]\\" or not c.isprintable() or c.isspace() for c in value):
            raise ValueError("letters, digits and punctuation only (no spaces, no * ? [ ] \\)")
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _jwt_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        raw = value.get_secret_value()
        if len(raw.encode()) < 32:
            raise ValueError("must be at least 32 bytes (run `gatehouse keys generate`)")
        return value

    @field_validator("encryption_key")
    @classmethod
    def _encryption_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        if len(value.get_secret_value()) != 32:
            raise ValueError("must be exactly 32 characters (run `gatehouse keys generate`)")
        return value

    @field_validator("openai_base_url", "openphone_api_url")
    @classmethod
    def _base_url(cls, value: str, info: ValidationInfo) -> str:
        if urlsplit(value).scheme not in {"http", "https"} or not urlsplit(value).netloc:
            raise ValueError("must be an absolute http(s) URL")
        value = value.rstrip("/")
        if info.field_name == "openphone_api_url":
            value = value.removesuffix("/v1")  # the old variable's form
        return value

    @field_validator("public_api_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL such as https://auth.example.com")
        return value.rstrip("/")

    @field_validator("cors_origins")
    @classmethod
    def _cors(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin == "*" or "*" in origin:
                raise ValueError("'*' is not allowed: credentials are always allowed, list exact origins")
            parts = urlsplit(origin)
            if parts.scheme not in {"http", "https"} or not parts.netloc or parts.path not in {"", "/"}:
                raise ValueError(f"'{origin}' is not an origin like https://app.example.com")
        return [o.rstrip("/") for o in value]

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"'{item}' is not an IP address or CIDR") from None
        return value

    @field_validator("rate_limit", "auth_rate_limit", "client_errors_rate_limit")
    @classmethod
    def _limit(cls, value: str) -> str:
        try:
            parse_many(value)
        except ValueError:
            raise ValueError("must use the limits notation, e.g. 600/minute") from None
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value().strip() == "":
            return None
        from gatehouse.notify.smtp_url import parse_smtp_url

        parse_smtp_url(value.get_secret_value())  # ValueError names no part of the URL
        return value

    @field_validator("public_app_url")
    @classmethod
    def _app_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL such as https://app.example.com")
        return value.rstrip("/")

    @field_validator("vapid_subject")
    @classmethod
    def _vapid_subject(cls, value: str | None) -> str | None:
        if value and not value.startswith(("mailto:", "https://")):
            raise ValueError("must start with mailto: or https://")
        return value or None

    @model_validator(mode="after")
    def _cross_field(self) -> Settings:
        if self.jwt_algorithm == "EdDSA" and self.jwt_keys_dir is None:
            raise ValueError("JWT_KEYS_DIR: required when JWT_ALGORITHM=EdDSA")
        if bool(self.vapid_public_key) != bool(self.vapid_private_key):
            raise ValueError("VAPID_PUBLIC_KEY/VAPID_PRIVATE_KEY: set both or neither")
        if self.vapid_public_key and self.vapid_private_key:
            from gatehouse.notify.vapid import vapid_pair_matches

            if not vapid_pair_matches(
                self.vapid_public_key, self.vapid_private_key.get_secret_value()
            ):
                raise ValueError("VAPID_PUBLIC_KEY/VAPID_PRIVATE_KEY: must be a matching P-256 pair")
        return self

    # -- derived values ---------------------------------------------------------------

    @property
    def issuer(self) -> str:
        return self.jwt_issuer or self.public_api_url

    @property
    def secure_cookies(self) -> bool:
        return not self.insecure_cookies

    @property
    def https(self) -> bool:
        return self.public_api_url.startswith("https://")

    @property
    def public_origin(self) -> str:
        parts = urlsplit(self.public_api_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def app_url(self) -> str:
        """Base of the links in emails: PUBLIC_APP_URL, else PUBLIC_API_URL + /console."""
        return self.public_app_url or self.public_api_url + "/console"

    @property
    def mail_sender(self) -> str:
        """MAIL_FROM, else `Gatehouse <no-reply@HOST>` with the host of PUBLIC_API_URL."""
        return self.mail_from or f"Gatehouse <no-reply@{urlsplit(self.public_api_url).hostname}>"

    @property
    def rate_limits_enabled(self) -> bool:
        return self.rate_limits == "on"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def require_secrets(self) -> None:
        """Fail (one line per variable) when secrets the server needs are missing."""
        lines = []
        if self.jwt_secret is None and self.jwt_algorithm == "HS256":
            lines.append(
                "JWT_SECRET: required, at least 32 bytes (run `gatehouse keys generate`, "
                "or `gatehouse serve --dev` for local use)"
            )
        if self.encryption_key is None:
            lines.append(
                "ENCRYPTION_KEY: required, exactly 32 characters (run `gatehouse keys generate`)"
            )
        if lines:
            raise SettingsError(lines)


def _env_name(loc: tuple[Any, ...]) -> str:
    if not loc:
        return "configuration"
    field = Settings.model_fields.get(str(loc[0]))
    if field is not None and isinstance(field.alias, str):
        return field.alias
    return str(loc[0])


def load_settings(**overrides: Any) -> Settings:
    """Build settings from env/.env (+ overrides by env name or field name)."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_input=False, include_url=False):
            msg = str(err["msg"]).removeprefix("Value error, ")
            if not err["loc"] and ":" in msg:
                lines.append(msg)  # model validators name their variables themselves
            else:
                lines.append(f"{_env_name(tuple(err['loc']))}: {msg}")
        raise SettingsError(lines) from None


__all__ = ["Settings", "SettingsError", "load_settings"]
