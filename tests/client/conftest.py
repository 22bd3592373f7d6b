"""Fakes for the SDK tests: a Gatehouse token server, a controllable clock, stores.

``FakeGatehouse`` implements the parts of API.md the SDK touches (login,
refresh with rotation, grace window and reuse detection, logout, profile)
and counts what happened. It is served two ways from the same logic: as an
``httpx.MockTransport`` handler (``fake.transport`` / ``fake.async_transport``)
for in-process tests, and over real HTTP (``live_server``) for tests that
need several processes.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from gatehouse.client import MemoryTokenStore, TokenSet, _clock

EMAIL = "ada@example.com"
PASSWORD = "correct horse battery staple"
P = "/api/v1"


@dataclass
class FakeSession:
    id: str
    current: str
    superseded: dict[str, float] = field(default_factory=dict)
    revoked: bool = False


Fault = tuple[int, str] | tuple[int, str, int] | Exception | Callable[[], "Fault | None"]


class FakeGatehouse:
    """An in-memory Gatehouse that rotates refresh tokens and counts every call."""

    email = EMAIL
    password = PASSWORD

    def __init__(
        self,
        *,
        access_ttl: float = 900.0,
        grace: float = 60.0,
        refresh_delay: float = 0.0,
        jwt_clock_offset: float = 0.0,
    ) -> None:
        self.access_ttl = access_ttl
        self.grace = grace
        self.refresh_delay = refresh_delay
        self.jwt_clock_offset = jwt_clock_offset
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.sessions: dict[str, FakeSession] = {}
        self.access: dict[str, tuple[str, float]] = {}
        self.rejected_access: set[str] = set()
        self.reject_every_access_token = False
        self.faults: dict[str, collections.deque[Fault]] = collections.defaultdict(
            collections.deque
        )
        self.stats: collections.Counter[str] = collections.Counter()
        self.refresh_tokens_presented: list[str] = []
        self.auth_headers: list[str | None] = []
        self.user = {"id": "u1", "email": EMAIL, "name": "Ada", "roles": ["user"]}

    # -- test controls ----------------------------------------------------------------

    def fail(self, path: str, *faults: Fault) -> None:
        """Answer the next requests to ``path`` with these faults, in order.

        A fault is a ``(status, code[, retry_after])`` problem answer, an exception
        the transport raises, or a function called when the request arrives that
        returns one of those, or None for a normal answer (to act at that moment).
        """
        self.faults[P + path].extend(faults)

    def reject_all_access_tokens(self) -> None:
        """Make the server answer 401 token_expired for every access token issued so far."""
        with self.lock:
            self.rejected_access.update(self.access)

    def revoke_all(self) -> None:
        """Revoke every session, as an admin would."""
        with self.lock:
            for session in self.sessions.values():
                session.revoked = True

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    @property
    def async_transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.ahandle)

    # -- adapters ---------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        fault = self._take_fault(request.url.path)
        if request.url.path == P + "/auth/refresh" and self.refresh_delay:
            time.sleep(self.refresh_delay)
        return self._to_response(fault, request)

    async def ahandle(self, request: httpx.Request) -> httpx.Response:
        fault = self._take_fault(request.url.path)
        if request.url.path == P + "/auth/refresh" and self.refresh_delay:
            await asyncio.sleep(self.refresh_delay)
        return self._to_response(fault, request)

    def _take_fault(self, path: str) -> Fault | None:
        with self.lock:
            queue = self.faults.get(path)
            return queue.popleft() if queue else None

    def _to_response(self, fault: Fault | None, request: httpx.Request) -> httpx.Response:
        while callable(fault):  # a fault decided when the request arrives
            fault = fault()
        if isinstance(fault, Exception):
            self.stats["transport_faults"] += 1
            raise fault
        if fault is not None:
            status, code, retry_after = (*fault, None)[:3]
            self.stats[f"fault_{status}"] += 1
            if request.url.path == P + "/auth/refresh":
                self.stats["refresh_calls"] += 1
            status, headers, body = self.problem(status, code, retry_after)
            return httpx.Response(status, headers=headers, content=body)
        status, headers, body = self.respond(
            request.method, request.url.path, dict(request.headers), request.content
        )
        return httpx.Response(status, headers=headers, content=body)

    # -- the fake API -----------------------------------------------------------------

    def problem(
        self, status: int, code: str, retry_after: int | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        request_id = f"req-{next(self.ids)}"
        body: dict[str, Any] = {
            "type": f"/errors/{code}",
            "title": code.replace("_", " "),
            "status": status,
            "code": code,
            "detail": f"fake {code}",
            "request_id": request_id,
        }
        headers = {"content-type": "application/problem+json", "x-request-id": request_id}
        if retry_after is not None:
            body["retry_after"] = retry_after
            headers["retry-after"] = str(retry_after)
        return status, headers, json.dumps(body).encode()

    def respond(
        self, method: str, path: str, headers: dict[str, str], content: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            if (method, path) == ("POST", P + "/auth/login"):
                return self._login(content)
            if (method, path) == ("POST", P + "/auth/refresh"):
                return self._refresh(content)
            self.auth_headers.append(headers.get("authorization"))
            if path == "/healthz":
                return self._ok({"status": "ok"})
            if path.split("?")[0].startswith(P + "/admin/"):
                return self.problem(403, "forbidden")  # the fake user has no admin permissions
            session, error = self._authenticate(headers)
            if error is not None:
                self.stats["answered_401"] += 1
                return error
            assert session is not None
            if (method, path) == ("POST", P + "/auth/logout"):
                session.revoked = True
                self.stats["logout"] += 1
                return 204, {"x-request-id": f"req-{next(self.ids)}"}, b""
            if path == P + "/users/profile" and method in ("GET", "PATCH"):
                if method == "PATCH":
                    self.user = {**self.user, **json.loads(content)}
                self.stats["profile"] += 1
                return self._ok(self.user)
            if path == P + "/auth/validate":
                return self._ok({"active": True, "user_id": "u1", "session_id": session.id})
            if method in ("GET", "POST", "PUT", "PATCH", "DELETE") and path == P + "/echo":
                self.stats[f"echo_{method}"] += 1
                return self._ok({"method": method})
            return self.problem(404, "not_found")

    def _ok(self, body: object) -> tuple[int, dict[str, str], bytes]:
        headers = {"content-type": "application/json", "x-request-id": f"req-{next(self.ids)}"}
        return 200, headers, json.dumps(body).encode()

    def _login(self, content: bytes) -> tuple[int, dict[str, str], bytes]:
        self.stats["login"] += 1
        body = json.loads(content)
        if body.get("email", "").lower() != EMAIL or body.get("password") != PASSWORD:
            return self.problem(401, "invalid_credentials")
        session = FakeSession(id=f"s{next(self.ids)}", current=f"rt-{next(self.ids)}")
        self.sessions[session.id] = session
        return self._pair(session)

    def _refresh(self, content: bytes) -> tuple[int, dict[str, str], bytes]:
        self.stats["refresh_calls"] += 1
        token = json.loads(content).get("refresh_token", "")
        self.refresh_tokens_presented.append(token)
        now = time.monotonic()
        session = next(
            (s for s in self.sessions.values() if token == s.current or token in s.superseded),
            None,
        )
        if session is None:
            return self.problem(401, "refresh_invalid")
        if token in session.superseded:
            if now - session.superseded[token] > self.grace:
                self.stats["reuse_detected"] += 1
                session.revoked = True
                return self.problem(401, "refresh_reused")
            if session.revoked:
                return self.problem(401, "session_revoked")
            self.stats["grace_hits"] += 1
            return self._pair(session)
        if session.revoked:
            return self.problem(401, "session_revoked")
        session.superseded[token] = now
        session.current = f"rt-{next(self.ids)}"
        self.stats["rotations"] += 1
        return self._pair(session)

    def _pair(self, session: FakeSession) -> tuple[int, dict[str, str], bytes]:
        access = self._jwt(session.id)
        self.access[access] = (session.id, time.monotonic())
        return self._ok(
            {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": self.access_ttl,
                "refresh_token": session.current,
                "refresh_expires_in": 2592000,
                "session_id": session.id,
                "user": self.user,
            }
        )

    def _jwt(self, session_id: str) -> str:
        # A JWT-shaped token whose iat/exp follow the *server's* (possibly skewed)
        # clock; the SDK must never read them.
        iat = int(time.time() + self.jwt_clock_offset)
        claims = {
            "sid": session_id,
            "iat": iat,
            "exp": iat + int(self.access_ttl),
            "n": next(self.ids),
        }
        parts = [{"alg": "HS256", "typ": "at+jwt"}, claims]
        encoded = [base64.urlsafe_b64encode(json.dumps(p).encode()).rstrip(b"=") for p in parts]
        return b".".join([*encoded, b"sig"]).decode()

    def _authenticate(
        self, headers: dict[str, str]
    ) -> tuple[FakeSession | None, tuple[int, dict[str, str], bytes] | None]:
        value = headers.get("authorization", "")
        if not value.startswith("Bearer "):
            return None, self.problem(401, "token_missing")
        token = value.removeprefix("Bearer ")
        if token not in self.access:
            return None, self.problem(401, "token_invalid")
        session_id, issued = self.access[token]
        session = self.sessions[session_id]
        if session.revoked:
            return None, self.problem(401, "session_revoked")
        if self.reject_every_access_token or token in self.rejected_access:
            return None, self.problem(401, "token_expired")
        if time.monotonic() - issued >= self.access_ttl:
            return None, self.problem(401, "token_expired")
        return session, None


class FakeClock:
    """A monotonic/wall clock that only moves when told; sleeps advance it instantly."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall_offset = time.time() - self.mono
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self.mono

    def wall(self) -> float:
        return self.mono + self.wall_offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.mono += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def fake() -> FakeGatehouse:
    """A fresh fake Gatehouse server."""
    return FakeGatehouse()


