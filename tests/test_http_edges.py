"""HTTP edges (issue 9, items 4, 5 and 13): header limits, cookie parsing cost, odd paths, HEAD,
405 `Allow`, strict booleans, and the runtime advisory in `doctor`."""

from __future__ import annotations

import json
import re
import socket
import time
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from starlette.requests import Request

from gatehouse.api.cookies import parse_cookie_header
from gatehouse.cli.doctor import check_runtime
from tests.conftest import BASE_ENV, asgi_client, bearer, login, run_cli

PROBLEM = "application/problem+json"
SECURITY_HEADERS = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
                    "x-frame-options": "DENY"}
# CVE-2024-7592's worst case: a quoted value of `\"` pairs (quadratic in http.cookies._unquote).
ADVERSARIAL = '"' + '\\"' * 7_500 + '"'  # 15 KiB, under the default 16 KiB header limit


def assert_problem(r: httpx.Response, status: int, code: str) -> None:
    assert (r.status_code, r.headers["content-type"]) == (status, PROBLEM), r.text[:200]
    body = r.json()
    assert (body["status"], body["code"], body["type"]) == (status, code, f"/errors/{code}")
    assert body["request_id"] == r.headers["x-request-id"]
    assert {k: r.headers.get(k) for k in SECURITY_HEADERS} == SECURITY_HEADERS


async def raw_request(app: Any, method: str, target: bytes,
                      headers: list[tuple[bytes, bytes]] | None = None) -> tuple[int, dict[str, str], bytes]:
    """Send one request to the ASGI app the way uvicorn (httptools) builds its scope from the
    request line: `raw_path` as sent, `path` percent-decoded."""
    raw_path, _, query = target.partition(b"?")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000),
        "root_path": "", "path": unquote(raw_path.decode("ascii")), "raw_path": raw_path,
        "query_string": query, "headers": [(b"host", b"127.0.0.1:8000"), *(headers or [])],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    for name, value in start["headers"]:
        # What a real server checks before writing a header (uvicorn's HEADER_VALUE_RE).
        assert not re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", value), (name, value)
        value.decode("ascii")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body


# -- item 4: the header section and cookies ------------------------------------------------------


@pytest.mark.asyncio
async def test_a_20_kb_cookie_header_is_431_before_anything_parses_it(client: httpx.AsyncClient) -> None:
    """A header section over 16 KiB answers 431 `headers_too_large` as problem+json, at once."""
    started = time.perf_counter()
    r = await client.get("/api/v1/users/profile", headers={"Cookie": "gh_access=" + ADVERSARIAL * 2})
    elapsed = time.perf_counter() - started
    assert_problem(r, 431, "headers_too_large")
    assert elapsed < 0.5, elapsed  # answered before the cookie is parsed (0.7 s before the fix)


@pytest.mark.asyncio
async def test_header_limit_counts_every_line_and_is_configurable(make_app: Any) -> None:
    """Many small headers count together; GATEHOUSE_MAX_HEADER_BYTES moves the limit."""
    many = {f"X-Filler-{i}": "v" * 100 for i in range(80)}  # ~9 KB in 80 lines
    async with asgi_client(make_app()) as c:
        assert (await c.get("/healthz", headers=many)).status_code == 200
    async with asgi_client(make_app(GATEHOUSE_MAX_HEADER_BYTES="8192")) as c:
        assert_problem(await c.get("/healthz", headers=many), 431, "headers_too_large")


def test_cookie_parsing_is_linear_in_the_header_length(app: Any) -> None:
    """Request.cookies (which FastAPI reads on every request) parses CVE-2024-7592's worst case,
    32 KiB of `\\"` pairs, in milliseconds; Python 3.11.7's http.cookies needs about a second."""
    header = ("gh_access=" + '"' + '\\"' * 16_000 + '"').encode()
    best = float("inf")
    for _ in range(3):
        request = Request({"type": "http", "headers": [(b"cookie", header)]})
        started = time.perf_counter()
        cookies = request.cookies
        best = min(best, time.perf_counter() - started)
    assert cookies["gh_access"] == '"' * 16_000
    assert best < 0.05, best


