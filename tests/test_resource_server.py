"""Protect your own API (docs/protect-your-api.md) against a real `gatehouse serve`.

The guide's FastAPI app (docs/examples/fastapi/app.py, run in process) and
Express app (docs/examples/express/server.mjs, run with node) must accept
Gatehouse's tokens, refuse forged, expired, misaddressed and `alg: none`
ones with the service's problem codes, follow a key rotation with one JWKS
fetch, and (FastAPI, `check_revocation`) refuse a logged-out session.
"""

from __future__ import annotations

import asyncio
import http.server
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gatehouse.auth.jwks import ed25519_jwk, write_new_key
from gatehouse.auth.rbac import ROLE_PERMISSIONS
from gatehouse.client import NotAuthenticated, _clock
from gatehouse.client.resource import ROLE_PERMISSIONS as SDK_ROLE_PERMISSIONS
from gatehouse.client.resource import AsyncTokenVerifier, TokenVerifier
from gatehouse.settings import Settings
from tests.conftest import JWT_SECRET, PASSWORD, Server, free_port, run_cli
from tests.test_access_tokens import (
    _load_key,
    _segments,
    claims_of,
    header_of,
    sign_hs256,
    valid_claims,
)
from tests.test_access_tokens import sign_eddsa as sign_with
from tests.test_sdk_real_server import seed

# The verifier touches no database: one backend is enough, and the checks without a server
# run once too.
pytestmark = [pytest.mark.parametrize("backend", ["sqlite"], indirect=True),
              pytest.mark.usefixtures("backend")]

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "protect-your-api.md"
FASTAPI_APP = ROOT / "docs" / "examples" / "fastapi" / "app.py"
EXPRESS_APP = ROOT / "docs" / "examples" / "express" / "server.mjs"
USER, AUDITOR = "reader@example.com", "auditor@example.com"
PROBLEM = "application/problem+json"


# -- helpers ------------------------------------------------------------------------------------


class Clock:
    """The SDK's monotonic clock, moved only by the test (cache ages, refetch intervals)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1000.0
        monkeypatch.setattr(_clock, "monotonic", lambda: self.now)


class Counting(httpx.AsyncHTTPTransport):
    """A real transport that counts the verifier's requests by path."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await super().handle_async_request(request)


