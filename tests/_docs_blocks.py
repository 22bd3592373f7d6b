"""What the docs tests share: fenced blocks and error tables of a page, and a `serve --dev` to run
a page's shell examples against, exactly as a reader would (fresh folder, no GATEHOUSE_ env)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from gatehouse import errors
from tests.conftest import free_port

DOCS = Path(__file__).resolve().parents[1] / "docs"
BIN = Path(sys.executable).parent
#: The address the docs' examples use; tests swap in their server's.
DOC_URL = "http://127.0.0.1:8000"


def fenced_blocks(page: Path, lang: str) -> list[str]:
    """The bodies of the page's ```<lang> blocks, in order."""
    return re.findall(rf"^```{re.escape(lang)}\n(.*?)^```", page.read_text(), flags=re.S | re.M)


def section(page: Path, heading: str) -> str:
    """The text under `## <heading>` up to the next `## ` heading."""
    return page.read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def table_rows(text: str) -> dict[str, list[str]]:
    """Rows of the Markdown tables in `text` whose first cell lists `code`s, by code: the other
    cells. A cell such as `` `rate_limited`, `login_throttled` `` gives both codes the row."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = re.match(r"^\| (`[a-z0-9_<>]+`(?:, `[a-z0-9_<>]+`)*) \|(.*)\|$", line)
        if match:
            cells = [cell.strip() for cell in match.group(2).split(" | ")]
            for code in re.findall(r"`([a-z0-9_<>]+)`", match.group(1)):
                rows[code] = cells
    return rows


def server_error_classes() -> dict[str, list[type[errors.GatehouseError]]]:
    """Every `code` a domain error can carry, with the classes that carry it."""
    classes: dict[str, list[type[errors.GatehouseError]]] = {}
    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, errors.GatehouseError):
            classes.setdefault(value.code, []).append(value)
    return classes


def docs_env() -> dict[str, str]:
    """The environment of a reader's shell: no Gatehouse settings, `gatehouse` on the PATH."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GATEHOUSE_", "JWT_", "ENCRYPTION_", "DATABASE_", "REDIS_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    return env


@contextmanager
def dev_server(workdir: Path, env: dict[str, str]) -> Iterator[str]:
    """`gatehouse serve --dev` in `workdir` (as the README starts it); yields its base URL."""
    port = free_port()
    log = workdir / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(BIN / "gatehouse"), "serve", "--dev", "--port", str(port)],
            cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "serve --dev did not become ready"
            time.sleep(0.2)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def run_blocks(blocks: list[str], base: str, cwd: Path, env: dict[str, str]
               ) -> subprocess.CompletedProcess[str]:
    """Run shell blocks as one `bash -euo pipefail` script against the server at `base`."""
    script = "\n".join(blocks).replace(DOC_URL, base)
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
