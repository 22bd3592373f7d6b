"""Tiny asyncio HTTP/1.1 client for the load generator: one keep-alive connection per virtual user.

Same idea as ../shared/peers/harness/rawhttp.py (why not aiohttp/httpx: per-request overhead
on the one load-generator core, and late closes), trimmed to what Gatehouse answers:
Content-Length bodies (uvicorn never chunks our JSON), keep-alive, 1xx skipped. Every
request has a timeout; a dead keep-alive connection is retried once if nothing was received.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any


class _Proto(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.fut: asyncio.Future[tuple[int, dict[str, list[str]], bytes]] | None = None
        self.hdr: tuple[str, int, dict[str, list[str]]] | None = None
        self.alive = True
        self.got_bytes = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        self.buf += data
        try:
            self._parse()
        except Exception as exc:  # malformed response
            self.alive = False
            assert self.transport is not None
            self.transport.close()
            if self.fut is not None and not self.fut.done():
                self.fut.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        if self.fut is not None and not self.fut.done():
            self.fut.set_exception(
                ConnectionError(f"connection closed ({exc!r}); got_bytes={self.got_bytes}")
            )

    def _parse(self) -> None:
        if self.fut is None or self.fut.done():
            return
        if self.hdr is None:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return
            lines = bytes(self.buf[:i]).decode("latin-1").split("\r\n")
            del self.buf[: i + 4]
            ver, status_s = lines[0].split(" ", 2)[:2]
            hdrs: dict[str, list[str]] = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                hdrs.setdefault(k.strip().lower(), []).append(v.strip())
            status = int(status_s)
            if 100 <= status < 200:
                self._parse()
                return
            self.hdr = (ver, status, hdrs)
        ver, status, hdrs = self.hdr
        if "content-length" in hdrs:
            n = int(hdrs["content-length"][0])
            if len(self.buf) < n:
                return
            body = bytes(self.buf[:n])
            del self.buf[:n]
        elif status in (204, 304):
            body = b""
        else:
            raise ValueError(f"unsupported response framing: {hdrs}")
        conn = ",".join(hdrs.get("connection", [])).lower()
        if "close" in conn or ver != "HTTP/1.1":
            self.alive = False
            assert self.transport is not None
            self.transport.close()
        self.hdr = None
        self.fut.set_result((status, hdrs, body))


class Response:
    __slots__ = ("body", "dt", "headers", "status")

    def __init__(self, status: int, headers: dict[str, list[str]], body: bytes, dt: float) -> None:
        self.status, self.headers, self.body, self.dt = status, headers, body, dt

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def kind(self) -> str:
        """`200`, `401 refresh_reused`, `-1 ConnectionError`...: a label for error tables."""
        if self.status < 0:
            return f"{self.status} {self.body.decode(errors='replace')[:60]}"
        data = self.json()
        code = data.get("code") if isinstance(data, dict) else None
        return f"{self.status} {code}" if code else str(self.status)


class Conn:
    """One HTTP/1.1 connection to 127.0.0.1:port (reconnects when needed); one request at a time."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.proto: _Proto | None = None

    async def connect(self) -> None:
        if self.proto is not None and self.proto.alive:
            return
        loop = asyncio.get_running_loop()
        _, self.proto = await asyncio.wait_for(
            loop.create_connection(_Proto, self.host, self.port), self.timeout
        )

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: Any = None
    ) -> Response:
        """Never raises for network trouble: status -1 with the error text as body instead."""
        raw = b"" if body is None else json.dumps(body).encode()
        h = [
            f"{method} {path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "User-Agent: gatehouse-bench",
            "Accept: application/json",
        ]
        for k, v in (headers or {}).items():
            h.append(f"{k}: {v}")
        if body is not None:
            h.append("Content-Type: application/json")
        if body is not None or method not in ("GET", "HEAD"):
            h.append(f"Content-Length: {len(raw)}")
        payload = ("\r\n".join(h) + "\r\n\r\n").encode("latin-1") + raw
        t0 = time.perf_counter()
        try:
            for attempt in (0, 1):
                reused = self.proto is not None and self.proto.alive
                if not reused:
                    await self.connect()
                p = self.proto
                assert p is not None and p.transport is not None
                p.fut = asyncio.get_running_loop().create_future()
                p.got_bytes, p.hdr = False, None
                p.transport.write(payload)
                try:
                    status, hdrs, rbody = await asyncio.wait_for(p.fut, self.timeout)
                    return Response(status, hdrs, rbody, time.perf_counter() - t0)
                except ConnectionError:
                    if attempt == 0 and reused and not p.got_bytes:
                        self.proto = None
                        continue
                    raise
                except TimeoutError:
                    p.alive = False
                    p.transport.close()
                    raise
        except (TimeoutError, OSError, ConnectionError, ValueError) as exc:
            return Response(
                -1, {}, f"{type(exc).__name__}: {exc}"[:200].encode(), time.perf_counter() - t0
            )
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.proto is not None and self.proto.transport is not None:
            self.proto.transport.close()
        self.proto = None
