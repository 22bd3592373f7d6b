#!/usr/bin/env bash
# Audits requirements/test.lock, every pinned package, for published vulnerabilities with
# pip-audit (PyPI's advisory data by default; `-s osv` for the OSV database). Reads the pins
# and their hashes as they are (--disable-pip: nothing is installed or resolved), so it audits
# exactly what .ci/run installs.
#
# Exit status: 0 clean; 1 a known vulnerability (pip-audit prints the package, the advisory
# and the fixed release) or a package it could not look up (--strict: an audit that checked
# nothing never passes). Needs PyPI's JSON API (https://pypi.org/pypi/NAME/VERSION/json).
#
# An advisory with no fixed release yet, or that cannot reach Gatehouse, goes into
# requirements/audit-ignore.txt (one ID per line, with the reason and a date to look again).
# Extra arguments go to pip-audit (e.g. `--format json`, `-s osv`).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x .venv/bin/pip-audit ]; then
  pip_audit=.venv/bin/pip-audit
elif command -v pip-audit >/dev/null 2>&1; then
  pip_audit=pip-audit
else
  echo "scripts/audit.sh: pip-audit not found: bash .ci/run installs it in .venv, or pip install pip-audit" >&2
  exit 1
fi

ignored=()
if [ -f requirements/audit-ignore.txt ]; then
  while read -r id _; do
    case "$id" in ''|'#'*) ;; *) ignored+=(--ignore-vuln "$id") ;; esac
  done < requirements/audit-ignore.txt
fi

exec "$pip_audit" --requirement requirements/test.lock --require-hashes --disable-pip --strict \
  --progress-spinner off ${ignored[@]+"${ignored[@]}"} "$@"
