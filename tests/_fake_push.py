"""A local Web Push service for tests: checks what a real one checks, and decrypts like a browser.

It listens on a free loopback port (a thread per request), verifies every POST's VAPID
`Authorization: vapid t=<jwt>, k=<key>` header (ES256 with the configured public key,
`aud` its own origin, `exp` in the future and within 24 h, `sub` the configured subject),
its `Content-Encoding`, `TTL` and `Urgency`, then decrypts the `aes128gcm` body with the
fake browser's private key and auth secret (RFC 8291), as the browser would. Each
subscription has a script of answers (a status, or None to accept and never answer).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gatehouse.notify.vapid import _b64 as b64  # the unpadded base64url browsers use
from gatehouse.notify.vapid import _unb64 as unb64

_AUTH = re.compile(r"^vapid t=([\w.-]+),\s*k=([\w-]+)$")
HANG_LIMIT = 60.0  # a hanging answer is released at close() or after this long


@dataclass
class FakeBrowser:
    """The user agent's side of one subscription: a P-256 key pair and a 16-byte auth secret."""

    endpoint: str
    answers: list[int | None]
    retry_after: str | Callable[[], str] | None = None  # a callable is read at each answer
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth: bytes = field(default_factory=lambda: secrets.token_bytes(16))

    @property
    def p256dh(self) -> str:
        return b64(self.key.public_key().public_bytes(Encoding.X962,
                                                      PublicFormat.UncompressedPoint))

    def subscription(self) -> dict[str, Any]:
        """What `PushSubscription.toJSON()` gives the page, to POST to the server."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": b64(self.auth)}}


@dataclass
class Received:
    """One POST that passed every check: when it came, its headers, claims and payload."""

    path: str
    at: float
    headers: dict[str, str]
    claims: dict[str, Any]
    payload: dict[str, Any]


class FakePushService:
    def __init__(self, vapid_public_key: str, subject: str) -> None:
        self.vapid_public_key = vapid_public_key
        self.subject = subject
        self.browsers: dict[str, FakeBrowser] = {}
        self.received: list[Received] = []
        self.errors: list[str] = []  # requests that a real push service would refuse
        self.release = threading.Event()
        self._lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, retry_after = service._handle(self.path, dict(self.headers.items()), body)
                if status is None:
                    service.release.wait(HANG_LIMIT)
                    return
                self.send_response(status)
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def browser(self, *answers: int | None,
                retry_after: str | Callable[[], str] | None = None) -> FakeBrowser:
        """A new subscription here; it answers `answers` in turn, then 201 for ever."""
        path = f"/wpush/v2/{secrets.token_urlsafe(24)}"
        browser = FakeBrowser(self.origin + path, list(answers), retry_after)
        self.browsers[path] = browser
        return browser

    def received_by(self, browser: FakeBrowser) -> list[Received]:
        return [r for r in self.received if self.origin + r.path == browser.endpoint]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    # -- the checks ---------------------------------------------------------------------

    def _handle(self, path: str, headers: dict[str, str], body: bytes
                ) -> tuple[int | None, str | None]:
        headers = {k.lower(): v for k, v in headers.items()}
        browser = self.browsers.get(path)
        if browser is None:
            return 404, None
        try:
            claims = self._claims(headers.get("authorization", ""))
            if headers.get("content-encoding") != "aes128gcm":
                raise ValueError(f"Content-Encoding {headers.get('content-encoding')!r}")
            if not headers.get("ttl", "").isdigit():
                raise ValueError(f"TTL {headers.get('ttl')!r}")
            if headers.get("urgency") not in {"very-low", "low", "normal", "high"}:
                raise ValueError(f"Urgency {headers.get('urgency')!r}")
            plain = http_ece.decrypt(body, private_key=browser.key, auth_secret=browser.auth,
                                     version="aes128gcm")
            payload = json.loads(plain)
        except Exception as exc:  # a real service answers 4xx; the test reads `errors`
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return 400, None
        with self._lock:
            self.received.append(Received(path, time.monotonic(), headers, claims, payload))
            answer = browser.answers.pop(0) if browser.answers else 201
        if answer != 429 or browser.retry_after is None:
            return answer, None
        value = browser.retry_after
        return answer, value if isinstance(value, str) else value()

    def _claims(self, authorization: str) -> dict[str, Any]:
        match = _AUTH.match(authorization)
        if match is None:
            raise ValueError("Authorization is not `vapid t=..., k=...`")
        token, key = match.groups()
        if key != self.vapid_public_key:
            raise ValueError("k is not the application server key")
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64(key))
        claims: dict[str, Any] = jwt.decode(
            token, public, algorithms=["ES256"], audience=self.origin,
            options={"require": ["aud", "exp", "sub"]},
        )
        if not time.time() < claims["exp"] <= time.time() + 24 * 3600:
            raise ValueError("exp is not within the next 24 h")
        if claims["sub"] != self.subject:
            raise ValueError(f"sub {claims['sub']!r}")
        return claims
