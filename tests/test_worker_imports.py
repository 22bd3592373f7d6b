"""What a serving worker keeps in memory: the libraries only some commands need stay out.

bench/RESULTS.md (memory per worker): Alembic with Mako and Pygments (~8 MB) is for running
migrations, Jinja2 (~3 MB) for the first email, phonenumbers (~1 MB) for the first phone
number, redis-py (~2.3 MB) for REDIS_URL, SQLAlchemy's PostgreSQL dialect (~1.2 MB) for a
PostgreSQL DATABASE_URL, httpx, aiosmtplib and py-vapid (~2 MB) for the first alert, email,
text or push, cryptography with PyJWT (~8 MB) for EdDSA keys and the first encrypted value
(a TOTP secret), bcrypt for the first imported bcrypt hash, and the other CLI commands' modules (~3 MB) for those
commands. A worker that has started, built the app and answered /readyz must not have
imported them; an import added at module level would cost every worker of every
deployment that memory again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE = r"""
import asyncio, json, sys
from gatehouse.cli.main import serve_app
serve_app()  # what `gatehouse serve` builds before the app
import uvicorn
from gatehouse.app import create_app
from gatehouse.settings import load_settings
LAZY = ("alembic", "mako", "jinja2", "phonenumbers", "redis", "sqlalchemy.dialects.postgresql",
        "httpx", "aiosmtplib", "py_vapid", "cryptography", "jwt", "bcrypt",
        "gatehouse.cli.doctor", "gatehouse.cli.users", "gatehouse.cli.ops", "gatehouse.cli.db")

async def main():
    app = create_app(load_settings())
    async with app.router.lifespan_context(app):
        loaded = sorted(m for m in LAZY if m in sys.modules)  # before this probe's own httpx
        import httpx
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://t") as client:
            ready = await client.get("/readyz")
    return ready.status_code, loaded

status, loaded = asyncio.run(main())
print(json.dumps({"readyz": status, "loaded": loaded}))
"""

def test_a_ready_worker_has_not_imported_what_only_some_deployments_use(tmp_path: Path) -> None:
    env = {"JWT_SECRET": "Zx9-" * 12, "ENCRYPTION_KEY": "abcdefghijklmnopqrstuvwxyz012345",
           "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'g.db'}", "PATH": "/usr/bin:/bin"}
    # a migrated database, so /readyz has the version table to read
    subprocess.run([str(Path(sys.executable).with_name("gatehouse")), "db", "upgrade"],
                   env=env, cwd=tmp_path, check=True, capture_output=True)
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"readyz": 200, "loaded": []}
