#!/usr/bin/env bash
# Run trimloop's whole test suite: set up .venv (idempotent), check import rules, run pytest twice:
#   1. every test, on SQLite;
#   2. the tests that use a database (marker `db`, set by tests/conftest.py on any test that asks
#      for a database fixture), on PostgreSQL at 127.0.0.1:5432 (TRIMLOOP_TEST_DB=postgresql;
#      another server: TRIMLOOP_TEST_PG=postgresql+psycopg://user@host:port/postgres).
# Tests that touch no database would only repeat themselves in the second pass, so it skips them.
# TRIMLOOP_TEST_BACKENDS picks the passes (default "sqlite postgresql"; "sqlite" on a laptop
# without PostgreSQL). Extra arguments go to pytest in both passes, e.g. `scripts/test.sh tests/core -x`.
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

status=0
for backend in ${TRIMLOOP_TEST_BACKENDS:-sqlite postgresql}; do
    case "$backend" in
        sqlite) select=() ;;
        postgresql) select=(-m db) ;;
        *) echo "TRIMLOOP_TEST_BACKENDS: unknown backend '$backend' (use sqlite and/or postgresql)" >&2; exit 2 ;;
    esac
    echo "== tests on $backend${select:+ (${select[*]})} =="
    set +e
    TRIMLOOP_TEST_DB="$backend" .venv/bin/python -m pytest "${select[@]}" "$@"
    code=$?
    set -e
    if [ "$code" -eq 5 ] && [ "$backend" = postgresql ]; then
        echo "(no database tests among the selected ones)"
        code=0
    fi
    if [ "$status" -eq 0 ]; then
        status=$code
    fi
done
exit "$status"
