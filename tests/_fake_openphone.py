"""A local OpenPhone messages API for tests: a real HTTP server on a free loopback port.

It records every request (method, path, headers, JSON body, arrival time) and answers from
a script: each entry is a status (429 carries `Retry-After: retry_after`), or None to hold
the connection without answering until `close()` (a hanging service). When the script is
used up it answers 202 with a message object, as OpenPhone does.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG_LIMIT = 60.0


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


class FakeOpenPhone:
    def __init__(self, answers: list[int | None] | None = None, retry_after: str = "1") -> None:
        self.answers = list(answers or [])
        self.retry_after = retry_after
        self.received: list[Received] = []
        self.hanging = 0
        self._release = threading.Event()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with fake._lock:
                    fake.received.append(Received(
                        "POST", self.path, {k.lower(): v for k, v in self.headers.items()},
                        json.loads(raw or b"{}"), time.monotonic()))
                    answer = fake.answers.pop(0) if fake.answers else 202
                if answer is None:
                    fake.hanging += 1
                    fake._release.wait(HANG_LIMIT)
                    return
                body = b'{"data": {"id": "AC123", "status": "queued"}}'
                self.send_response(answer)
                if answer == 429:
                    self.send_header("Retry-After", fake.retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeOpenPhone:
        self._thread.start()
        return self

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def texts_to(self, phone: str) -> list[str]:
        return [r.body["content"] for r in self.received if r.body.get("to") == [phone]]

    def code_sent_to(self, phone: str) -> str:
        """The 6-digit code of the newest text to `phone`."""
        found = re.search(r"\b(\d{6})\b", self.texts_to(phone)[-1])
        assert found, "no code in the text"
        return found.group(1)