@pytest.mark.asyncio
async def test_a_15_kib_adversarial_cookie_costs_the_app_no_more_than_a_plain_one(
    client: httpx.AsyncClient,
) -> None:
    """Under the header limit, a quoted cookie full of backslashes is answered as fast as a plain
    one (401, token_invalid): no route reaches a quadratic parser (0.27 s before the fix)."""
    async def elapsed(value: str) -> float:
        started = time.perf_counter()
        r = await client.get("/api/v1/users/profile", headers={"Cookie": "gh_access=" + value})
        assert_problem(r, 401, "token_invalid")
        return time.perf_counter() - started

    adversarial = min([await elapsed(ADVERSARIAL) for _ in range(3)])
    plain = min([await elapsed("x" * len(ADVERSARIAL)) for _ in range(3)])
    assert adversarial < plain + 0.1, (adversarial, plain)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("a=1; b=2", {"a": "1", "b": "2"}),
        ('a="x\\"y"; b="\\101\\n"', {"a": 'x"y', "b": "An"}),
        ("novalue; =; k=v=w; a=1; a=2", {"": "novalue", "k": "v=w", "a": "2"}),
        ('q="unterminated', {"q": '"unterminated'}),
    ],
)
def test_cookie_parser_reads_headers_as_starlette_did(header: str, expected: dict[str, str]) -> None:
    """The linear parser gives the names and values Starlette's parser gave (quotes, octal and
    backslash escapes, nameless cookies, the last duplicate wins)."""
    assert parse_cookie_header(header) == expected


# -- item 5: odd paths ----------------------------------------------------------------------------


ODD_PATHS = [b"/api/%0d%0a", b"/api/%E2%82%AC", b"/%00", b"/api/v1/%ff", b"/api/%ff%fe",
             b"//", b"/api/../x", b"/api/" + b"a" * 8000, b"/" + b"%2F" * 3000, b"/api/%3Cx%3E"]


@pytest.mark.asyncio
@pytest.mark.parametrize("target", ODD_PATHS, ids=lambda t: t[:24].decode())
async def test_every_odd_path_gets_problem_json_with_request_id_and_security_headers(
    app: Any, target: bytes
) -> None:
    """Encoded CR LF, non-Latin-1, NUL, invalid UTF-8, `//`, dot segments and overlong paths all
    answer 404 problem+json with X-Request-ID and the security headers, never a dropped answer."""
    status, headers, body = await raw_request(app, "GET", target)
    problem = json.loads(body)
    assert (status, headers["content-type"], problem["code"]) == (404, PROBLEM, "not_found")
    assert problem["request_id"] == headers["x-request-id"]
    assert {k: headers.get(k) for k in SECURITY_HEADERS} == SECURITY_HEADERS


@pytest.mark.asyncio
async def test_the_successor_link_is_the_raw_path_under_api_v1(app: Any) -> None:
    """Unversioned routes' `Link` names `/api/v1/...` with the path as it was sent, escapes kept."""
    _, headers, _ = await raw_request(app, "GET", b"/api/%0d%0a?x=1")
    assert headers["link"] == '</api/v1/%0d%0a>; rel="successor-version"'
    _, headers, _ = await raw_request(app, "GET", b"/api/users/profile")
    assert headers["link"] == '</api/v1/users/profile>; rel="successor-version"'
    assert headers["deprecation"].startswith("@")


