"""deploy/: alert rules and their promtool tests, the Prometheus config against a real Prometheus
scraping a real `gatehouse serve`, the Grafana dashboard, the Dockerfile and compose.yaml."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gatehouse.settings import Settings, load_settings
from tests.conftest import BASE_ENV, Server, asgi_client, create_user, free_port, login

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "rules.test.yml"
PROM_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "gatehouse-dashboard.json"
COMPOSE = DEPLOY / "compose.yaml"
PROMTOOL = "/usr/bin/promtool"
PROMETHEUS = "/usr/bin/prometheus"
METRICS_TOKEN = "scrape-token-for-the-deploy-tests-0123456789"
# Series Prometheus makes itself, not the service.
PROMETHEUS_SERIES = {"up"}
APP_SERVICES = ("migrate", "gatehouse-1", "gatehouse-2")


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60,
                          check=False)


def metric_names(expr: str) -> set[str]:
    """Every series a PromQL expression names: gatehouse_* identifiers and Prometheus's own."""
    names = set(re.findall(r"\b(gatehouse_[a-z0-9_]+)\b", expr))
    names |= {n for n in PROMETHEUS_SERIES if re.search(rf"\b{n}\{{", expr)}
    return names


def local_prometheus_config(tmp_path: Path, target: str, token: str) -> Path:
    """The shipped prometheus.yml with this machine's target, token file and rules path."""
    config = yaml.safe_load(PROM_CONFIG.read_text())
    token_file = tmp_path / "metrics_token"
    token_file.write_text(token)
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(RULES)]
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "gatehouse")
    job["authorization"]["credentials_file"] = str(token_file)
    job["static_configs"] = [{"targets": [target]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


# -- rules -------------------------------------------------------------------------------------


def test_rules_pass_promtool_check() -> None:
    """`promtool check rules` accepts deploy/prometheus/rules.yml."""
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_rules_unit_tests_pass() -> None:
    """`promtool test rules` runs rules.test.yml and every test passes."""
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_rule_is_tested_firing_and_not_firing() -> None:
    """Each alert rule has a promtool case where it fires and one where it stays silent."""
    fires: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fires == set(), "rules never shown firing"
    assert names - silent == set(), "rules never shown silent"


def test_every_rule_has_for_severity_and_annotations() -> None:
    """Every alert has `for:`, a severity label, summary, description and a runbook_url."""
    for rule in alert_rules():
        assert "for" in rule, rule["alert"]
        assert rule["labels"]["severity"] in {"page", "warning"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        url = annotations["runbook_url"]
        assert re.fullmatch(r"docs/runbook\.md#[a-z0-9-]+", url), rule["alert"]


def test_slo_targets_each_have_a_rule() -> None:
    """DESIGN.md "Targets" thresholds are the rules': 0.1 %, 99.9 %, 100 ms, 200 ms p95, reuse."""
    exprs = {rule["alert"]: " ".join(rule["expr"].split()) for rule in alert_rules()}
    assert exprs["GatehouseHighErrorRate"].endswith("> 0.001")
    assert exprs["GatehouseLoginSuccessLow"].endswith("< 0.999")
    assert exprs["GatehouseRefreshLatencyHigh"].endswith("> 0.1")
    assert exprs["GatehouseApiLatencyHigh"].startswith("histogram_quantile(0.95,")
    assert exprs["GatehouseApiLatencyHigh"].endswith("> 0.2")
    assert 'result="reused"' in exprs["GatehouseRefreshReuse"]
    assert 'result="reused"' in exprs["GatehouseRefreshReuseBurst"]


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    """`promtool check config` accepts the shipped prometheus.yml once its token file exists."""
    config = yaml.safe_load(PROM_CONFIG.read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "gatehouse")
    assert job["authorization"]["credentials_file"] == "/run/secrets/gatehouse_metrics_token"
    assert config["rule_files"] == ["/etc/prometheus/rules.yml"]
    token = tmp_path / "token"
    token.write_text("x")
    job["authorization"]["credentials_file"] = str(token)
    config["rule_files"] = [str(RULES)]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    result = promtool("check", "config", str(local))
    assert result.returncode == 0, result.stdout + result.stderr


# -- every series named is one the service exports --------------------------------------------


@pytest_asyncio.fixture
async def exported_names(make_app: Callable[..., Any]) -> set[str]:
    """Sample and family names of /metrics after logins, refreshes, errors and a logout."""
    app = make_app(GATEHOUSE_METRICS_TOKEN=METRICS_TOKEN)
    await create_user(app.state.ctx)
    async with asgi_client(app) as client:
        tokens = await login(client)
        await client.post("/api/v1/auth/login", json={"email": "alice@example.com",
                                                      "password": "wrong-password-123"})
        await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        await client.post("/api/v1/auth/refresh", json={"refresh_token": "nope"})
        await client.get("/api/v1/users/profile")
        text = (await client.get("/metrics",
                                 headers={"Authorization": f"Bearer {METRICS_TOKEN}"})).text
    names: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    for family in text_string_to_metric_families(text):
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


@pytest.mark.asyncio
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_rules_name_only_exported_series(exported_names: set[str]) -> None:
    """Every series in rules.yml is one /metrics exports (or Prometheus's own `up`)."""
    used = set().union(*(metric_names(rule["expr"]) for rule in alert_rules()))
    assert "gatehouse_http_requests_total" in exported_names
    assert used - exported_names - PROMETHEUS_SERIES == set()
    assert "gatehouse_http_request_duration_seconds_bucket" in used


@pytest.mark.asyncio
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_dashboard_names_only_exported_series(exported_names: set[str]) -> None:
    """Every `expr` of the Grafana dashboard names series /metrics exports, and covers API.md §7's
    requests, status, login and refresh outcomes, p95, pool and cache gauges."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    used = set().union(*(metric_names(e) for e in exprs))
    assert used - exported_names - PROMETHEUS_SERIES == set()
    assert {"gatehouse_http_requests_total", "gatehouse_http_request_duration_seconds_bucket",
            "gatehouse_auth_logins_total", "gatehouse_auth_refresh_total",
            "gatehouse_db_pool_in_use", "gatehouse_db_pool_size",
            "gatehouse_cache_fallback_active"} <= used
    assert any("by (status)" in e for e in exprs)
    assert all(t["datasource"]["uid"] == "prometheus"
               for p in dashboard["panels"] for t in p["targets"])


# -- a real Prometheus scraping a real server ----------------------------------------------------


def _api(base: str, path: str, **params: str) -> Any:
    response = httpx.get(f"{base}{path}", params=params, timeout=5)
    response.raise_for_status()
    return response.json()["data"]


def _healthcheck_command() -> list[str]:
    """The Dockerfile's HEALTHCHECK command (exec form)."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    match = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])\s*$", text, re.M)
    assert match, "no exec-form HEALTHCHECK"
    command: list[str] = json.loads(match.group(1))
    return command


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_real_prometheus_scrapes_gatehouse_and_evaluates_the_rules(
    make_server: Callable[..., Server], tmp_path: Path,
) -> None:
    """Prometheus with the shipped config scrapes `gatehouse serve` with the bearer token from a
    file: the target is up, gatehouse_http_requests_total is stored, every rule evaluates ok;
    the Dockerfile's healthcheck command passes against the same server."""
    server = make_server(GATEHOUSE_METRICS_TOKEN=METRICS_TOKEN)
    for _ in range(3):
        httpx.get(f"{server.url}/api/v1/users/profile", timeout=5)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = local_prometheus_config(tmp_path, f"127.0.0.1:{server.port}", METRICS_TOKEN)
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 25
        targets: list[Any] = []
        series: list[Any] = []
        rules: list[Any] = []
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                targets = _api(base, "/api/v1/targets")["activeTargets"]
                series = _api(base, "/api/v1/query",
                              query='gatehouse_http_requests_total{job="gatehouse"}')["result"]
                groups = _api(base, "/api/v1/rules")["groups"]
                rules = [r for g in groups for r in g["rules"]]
            except httpx.HTTPError:
                pass
            if (targets and all(t["health"] == "up" for t in targets) and series and rules
                    and all(r["health"] == "ok" and r["lastEvaluation"][:4] != "0001"
                            for r in rules)):
                break
            time.sleep(0.5)
        assert [(t["labels"]["job"], t["health"], t["lastError"]) for t in targets] == \
            [("gatehouse", "up", "")]
        assert series, "gatehouse_http_requests_total not stored"
        assert {r["name"] for r in rules} == {r["alert"] for r in alert_rules()}
        assert [r["name"] for r in rules if r["health"] != "ok"] == []
        assert all(r["lastEvaluation"][:4] != "0001" for r in rules), "rules never evaluated"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
    # The image's healthcheck, pointed at this server's port, exits 0.
    command = _healthcheck_command()
    assert command[:2] == ["python", "-c"]
    probe = command[2].replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
    assert subprocess.run([sys.executable, "-c", probe], timeout=10,
                          check=False).returncode == 0
    server.stop()
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=10,
                          check=False).returncode != 0


# -- Dockerfile and compose.yaml ----------------------------------------------------------------


def test_dockerfile_is_slim_non_root_with_healthcheck() -> None:
    """The image is python:3.11-slim, installs the package with pip, runs as a non-root user and
    serves on 0.0.0.0 with a urllib healthcheck on /healthz (no curl in slim)."""
    text = (DEPLOY / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in text.replace("\\\n", " ").splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    assert instructions[0] == ["FROM", "python:3.11-slim"]
    assert any(i[0] == "RUN" and "pip install ." in i[1] for i in instructions)
    users = [i[1].strip() for i in instructions if i[0] == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    last = [i[0] for i in instructions].index
    assert last("USER") < last("CMD")
    command = _healthcheck_command()
    assert "urllib.request" in command[2] and "/healthz" in command[2]
    compile(command[2], "healthcheck", "exec")
    cmd = json.loads(next(i[1] for i in instructions if i[0] == "CMD"))
    assert cmd[:2] == ["gatehouse", "serve"] and cmd[cmd.index("--host") + 1] == "0.0.0.0"  # noqa: S104


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _substituted(value: str) -> str:
    """Compose's ${VAR:?msg} with a sample value, ${VAR:-default} with its default."""
    samples = {"JWT_SECRET": BASE_ENV["JWT_SECRET"], "ENCRYPTION_KEY": BASE_ENV["ENCRYPTION_KEY"],
               "POSTGRES_PASSWORD": "pg-password", "GATEHOUSE_METRICS_TOKEN": METRICS_TOKEN}
    value = re.sub(r"\$\{(\w+):\?[^}]*\}", lambda m: samples[m.group(1)], value)
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: m.group(2), value)


def test_compose_has_the_stack() -> None:
    """compose.yaml runs two app instances behind a proxy, a migrate one-shot, PostgreSQL, Redis,
    Prometheus and Grafana, and the apps start only after migrate succeeded."""
    services = _compose()["services"]
    assert set(services) == {"proxy", "migrate", "gatehouse-1", "gatehouse-2", "postgres", "redis",
                             "prometheus", "grafana"}
    assert services["migrate"]["command"] == ["gatehouse", "db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    for name in ("gatehouse-1", "gatehouse-2"):
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert services[name]["depends_on"]["migrate"]["condition"] == \
            "service_completed_successfully"
        assert "command" not in services[name]  # the image's CMD: serve --host 0.0.0.0
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    caddyfile = (DEPLOY / "Caddyfile").read_text()
    assert services["proxy"]["image"].startswith("caddy:")
    assert "reverse_proxy gatehouse-1:8000 gatehouse-2:8000" in caddyfile
    assert "respond /metrics 404" in caddyfile
    proxy_ip = services["proxy"]["networks"]["backend"]["ipv4_address"]
    assert services["gatehouse-1"]["environment"]["GATEHOUSE_TRUSTED_PROXIES"] == proxy_ip


def test_compose_sets_only_gatehouse_settings_and_they_load() -> None:
    """Every variable compose sets on a Gatehouse service is a setting Gatehouse reads, and the
    set, filled in as deploy/env.example asks, passes Gatehouse's own validation."""
    known = {field.alias or name for name, field in Settings.model_fields.items()}
    services = _compose()["services"]
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert set(env) - known == set(), name
    env = {k: _substituted(str(v)) for k, v in services["gatehouse-1"]["environment"].items()}
    settings = load_settings(**env)
    assert settings.database_url.startswith("postgresql://gatehouse:pg-password@postgres:5432/")
    assert settings.redis_url == "redis://redis:6379/0"
    example = {line.split("=", 1)[0] for line in (DEPLOY / "env.example").read_text().splitlines()
               if line and not line.startswith("#")}
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    assert required <= example


def test_compose_mounts_files_that_exist() -> None:
    """Every file compose mounts exists, Prometheus gets the rules and the scrape token as a
    secret at the path prometheus.yml reads, and Grafana's provisioning finds the dashboard."""
    services = _compose()["services"]
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), source
    prometheus = services["prometheus"]
    assert "./prometheus/rules.yml:/etc/prometheus/rules.yml:ro" in prometheus["volumes"]
    assert prometheus["secrets"] == ["gatehouse_metrics_token"]
    assert _compose()["secrets"]["gatehouse_metrics_token"] == \
        {"environment": "GATEHOUSE_METRICS_TOKEN"}
    provider = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/gatehouse.yml").read_text())["providers"][0]
    dashboard_mount = next(v for v in services["grafana"]["volumes"]
                           if v.startswith("./grafana/gatehouse-dashboard.json:"))
    assert dashboard_mount.split(":")[1].startswith(provider["options"]["path"] + "/")
    datasource = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    assert datasource["uid"] == "prometheus" and datasource["url"] == "http://prometheus:9090"



# -- the runbook the alerts point at ------------------------------------------------------------


def test_every_runbook_url_has_its_section() -> None:
    """Each alert's runbook_url anchor is a section of docs/runbook.md, which covers the issue's
    situations and the rollback plan, and README and docs/operations.md link to it."""
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    anchors = set(re.findall(r'<a id="([a-z0-9-]+)"></a>\n## ', runbook))
    for rule in alert_rules():
        assert rule["annotations"]["runbook_url"].split("#", 1)[1] in anchors, rule["alert"]
    assert {"users-logged-out-unexpectedly", "refresh-failing-or-slow", "auth-error-storm",
            "secrets-missing-or-rotated", "migrations-out-of-date", "pool-exhaustion",
            "redis-down", "token-theft-alert", "rollback-plan"} <= anchors
    linked = set(re.findall(r"\]\(#([a-z0-9-]+)\)", runbook))
    assert linked <= anchors
    for command in ("gatehouse db downgrade", "gatehouse cache clear", "gatehouse db upgrade",
                    "gatehouse sessions revoke-all", "gatehouse logs analyze"):
        assert command in runbook
    assert "(docs/runbook.md)" in (ROOT / "README.md").read_text()
    assert "(runbook.md)" in (ROOT / "docs" / "operations.md").read_text()
