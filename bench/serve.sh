#!/usr/bin/env bash
# Starts Gatehouse from the project's virtualenv whatever the caller's venv is
# (the peer harness expands {venv} to its own /tmp/peers-venv).
#   serve.sh seed --n 40 [--fmt user{i}@example.com] [--password P]   migrate + seed users
#   serve.sh serve --port 8110                                         exec `gatehouse serve`
# Environment: DATABASE_URL, JWT_SECRET, ENCRYPTION_KEY (+ GATEHOUSE_* settings).
# GATEHOUSE_VENV overrides the virtualenv (default: <repo>/.venv).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="${GATEHOUSE_VENV:-$HERE/../.venv}"
cmd="${1:-}"; shift || true
case "$cmd" in
  seed)
    "$VENV/bin/gatehouse" db upgrade >/dev/null
    exec "$VENV/bin/python" "$HERE/seed_users.py" "$@" ;;
  serve)
    exec "$VENV/bin/gatehouse" serve "$@" ;;
  *)
    echo "usage: serve.sh seed|serve ARGS..." >&2; exit 2 ;;
esac
