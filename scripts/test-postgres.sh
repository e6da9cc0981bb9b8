#!/usr/bin/env bash
# The deployment end-to-end test again, with the Prefect server on a real PostgreSQL database.
# Installs PostgreSQL from the Debian packages when missing, runs a throwaway cluster on a free
# 127.0.0.1 port in a temporary folder, and stops it by PID afterwards.
#   scripts/test-postgres.sh [PYTEST_ARGS...]  the PostgreSQL deployment test alone
#   scripts/test-postgres.sh -- COMMAND...     COMMAND with IMDB_TEST_PREFECT_DB set (what
#                                              `make test` does under CI: the whole suite, so
#                                              the PostgreSQL case runs beside the others)
set -euo pipefail
cd "$(dirname "$0")/.."

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
PGBIN=$(pg_bin)
if [ -z "$PGBIN" ]; then
  echo "installing PostgreSQL from the Debian packages" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  PGBIN=$(pg_bin)
fi

tmp=$(mktemp -d)
# initdb refuses to run as root: run the cluster as the postgres user in that case.
as_db_user=()
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$tmp"
  as_db_user=(runuser -u postgres --)
fi
port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pid=""
stop() {
  if [ -n "$pid" ]; then kill -INT "$pid" 2>/dev/null || true; while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done; fi
  rm -rf "$tmp"
}
trap stop EXIT

"${as_db_user[@]}" "$PGBIN/initdb" -D "$tmp/data" -A trust -U prefect >/dev/null
"${as_db_user[@]}" "$PGBIN/pg_ctl" -D "$tmp/data" -l "$tmp/postgres.log" -w \
  -o "-h 127.0.0.1 -p $port -k $tmp" start >/dev/null
pid=$(head -n 1 "$tmp/data/postmaster.pid")
"$PGBIN/createdb" -h 127.0.0.1 -p "$port" -U prefect prefect
echo "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (pid $pid)" >&2

export IMDB_TEST_PREFECT_DB="postgresql+asyncpg://prefect@127.0.0.1:$port/prefect"
if [ "${1:-}" = "--" ]; then
  shift
  "$@"
else
  .venv/bin/python -m pytest -p no:cacheprovider tests/flows/test_deployments_postgres.py "$@"
fi