def load_fastapi_example(monkeypatch: pytest.MonkeyPatch, url: str) -> ModuleType:
    """Import the guide's app.py as `uvicorn app:app` would, with GATEHOUSE_URL set."""
    monkeypatch.setenv("GATEHOUSE_URL", url)
    spec = importlib.util.spec_from_file_location("protect_your_api_example", FASTAPI_APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tokens(server: Server, email: str) -> dict[str, Any]:
    r = httpx.post(f"{server.url}/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def logout(server: Server, tokens: dict[str, Any]) -> None:
    r = httpx.post(f"{server.url}/api/v1/auth/logout",
                   headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert r.status_code == 204, r.text


def forged(token: str, key: Ed25519PrivateKey, **claims: Any) -> str:
    """`token` re-signed with Gatehouse's own key after changing `claims`."""
    return sign_with({**claims_of(token), **claims}, key, header_of(token))


def attacks(token: str, key: Ed25519PrivateKey) -> dict[str, tuple[str, str]]:
    """Tokens a resource server must refuse, and the code it must answer with."""
    now = int(time.time())
    payload = token.split(".")[1]
    admin = _segments(header_of(token), {**claims_of(token), "roles": ["admin"]})
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {
        "expired": (forged(token, key, iat=now - 900, exp=now - 60), "token_expired"),
        "wrong audience": (forged(token, key, aud="billing"), "token_invalid"),
        "wrong issuer": (forged(token, key, iss="https://evil.example"), "token_invalid"),
        "tampered": (f"{admin}.{token.split('.')[2]}", "token_invalid"),
        "alg none": (_segments({**header_of(token), "alg": "none"}, claims_of(token)) + ".",
                     "token_invalid"),
        "HS256 with the public key": (
            sign_hs256(claims_of(token), {**header_of(token), "alg": "HS256"}, public),
            "token_invalid"),
        "not a JWT": (payload, "token_invalid"),
    }


def assert_problem(r: httpx.Response, status: int, code: str, challenge: str | None = None) -> None:
    assert (r.status_code, r.headers["content-type"].split(";")[0]) == (status, PROBLEM), r.text
    body = r.json()
    assert (body["code"], body["type"], body["status"]) == (code, f"/errors/{code}", status)
    assert r.headers.get("www-authenticate") == challenge


def get(client: httpx.Client | httpx.AsyncClient, path: str, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get(path, headers=headers)


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    path = tmp_path / "jwt-keys"
    write_new_key(path)
    return path


@pytest.fixture
def signing_key(keys_dir: Path) -> Ed25519PrivateKey:
    """Gatehouse's own signing key: tokens re-signed with it isolate the claim checks."""
    return _load_key(next(keys_dir.glob("*.pem")))


@pytest.fixture
def eddsa_server(make_server: Callable[..., Server], make_settings: Callable[..., Settings],
                 keys_dir: Path) -> Server:
    seed(make_settings(), (USER, ["user"]), (AUDITOR, ["support"]))
    return make_server(JWT_ALGORITHM="EdDSA", JWT_KEYS_DIR=str(keys_dir))


@pytest.fixture
def express(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start the guide's Express app with node (stopped by PID); return its URL."""
    procs: list[subprocess.Popen[str]] = []

    def start(**env: str) -> str:
        port = free_port()
        proc = subprocess.Popen(
            ["node", str(EXPRESS_APP)], env={**os.environ, "PORT": str(port), **env},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "listening on ...", or node's error and EOF
        assert line.startswith("listening on"), line + proc.stdout.read()
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


# -- tests --------------------------------------------------------------------------------------


def test_the_guide_shows_the_code_the_tests_run() -> None:
    """docs/protect-your-api.md quotes the FastAPI and Express examples verbatim."""
    guide = GUIDE.read_text()
    assert f"```python\n{FASTAPI_APP.read_text()}```" in guide
    assert f"```js\n{EXPRESS_APP.read_text()}```" in guide


def test_sdk_role_table_is_the_servers() -> None:
    """Tokens carry roles only: the verifier grants exactly the server's permissions per role."""
    assert SDK_ROLE_PERMISSIONS == ROLE_PERMISSIONS


def test_verifier_refuses_to_be_configured_for_none_or_hs256_without_the_secret() -> None:
    """An HS256 or `none` pin without `secret=` is a configuration error, not a quiet acceptance."""
    for algorithm in ("none", "HS256", "hs512"):
        with pytest.raises(ValueError, match="HS256 needs secret"):
            TokenVerifier("http://127.0.0.1:1", algorithm=algorithm)
    with pytest.raises(ValueError, match="secret= means HS256"):
        TokenVerifier("http://127.0.0.1:1", secret=JWT_SECRET, algorithm="EdDSA")


@pytest.mark.asyncio
async def test_fastapi_example_yields_the_principal_and_answers_problems_like_the_service(
    eddsa_server: Server, signing_key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Valid tokens give user id, roles and permissions; bad or logged-out ones the service's 401s.
    """
    clock = Clock(monkeypatch)
    example = load_fastapi_example(monkeypatch, eddsa_server.url)
    user, auditor = tokens(eddsa_server, USER), tokens(eddsa_server, AUDITOR)
    transport = httpx.ASGITransport(app=example.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
        r = await get(api, "/me", user["access_token"])
        assert r.json() == {"user_id": user["user"]["id"], "roles": ["user"], "permissions": []}
        r = await get(api, "/reports", auditor["access_token"])
        assert r.json() == {"reports": [], "requested_by": auditor["user"]["id"]}
        assert_problem(await get(api, "/reports", user["access_token"]), 403, "forbidden")
        assert_problem(await get(api, "/me", None), 401, "token_missing", "Bearer")

        # check_revocation: a logout reaches the API once the answer cached for 5 s is stale.
        await get(api, "/me", auditor["access_token"])
        logout(eddsa_server, auditor)
        assert (await get(api, "/me", auditor["access_token"])).status_code == 200
        clock.now += 5
        r = await get(api, "/me", auditor["access_token"])
        assert_problem(r, 401, "session_revoked", 'Bearer error="invalid_token"')
    await example.verifier.aclose()

    # Without the revocation check, every token is judged here alone: no call to Gatehouse
    # beyond the one JWKS fetch, and the logged-out session's token passes until it expires.
    counting = Counting()
    offline = AsyncTokenVerifier(eddsa_server.url, transport=counting)
    transport = httpx.ASGITransport(app=example.create_app(offline))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
        assert (await get(api, "/me", auditor["access_token"])).status_code == 200
        # Re-signing with Gatehouse's key is what makes the claim checks below matter.
        resigned = forged(user["access_token"], signing_key, jti="x")
        assert (await get(api, "/me", resigned)).status_code == 200
        for name, (token, code) in attacks(user["access_token"], signing_key).items():
            r = await get(api, "/me", token)
            assert r.status_code == 401, name
            assert_problem(r, 401, code, 'Bearer error="invalid_token"')
    await offline.aclose()
    assert counting.paths == ["/.well-known/jwks.json"]


@pytest.mark.asyncio
async def test_rotated_key_is_fetched_once_and_unknown_kids_are_rate_limited(
    eddsa_server: Server, keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After `keys rotate` a new kid triggers one JWKS fetch per interval; old tokens still pass."""
    clock = Clock(monkeypatch)
    example = load_fastapi_example(monkeypatch, eddsa_server.url)
    await example.verifier.aclose()
    counting = Counting()
    verifier = AsyncTokenVerifier(eddsa_server.url, transport=counting, min_refetch_interval=5)
    transport = httpx.ASGITransport(app=example.create_app(verifier))
    old = (tokens(eddsa_server, USER))["access_token"]
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
        assert (await get(api, "/me", old)).status_code == 200
        assert counting.paths == ["/.well-known/jwks.json"]

        result = run_cli("keys", "rotate",
                         env={"JWT_ALGORITHM": "EdDSA", "JWT_KEYS_DIR": str(keys_dir)})
        assert result.returncode == 0, result.stderr
        new = old
        deadline = time.monotonic() + 30  # the server re-reads its keys every 5 s
        while header_of(new)["kid"] == header_of(old)["kid"] and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            new = (tokens(eddsa_server, USER))["access_token"]
        assert header_of(new)["kid"] != header_of(old)["kid"]

        clock.now += 1  # within the interval: no fetch, the unknown kid is refused
        assert_problem(await get(api, "/me", new), 401, "token_invalid",
                       'Bearer error="invalid_token"')
        clock.now += 5
        assert (await get(api, "/me", new)).status_code == 200
        assert (await get(api, "/me", old)).status_code == 200
        assert len(counting.paths) == 2

        # Made-up kids cost Gatehouse at most one fetch per interval.
        made_up = sign_with(claims_of(new), Ed25519PrivateKey.generate(),
                            {**header_of(new), "kid": "made-up"})
        for step in (0, 0, 5, 0, 0):
            clock.now += step
            assert (await get(api, "/me", made_up)).status_code == 401
        assert len(counting.paths) == 3
    await verifier.aclose()


@pytest.mark.asyncio
async def test_unreachable_issuer_answers_503_not_a_guess(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the keys cannot be fetched, the API answers 503 with Retry-After, never 200."""
    Clock(monkeypatch)
    example = load_fastapi_example(monkeypatch, f"http://127.0.0.1:{free_port()}")
    token = sign_with({"sub": "u", "sid": "s", "roles": []}, Ed25519PrivateKey.generate(),
                      {"alg": "EdDSA", "typ": "at+jwt", "kid": "k"})
    transport = httpx.ASGITransport(app=example.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
        r = await get(api, "/me", token)
    await example.verifier.aclose()
    assert_problem(r, 503, "service_unavailable")
    assert r.headers["retry-after"] == "5" and r.json()["retry_after"] == 5


class _IdleTimeoutIssuer(http.server.ThreadingHTTPServer):
    """A JWKS server whose keep-alive timer fires just as the client reuses the connection.

    Each connection answers one request (promising keep-alive), then is dropped
    unanswered when the next request arrives on it: what uvicorn does to a client
    that reuses a connection idle for its `timeout_keep_alive` (5 s) at that moment.
    """

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _IdleTimeoutHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.keys: list[dict[str, str]] = []
        self.answered = self.dropped = 0


class _IdleTimeoutHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _IdleTimeoutIssuer

    def handle(self) -> None:
        self.handle_one_request()
        if self.rfile.readline():  # the client reused the connection: drop it unanswered
            self.server.dropped += 1

    def do_GET(self) -> None:
        body = json.dumps({"keys": self.server.keys}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.server.answered += 1

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def idle_timeout_issuer() -> Iterator[_IdleTimeoutIssuer]:
    server = _IdleTimeoutIssuer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.mark.asyncio
async def test_a_fetch_on_a_connection_the_issuer_just_closed_is_sent_again(
    idle_timeout_issuer: _IdleTimeoutIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key rotation met on a stale keep-alive connection is a fetch on a new one, not a 503."""
    issuer, clock = idle_timeout_issuer, Clock(monkeypatch)
    old_key, new_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()

    def token(key: Ed25519PrivateKey, kid: str) -> str:
        return sign_with(valid_claims(iss=issuer.url, sub=kid), key,
                         {"alg": "EdDSA", "typ": "at+jwt", "kid": kid})

    def publish(key: Ed25519PrivateKey, kid: str) -> None:
        issuer.keys.append({**ed25519_jwk(key.public_key()), "kid": kid, "alg": "EdDSA",
                            "use": "sig"})

    publish(old_key, "old")
    with TokenVerifier(issuer.url) as verifier:
        assert verifier.verify(token(old_key, "old")).user_id == "old"
        publish(new_key, "new")  # a rotation; the verifier's pooled connection is now stale
        clock.now += 5
        assert verifier.verify(token(new_key, "new")).user_id == "new"
    assert (issuer.answered, issuer.dropped) == (2, 1)

    issuer.keys.clear()
    publish(old_key, "old")
    async with AsyncTokenVerifier(issuer.url) as averifier:
        assert (await averifier.verify(token(old_key, "old"))).user_id == "old"
        publish(new_key, "new")
        clock.now += 5
        assert (await averifier.verify(token(new_key, "new"))).user_id == "new"
    assert (issuer.answered, issuer.dropped) == (4, 2)


def test_express_example_accepts_gatehouse_tokens_and_refuses_forged_ones(
    eddsa_server: Server, signing_key: Ed25519PrivateKey, express: Callable[..., str]
) -> None:
    """The guide's Express app (jose, EdDSA from the JWKS) answers like the FastAPI one."""
    url = express(GATEHOUSE_URL=eddsa_server.url)
    user, auditor = tokens(eddsa_server, USER), tokens(eddsa_server, AUDITOR)
    with httpx.Client(base_url=url) as api:
        r = get(api, "/me", user["access_token"])
        assert r.json() == {"user_id": user["user"]["id"], "roles": ["user"], "permissions": []}
        r = get(api, "/reports", auditor["access_token"])
        assert r.json() == {"reports": [], "requested_by": auditor["user"]["id"]}
        assert_problem(get(api, "/reports", user["access_token"]), 403, "forbidden")
        assert_problem(get(api, "/me", None), 401, "token_missing", "Bearer")
        for name, (token, code) in attacks(user["access_token"], signing_key).items():
            r = get(api, "/me", token)
            assert r.status_code == 401, name
            assert_problem(r, 401, code, 'Bearer error="invalid_token"')
    # CHECK_REVOCATION=1 asks Gatehouse on every request: a logout is refused at once.
    checking = express(GATEHOUSE_URL=eddsa_server.url, CHECK_REVOCATION="1")
    with httpx.Client(base_url=checking) as api:
        assert get(api, "/reports", auditor["access_token"]).status_code == 200
        logout(eddsa_server, auditor)
        assert_problem(get(api, "/reports", auditor["access_token"]), 401, "session_revoked",
                       'Bearer error="invalid_token"')


def test_hs256_shared_secret_mode_in_python_and_express(
    make_server: Callable[..., Server], make_settings: Callable[..., Settings],
    express: Callable[..., str],
) -> None:
    """Under HS256 (the default) both examples verify with JWT_SECRET; another secret fails."""
    seed(make_settings(), (AUDITOR, ["support"]))
    server = make_server()
    auditor = tokens(server, AUDITOR)
    token = auditor["access_token"]
    other = sign_hs256(claims_of(token), header_of(token), b"another-secret-" * 3)

    block = re.search(r"```python\n(.*?)```", GUIDE.read_text().split("## HS256", 1)[1], re.S)
    assert block is not None
    env = {**os.environ, "GATEHOUSE_URL": server.url, "JWT_SECRET": JWT_SECRET,
           "ACCESS_TOKEN": token}
    run = subprocess.run([sys.executable, "-c", block.group(1)], env=env, capture_output=True,
                         text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"user_id": auditor["user"]["id"],
                                      "permissions": ["audit:read", "users:read"]}
    with TokenVerifier(server.url, secret=JWT_SECRET) as verifier:
        with pytest.raises(NotAuthenticated) as refused:
            verifier.verify(other)
        assert refused.value.code == "token_invalid"
    with TokenVerifier(server.url) as eddsa_only:  # pinned to EdDSA: an HS256 token is refused
        with pytest.raises(NotAuthenticated) as refused:
            eddsa_only.verify(token)
        assert refused.value.code == "token_invalid"

    url = express(GATEHOUSE_URL=server.url, JWT_SECRET=JWT_SECRET)
    with httpx.Client(base_url=url) as api:
        assert get(api, "/reports", token).json()["requested_by"] == auditor["user"]["id"]
        assert_problem(get(api, "/me", other), 401, "token_invalid", 'Bearer error="invalid_token"')
