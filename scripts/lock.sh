#!/usr/bin/env bash
# Regenerates requirements/test.lock, the pinned and hashed dependency tree that .ci/run
# installs from (`pip install --require-hashes`): the runtime dependencies of pyproject.toml
# plus its `test` and `dev` extras, for every platform and Python >= 3.11 (--universal), with
# the hashes of every published file of each pinned release.
#
#   bash scripts/lock.sh             # after editing pyproject.toml: adds what is new, keeps other pins
#   bash scripts/lock.sh --upgrade   # the monthly update: every package to its newest allowed release
#   bash scripts/lock.sh --upgrade-package starlette   # one package (e.g. for an advisory)
#
# uv comes with the `dev` extra (.venv after .ci/run), or from PATH (`pip install uv`).
# tests/test_lockfile.py fails, naming the packages, while the lock lags pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x .venv/bin/uv ]; then
  uv=.venv/bin/uv
elif command -v uv >/dev/null 2>&1; then
  uv=uv
else
  echo "scripts/lock.sh: uv not found: bash .ci/run installs it in .venv, or pip install uv" >&2
  exit 1
fi

exec "$uv" pip compile pyproject.toml --extra test --extra dev \
  --universal --generate-hashes --index-url https://pypi.org/simple \
  --custom-compile-command "bash scripts/lock.sh" \
  --output-file requirements/test.lock --quiet "$@"