@pytest.fixture
def make_fake() -> type[FakeGatehouse]:
    """The fake server class, for tests that need non-default settings."""
    return FakeGatehouse


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Replace the SDK's clocks and sleeps with a fake that moves only when told."""
    fake_clock = FakeClock()
    monkeypatch.setattr(_clock, "monotonic", fake_clock.monotonic)
    monkeypatch.setattr(_clock, "wall", fake_clock.wall)
    monkeypatch.setattr(_clock, "sleep", fake_clock.sleep)
    monkeypatch.setattr(_clock, "asleep", fake_clock.asleep)
    return fake_clock


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the SDK's retry sleeps instead of sleeping (real clocks otherwise)."""
    sleeps: list[float] = []

    async def asleep(seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr(_clock, "sleep", sleeps.append)
    monkeypatch.setattr(_clock, "asleep", asleep)
    return sleeps


def expired_copy(tokens: TokenSet) -> TokenSet:
    """The same tokens as if obtained long ago: the SDK must refresh before using them."""
    data = tokens.to_dict()
    data["obtained_at"] = _clock.wall() - 10 * tokens.expires_in
    return TokenSet.from_dict(data)


@pytest.fixture
def expire() -> Any:
    """Return a helper that rewrites a store's tokens as locally expired."""

    def expire_store(store: MemoryTokenStore | Any) -> None:
        tokens = store.load()
        assert tokens is not None
        store.save(expired_copy(tokens))

    return expire_store


@pytest.fixture
def live_server() -> Iterator[tuple[str, FakeGatehouse]]:
    """Serve a FakeGatehouse (2-second access tokens) over real HTTP on a free port."""
    gatehouse = FakeGatehouse(access_ttl=2.0)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            content = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, out_headers, body = gatehouse.respond(self.command, self.path, headers, content)
            self.send_response(status)
            for name, value in out_headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", gatehouse
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
