"""docs/api.md works as written: its shell examples run against `serve --dev`, its error table is complete."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gatehouse import errors
from tests.conftest import free_port

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
BIN = Path(sys.executable).parent


def _shell_blocks() -> str:
    return "\n".join(re.findall(r"```sh\n(.*?)```", DOC.read_text(), flags=re.S))


def _error_codes() -> set[str]:
    codes = set()
    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, errors.GatehouseError):
            codes.add(value.code)
    return codes


def test_error_table_lists_every_code_the_server_answers() -> None:
    """Every `code` a domain error can carry has a row in docs/api.md's error table."""
    table = DOC.read_text().split("## Errors", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| (`[a-z_]+`(?:, `[a-z_]+`)*) \|", table, flags=re.M))
    documented_codes = {code for cell in documented for code in re.findall(r"`([a-z_]+)`", cell)}
    assert _error_codes() - documented_codes == set()


@pytest.mark.slow
def test_shell_examples_run_as_written(tmp_path: Path) -> None:
    """The README's `serve --dev`, then every `sh` block of docs/api.md in order, from the same folder."""
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GATEHOUSE_", "JWT_", "ENCRYPTION_", "DATABASE_", "REDIS_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(BIN / "gatehouse"), "serve", "--dev", "--port", str(port)],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
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
        script = _shell_blocks().replace("http://127.0.0.1:8000", base)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
            capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert '"email":"bob@example.com"' in done.stdout
        assert done.stdout.rstrip().splitlines()[-1].startswith("{\"status\":\"ok\"")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
