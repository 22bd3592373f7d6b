"""Settings validation: every rule of API.md §6 fails with one line naming the variable."""

from __future__ import annotations

import pytest

from gatehouse.notify.vapid import generate_vapid_pair
from gatehouse.settings import Settings, SettingsError, load_settings

GOOD = {"JWT_SECRET": "a-random-secret-for-tests-0123456789abcdef", "ENCRYPTION_KEY": "k" * 32}


def problems(**env: str) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load_settings(**{**GOOD, **env})
    return info.value.lines


def test_defaults_match_the_contract() -> None:
    """With nothing set, every default is the one API.md §6 documents."""
    s = load_settings()
    assert (s.database_url, s.redis_url, s.public_api_url) == (
        "sqlite:///./gatehouse.db", None, "http://127.0.0.1:8000")
    assert (s.access_token_ttl, s.refresh_token_ttl, s.refresh_grace_seconds, s.session_idle_ttl) == (
        900, 2_592_000, 60, 604_800)
    assert (s.jwt_algorithm, s.issuer, s.jwt_audience) == ("HS256", "http://127.0.0.1:8000", "gatehouse")
    assert (s.login_max_failures, s.rate_limit, s.auth_rate_limit, s.rate_limits) == (
        5, "600/minute", "60/minute", "on")
    assert (s.signup, s.insecure_cookies, s.push_allow_private, s.log_level) == (
        "closed", False, False, "info")
    assert s.cors_origins == [] and s.trusted_proxies == []


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"),
        ({"REDIS_URL": "http://localhost:6379"}, "REDIS_URL"),
        ({"JWT_SECRET": "too-short"}, "JWT_SECRET"),
        ({"JWT_SECRET": "é" * 15}, "JWT_SECRET"),
        ({"ENCRYPTION_KEY": "k" * 31}, "ENCRYPTION_KEY"),
        ({"ENCRYPTION_KEY": "k" * 33}, "ENCRYPTION_KEY"),
        ({"PUBLIC_API_URL": "ftp://example.com"}, "PUBLIC_API_URL"),
        ({"CORS_ORIGINS": "*"}, "CORS_ORIGINS"),
        ({"CORS_ORIGINS": "https://ok.example,not-an-origin"}, "CORS_ORIGINS"),
        ({"GATEHOUSE_TRUSTED_PROXIES": "10.0.0.0/8,nonsense"}, "GATEHOUSE_TRUSTED_PROXIES"),
        ({"ACCESS_TOKEN_TTL": "0"}, "ACCESS_TOKEN_TTL"),
        ({"ACCESS_TOKEN_TTL": "ten"}, "ACCESS_TOKEN_TTL"),
        ({"REFRESH_TOKEN_TTL": "-5"}, "REFRESH_TOKEN_TTL"),
        ({"REFRESH_GRACE_SECONDS": "-1"}, "REFRESH_GRACE_SECONDS"),
        ({"SESSION_IDLE_TTL": "abc"}, "SESSION_IDLE_TTL"),
        ({"SESSION_IDLE_TTL": "0"}, "SESSION_IDLE_TTL"),
        ({"REFRESH_TOKEN_TTL": "0"}, "REFRESH_TOKEN_TTL"),
        ({"JWT_ALGORITHM": "RS256"}, "JWT_ALGORITHM"),
        ({"JWT_ALGORITHM": "EdDSA"}, "JWT_KEYS_DIR"),
        ({"LOGIN_MAX_FAILURES": "0"}, "LOGIN_MAX_FAILURES"),
        ({"GATEHOUSE_RATE_LIMIT": "lots"}, "GATEHOUSE_RATE_LIMIT"),
        ({"GATEHOUSE_AUTH_RATE_LIMIT": "5 per fortnight"}, "GATEHOUSE_AUTH_RATE_LIMIT"),
        ({"GATEHOUSE_RATE_LIMITS": "maybe"}, "GATEHOUSE_RATE_LIMITS"),
        ({"GATEHOUSE_SIGNUP": "sometimes"}, "GATEHOUSE_SIGNUP"),
        ({"GATEHOUSE_INSECURE_COOKIES": "perhaps"}, "GATEHOUSE_INSECURE_COOKIES"),
        ({"GATEHOUSE_PUSH_ALLOW_PRIVATE": "2"}, "GATEHOUSE_PUSH_ALLOW_PRIVATE"),
        ({"GATEHOUSE_LOG_LEVEL": "loud"}, "GATEHOUSE_LOG_LEVEL"),
        ({"VAPID_PUBLIC_KEY": "abc"}, "VAPID_PUBLIC_KEY"),
        ({"VAPID_SUBJECT": "someone"}, "VAPID_SUBJECT"),
    ],
)
def test_each_malformed_variable_is_named_in_one_line(env: dict[str, str], variable: str) -> None:
    """A malformed value yields exactly one line that starts with the variable's name."""
    lines = problems(**env)
    assert len(lines) == 1
    assert lines[0].startswith(f"{variable}"), lines


