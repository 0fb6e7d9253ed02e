#!/usr/bin/env bash
# Run trimloop's whole test suite: set up .venv (idempotent), check import rules, run pytest.
# Extra arguments go to pytest, e.g. `scripts/test.sh tests/core -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"
if [ -x scripts/test-servers.sh ]; then
    scripts/test-servers.sh
fi
.venv/bin/lint-imports
exec .venv/bin/python -m pytest "$@"
