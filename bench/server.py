"""A real `gatehouse serve` for the benchmark: own database, seeded users, pinned CPU,
stopped by PID.

SQLite: a fresh file in the data directory. PostgreSQL: a fresh database
`gatehouse_bench_<pid>` on 127.0.0.1:5432 (created here, dropped in `stop`).
Access logs go to a file in the data directory (the production shape) unless
`log_file="devnull"`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
STARTED: list[int] = []  # PIDs of servers started by this process (for emergency cleanup)
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def proc_children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def proc_tree(pid: int) -> list[int]:
    seen: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.append(p)
            todo += proc_children(p)
    return seen


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def status_kb(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total


def cpu_split(pid: int) -> tuple[int, int, int]:
    """(user ticks, system ticks) of a process (all threads, exited ones included), and the
    ticks of its main thread (the event loop) alone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/task/{pid}/stat") as f:
            main = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]), int(fields[12]), int(main[11]) + int(main[12])
    except OSError:
        return 0, 0, 0


def psql(sql: str) -> None:
    subprocess.run(
        ["psql", PG_ADMIN, "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )


class GatehouseServer:
    def __init__(
        self,
        *,
        db: str,
        port: int,
        cpu: str,
        datadir: Path,
        n_users: int,
        password: str,
        user_fmt: str,
        log_file: str = "file",
        redis_url: str | None = None,
        venv: Path = REPO / ".venv",
        extra_env: dict[str, str] | None = None,
        workers: int = 1,
    ) -> None:
        self.db, self.port, self.cpu, self.datadir = db, port, cpu, datadir
        self.n_users, self.password, self.user_fmt = n_users, password, user_fmt
        self.log_mode, self.redis_url, self.venv = log_file, redis_url, venv
        self.extra_env = extra_env or {}
        self.workers = workers  # > 1 needs redis_url (serve refuses otherwise)
        self.proc: subprocess.Popen[bytes] | None = None
        self.pg_db: str | None = None
        self.access_log = datadir / "access.log"
        self._out: Any = None

    # -- lifecycle --------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(
                ("GATEHOUSE_", "DATABASE_URL", "REDIS_URL", "JWT_", "ENCRYPTION_KEY")
            )
        }
        env.pop("WEB_CONCURRENCY", None)
        env.update(
            {
                # throw-away secrets for a throw-away database
                "JWT_SECRET": self._jwt_secret,
                "ENCRYPTION_KEY": self._enc_key,
                "DATABASE_URL": self.database_url,
                "GATEHOUSE_RATE_LIMITS": "off",
                "GATEHOUSE_LOG_FILE": "/dev/null"
                if self.log_mode == "devnull"
                else str(self.access_log),
                "GATEHOUSE_VENV": str(self.venv),
            }
        )
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        env.update(self.extra_env)
        return env

    def prepare(self) -> float:
        """Fresh data directory + database, migrated and seeded; returns seconds taken."""
        t0 = time.monotonic()
        if self.datadir.exists():
            shutil.rmtree(self.datadir)
        self.datadir.mkdir(parents=True)
        self._jwt_secret = secrets.token_urlsafe(48)
        self._enc_key = secrets.token_urlsafe(24)[:32]
        if self.db == "sqlite":
            self.database_url = f"sqlite:///{self.datadir}/gatehouse.db"
        else:
            self.pg_db = f"gatehouse_bench_{os.getpid()}"
            psql(f'DROP DATABASE IF EXISTS "{self.pg_db}"')
            psql(f'CREATE DATABASE "{self.pg_db}"')
            self.database_url = f"postgresql://postgres@127.0.0.1:5432/{self.pg_db}"
        r = subprocess.run(
            [
                str(BENCH_DIR / "serve.sh"),
                "seed",
                "--n",
                str(self.n_users),
                "--fmt",
                self.user_fmt,
                "--password",
                self.password,
            ],
            cwd=self.datadir,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        if r.returncode != 0:
            raise RuntimeError(f"seeding failed: {r.stdout[-1000:]} {r.stderr[-2000:]}")
        return time.monotonic() - t0

    def start(self, timeout: float = 60.0) -> None:
        if port_in_use(self.port):
            raise RuntimeError(f"port {self.port} is already in use")
        self._out = open(self.datadir / "server.out", "wb")  # noqa: SIM115 (closed in stop)
        cmd = [
            "taskset",
            "-c",
            self.cpu,
            str(self.venv / "bin" / "gatehouse"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        self.command = cmd
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.datadir,
            env=self.env(),
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        STARTED.append(self.proc.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited rc={self.proc.returncode}: {self.output()[-1500:]}"
                )
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/healthz", timeout=2
                ) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not healthy within {timeout} s: {self.output()[-1500:]}")

    def output(self) -> str:
        try:
            return (self.datadir / "server.out").read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        return proc_tree(self.proc.pid) if self.proc else []

    def cpu_ticks(self) -> int:
        return cpu_ticks(self.pids())

    def db_pids(self) -> list[int]:
        """PostgreSQL backends serving our database (their CPU is the server's too, on any core)."""
        if not self.pg_db:
            return []
        r = subprocess.run(
            [
                "psql",
                PG_ADMIN,
                "-qAtc",
                f"select pid from pg_stat_activity where datname = '{self.pg_db}'",
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return [int(x) for x in r.stdout.split() if x.isdigit()]

    def memory(self) -> dict[str, Any]:
        pid = self.pid
        out: dict[str, Any] = {
            "vm_hwm_kb": status_kb(pid, "VmHWM"),
            "vm_rss_kb": status_kb(pid, "VmRSS"),
            "threads": status_kb(pid, "Threads"),
        }
        # With --workers N, `pid` is uvicorn's supervisor: the workers are its child processes.
        workers = [p for p in proc_children(pid) if b"resource_tracker" not in _cmdline(p)]
        if len(workers) > 1:
            out["workers_vm_hwm_kb"] = [status_kb(p, "VmHWM") for p in workers]
            out["workers_vm_rss_kb"] = [status_kb(p, "VmRSS") for p in workers]
        return out

    def stop(self) -> None:
        if self.proc is not None:
            pid = self.proc.pid
            kids = proc_tree(pid)[1:]
            if self.proc.poll() is None:
                os.kill(pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.kill(pid, signal.SIGKILL)
                    self.proc.wait(timeout=10)
            for k in kids:  # leftovers, one by one by PID
                with contextlib.suppress(ProcessLookupError):
                    os.kill(k, signal.SIGKILL)
            if pid in STARTED:
                STARTED.remove(pid)
            self.proc = None
        if self._out is not None:
            self._out.close()
            self._out = None
        if self.pg_db:
            with contextlib.suppress(subprocess.CalledProcessError):
                psql(f'DROP DATABASE IF EXISTS "{self.pg_db}" WITH (FORCE)')
            self.pg_db = None


def kill_started() -> None:
    """Emergency cleanup (signal/atexit): SIGKILL every server PID this process started."""
    for pid in list(STARTED):
        for k in proc_tree(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(k, signal.SIGKILL)
        STARTED.remove(pid)