def _raw_http(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"])
def test_real_server_answers_odd_paths_and_huge_headers_with_problem_json(make_server: Any) -> None:
    """Through `gatehouse serve` and a raw socket: `/api/%0d%0a` gets an answer (it got none),
    `/api/%E2%82%AC` a 404 problem+json (a plain-text 500 before), what the HTTP parser refuses
    (a raw 0xFF byte) a 400 problem+json (plain text from uvicorn before), a 20 KB Cookie and an
    8 MB header (cut off unbuffered) 431; a WebSocket upgrade the HTTP answer (a bare 403 before)."""
    server = make_server()
    for target, status, code in (
        (b"/api/%0d%0a", b"404", "not_found"), (b"/api/%E2%82%AC", b"404", "not_found"),
        (b"/api/v1/%ff", b"404", "not_found"), (b"/api/\xff", b"400", "bad_request"),
        (b"/api/" + b"a" * 60_000, b"404", "not_found"),
        (b"/api/" + b"a" * 100_000, b"431", "headers_too_large"),  # the request line counts
    ):
        answer = _raw_http(server.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n"
                                        b"Connection: close\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 " + status), answer[:300]
        assert b"content-type: application/problem+json" in head.lower()
        assert b"x-request-id: " in head.lower() and b"x-content-type-options: nosniff" in head.lower()
        problem = json.loads(body)
        assert problem["code"] == code
        assert f"x-request-id: {problem['request_id']}".encode() in head.lower()
    cookie = b"Cookie: gh_access=" + ADVERSARIAL.encode() * 2 + b"\r\n"
    answer = _raw_http(server.port, b"GET /api/v1/users/profile HTTP/1.1\r\nHost: x\r\n" + cookie
                       + b"Connection: close\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431"), answer[:300]
    assert json.loads(body)["code"] == "headers_too_large"
    flood = b"X-Flood: " + b"a" * 8_000_000 + b"\r\n"  # past the ceiling: never buffered whole
    started = time.perf_counter()
    answer = _raw_http(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + flood + b"\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431"), answer[:300]
    assert json.loads(body)["code"] == "headers_too_large" and b"x-request-id: " in head.lower()
    assert time.perf_counter() - started < 5
    head_answer = _raw_http(server.port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n"
                                         b"Connection: close\r\n\r\n")
    assert head_answer.startswith(b"HTTP/1.1 200") and head_answer.endswith(b"\r\n\r\n")
    # A WebSocket upgrade (Gatehouse has none): the HTTP answer, not a bare 403, and no warning.
    answer = _raw_http(server.port, b"GET /api/v1/users/profile HTTP/1.1\r\nHost: x\r\n"
                       b"Connection: Upgrade, close\r\nUpgrade: websocket\r\n"
                       b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401"), answer[:300]
    assert json.loads(body)["code"] == "token_missing" and b"x-request-id: " in head.lower()
    assert "upgrade" not in server.logs().lower().replace("db upgrade", "")


# -- item 13: HEAD, Allow, strict booleans -------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/openapi.json", "/docs",
                                  "/.well-known/jwks.json", "/api/v1/users/profile"])
async def test_head_answers_like_get_without_a_body(client: httpx.AsyncClient, path: str) -> None:
    """HEAD on a GET route has GET's status and headers and no body (monitors probe with HEAD)."""
    get, head = await client.get(path), await client.head(path)
    assert head.status_code == get.status_code != 405
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == get.headers["content-length"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/api/v1/users/profile", "GET, HEAD, PATCH"),
        ("POST", "/healthz", "GET, HEAD"),
        ("PUT", "/api/v1/admin/users/some-id", "DELETE, GET, HEAD, PATCH"),
        ("GET", "/api/v1/auth/login", "POST"),
        ("HEAD", "/api/v1/auth/logout", "POST"),
    ],
)
async def test_405_allow_lists_every_method_of_the_path(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    """A 405's Allow names every method any route of that path answers (RFC 9110 §15.5.6)."""
    r = await client.request(method, path)
    assert (r.status_code, r.headers["allow"]) == (405, allow)
    if method != "HEAD":
        assert_problem(r, 405, "method_not_allowed")


@pytest.mark.asyncio
@pytest.mark.parametrize("value", [0, 1, "false", "true", "off", "no", None])
async def test_booleans_in_bodies_are_json_booleans_only(
    client: httpx.AsyncClient, admin: Any, alice: Any, value: Any
) -> None:
    """`disabled` and `require_signature` take only true/false: 0, "false", "off"… are 422 and
    change nothing (pydantic's lax mode read them as booleans)."""
    headers = bearer(await login(client, "root@example.com"))
    r = await client.patch(f"/api/v1/admin/users/{alice.id}", json={"disabled": value},
                           headers=headers)
    if value is None:
        assert r.status_code == 200, r.text  # null means "leave as is"
    else:
        assert_problem(r, 422, "validation_failed")
        assert r.json()["errors"][0]["loc"] == ["body", "disabled"]
    assert (await client.get(f"/api/v1/admin/users/{alice.id}", headers=headers)).json()[
        "disabled"] is False
    r = await client.post("/api/v1/admin/api-keys", headers=headers,
                          json={"name": "k", "scopes": ["users:read"], "require_signature": value})
    assert_problem(r, 422, "validation_failed")


# -- item 4: doctor and the Python runtime --------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "fixed_in"),
    [((3, 11, 7), "3.11.10"), ((3, 11, 9), "3.11.10"), ((3, 12, 5), "3.12.6"),
     ((3, 10, 14), "3.10.15"), ((3, 9, 19), "3.9.20"), ((3, 8, 19), "3.8.20"),
     ((3, 11, 10), None), ((3, 12, 6), None), ((3, 13, 0), None), ((3, 14, 2), None)],
)
def test_runtime_check_warns_on_pythons_with_the_cookie_cve(
    version: tuple[int, int, int], fixed_in: str | None
) -> None:
    """Releases before the CVE-2024-7592 fix warn (never fail) and name the fixed release."""
    check = check_runtime(version)
    assert check.ok is True and check.warning is (fixed_in is not None)
    if fixed_in:
        assert "CVE-2024-7592" in check.detail and f"fixed in {fixed_in}" in check.detail
        assert check.hint == f"upgrade Python to {fixed_in} or later"


