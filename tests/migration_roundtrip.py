"""Alembic upgrade → downgrade → upgrade on a scratch PostgreSQL database (run by CI).

Uses the ``summarybot migrate`` command itself, so the console script is exercised too.
Connection comes from the usual ``PGHOST``/``PGPORT``/``PGUSER`` variables.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import psycopg


def main() -> int:
    host = os.environ.get("PGHOST", "127.0.0.1")
    port = os.environ.get("PGPORT", "5432")
    user = os.environ.get("PGUSER", "postgres")
    name = f"sb_roundtrip_{uuid.uuid4().hex[:8]}"
    admin = f"host={host} port={port} user={user} dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {**os.environ, "DATABASE_URL": f"postgresql+psycopg://{user}@{host}:{port}/{name}"}
    exe = [sys.executable, "-m", "producers.cli.main"]
    try:
        for args in (["migrate"], ["migrate", "--downgrade", "--revision", "base"], ["migrate"]):
            result = subprocess.run(
                [*exe, *args], env=env, capture_output=True, text=True, check=False
            )
            print(f"summarybot {' '.join(args)}: {result.stdout.strip() or result.stderr.strip()}")
            if result.returncode != 0:
                print(result.stderr, file=sys.stderr)
                return 1
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
