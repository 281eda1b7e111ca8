#!/usr/bin/env bash
# The full test suite: install from the lock file, lint, type-check, a migration round trip on
# PostgreSQL, then pytest (unit + integration against the real PostgreSQL and Redis on
# 127.0.0.1) with the coverage gate.  Works on a fresh machine; safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.lock
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "== mypy (strict)"
.venv/bin/mypy

echo "== alembic upgrade -> downgrade -> upgrade on PostgreSQL"
PGHOST=${TEST_PG_HOST:-127.0.0.1} PGPORT=${TEST_PG_PORT:-5432} PGUSER=${TEST_PG_USER:-postgres} \
  .venv/bin/python -m tests.migration_roundtrip

echo "== pytest"
rm -f .coverage .coverage.*
.venv/bin/pytest --cov --cov-report=term --cov-fail-under=85 "$@"