def test_contract_boundaries_are_accepted() -> None:
    """Anything API.md §6 allows starts: a 32-byte secret of any shape, short TTLs, any case."""
    s = load_settings(JWT_SECRET="x" * 32, ENCRYPTION_KEY="k" * 32, REFRESH_TOKEN_TTL="5",
                      SESSION_IDLE_TTL="2", GATEHOUSE_LOG_LEVEL="INFO", GATEHOUSE_SIGNUP="Open",
                      GATEHOUSE_RATE_LIMITS="OFF")
    s.require_secrets()
    assert (s.refresh_token_ttl, s.session_idle_ttl, s.log_level, s.signup, s.rate_limits) == (
        5, 2, "info", "open", "off")


def test_eddsa_needs_no_jwt_secret(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Under EdDSA the signing keys come from JWT_KEYS_DIR, so JWT_SECRET is not required."""
    keys = tmp_path_factory.mktemp("keys")
    s = load_settings(ENCRYPTION_KEY="k" * 32, JWT_ALGORITHM="EdDSA", JWT_KEYS_DIR=str(keys))
    s.require_secrets()


def test_several_problems_give_one_line_each() -> None:
    """Two bad variables produce two lines, one per variable."""
    lines = problems(ACCESS_TOKEN_TTL="x", GATEHOUSE_SIGNUP="maybe")
    assert sorted(line.split(":")[0] for line in lines) == ["ACCESS_TOKEN_TTL", "GATEHOUSE_SIGNUP"]


def test_error_lines_never_echo_the_secret_value() -> None:
    """A rejected secret is described by its rule, never printed back."""
    lines = problems(JWT_SECRET="short-secret-value")
    assert "short-secret-value" not in " ".join(lines)


def test_mismatched_vapid_pair_is_refused_and_matching_pair_accepted() -> None:
    """VAPID keys must be one P-256 pair: a public key from another pair is refused."""
    public, private = generate_vapid_pair()
    other_public, _ = generate_vapid_pair()
    assert load_settings(**GOOD, VAPID_PUBLIC_KEY=public, VAPID_PRIVATE_KEY=private).vapid_public_key
    assert problems(VAPID_PUBLIC_KEY=other_public, VAPID_PRIVATE_KEY=private)[0].startswith("VAPID")


def test_missing_secrets_are_reported_by_name() -> None:
    """Without JWT_SECRET and ENCRYPTION_KEY, require_secrets names both variables."""
    with pytest.raises(SettingsError) as info:
        load_settings().require_secrets()
    assert [line.split(":")[0] for line in info.value.lines] == ["JWT_SECRET", "ENCRYPTION_KEY"]


def test_env_file_is_read(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Values in a .env file in the working directory configure the service."""
    folder = tmp_path_factory.mktemp("envfile")
    (folder / ".env").write_text("ACCESS_TOKEN_TTL=123\nCORS_ORIGINS=https://a.example, https://b.example\n")
    monkeypatch.chdir(folder)
    s = Settings()
    assert (s.access_token_ttl, s.cors_origins) == (123, ["https://a.example", "https://b.example"])


def test_issuer_defaults_to_public_url_and_https_enables_hsts() -> None:
    """JWT_ISSUER follows PUBLIC_API_URL unless set; an https URL turns on HSTS."""
    s = load_settings(PUBLIC_API_URL="https://auth.example.com/")
    assert (s.issuer, s.https) == ("https://auth.example.com", True)
    assert load_settings(JWT_ISSUER="urn:gh").issuer == "urn:gh"