def test_doctor_prints_the_runtime_line_and_lists_warnings_in_json(tmp_path: Any) -> None:
    """`doctor` prints one python_runtime line (WARN on an affected Python) and --json lists it
    under `warnings` without changing `ok` or the exit status."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/d.db", **BASE_ENV}
    run_cli("db", "upgrade", env=env, cwd=tmp_path)
    expected = check_runtime()
    text = run_cli("doctor", env=env, cwd=tmp_path)
    mark = "WARN" if expected.warning else "ok  "
    line = next(x for x in text.stdout.splitlines() if "python_runtime" in x)
    assert line.startswith(f"{mark} python_runtime") and expected.detail in line, text.stdout
    assert text.returncode == 0, text.stdout
    report = json.loads(run_cli("doctor", "--json", env=env, cwd=tmp_path).stdout)
    assert report["ok"] is True
    # "mail" warns too: this environment has no SMTP_URL (tests/test_mail.py); so does
    # "password_hashing": the suite hashes below OWASP's costs for speed (tests/test_passwords.py).
    assert [w for w in report["warnings"] if w not in {"mail", "password_hashing"}] == (
        ["python_runtime"] if expected.warning else [])


@pytest.mark.asyncio
async def test_a_repeated_query_parameter_is_422_not_silently_one_of_them(
    client: httpx.AsyncClient, admin: Any
) -> None:
    """`?limit=1&limit=500` is refused (422) rather than read as either value: no API query
    parameter is a list (schemathesis found repeated `cursor` values accepted)."""
    headers = bearer(await login(client, "root@example.com"))
    r = await client.get("/api/v1/admin/users?limit=1&limit=500", headers=headers)
    assert_problem(r, 422, "validation_failed")
    assert r.json()["errors"] == [{"loc": ["query", "limit"], "msg": "Given more than once."}]
    r = await client.get("/api/v1/auth/sessions?cursor=a&x=1&cursor=b", headers=headers)
    assert_problem(r, 422, "validation_failed")
    assert (await client.get("/api/v1/admin/users?limit=1&q=a", headers=headers)).status_code == 200


@pytest.mark.asyncio
async def test_openapi_declares_the_rules_the_service_enforces(make_app: Any) -> None:
    """The document states what the service checks: known roles and scopes, the configured
    password minimum, email format where an account is created, no NUL in request strings, the
    431 answer, and 409 on DELETE (the last admin): schemathesis found the last one undeclared."""
    async with asgi_client(make_app(GATEHOUSE_SIGNUP="open", GATEHOUSE_PASSWORD_MIN_LENGTH="14")) as c:
        doc = (await c.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    create = schemas["AdminUserCreate"]["properties"]
    assert create["roles"]["items"]["enum"] == ["admin", "operator", "support", "user"]
    assert create["password"]["minLength"] == 14 and create["email"]["format"] == "email"
    assert schemas["RegisterIn"]["properties"]["password"]["minLength"] == 14
    assert schemas["PasswordChangeIn"]["properties"]["new_password"]["minLength"] == 14
    assert "format" not in schemas["LoginIn"]["properties"]["email"]  # any string: 401, not 422
    scopes = schemas["ApiKeyCreate"]["properties"]["scopes"]["items"]["enum"]
    assert {"users:read", "api_keys:manage"} <= set(scopes)
    assert create["name"]["pattern"] == "^[^\\u0000]*$"
    delete = doc["paths"]["/api/v1/admin/users/{user_id}"]["delete"]["responses"]
    assert {"409", "431"} <= set(delete)
    assert delete["409"]["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/Problem"}
