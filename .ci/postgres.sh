#!/usr/bin/env bash
# Start (idempotently) a throw-away PostgreSQL 15 with pg_sphere on 127.0.0.1 for the tests,
# installing it and fitsverify from Debian if missing. Prints the SQLAlchemy URL on stdout;
# everything else goes to stderr.  Env: OBSFLOW_PG_PORT (54329), OBSFLOW_PG_DIR (/tmp/obsflow-pg).
set -euo pipefail
PORT="${OBSFLOW_PG_PORT:-54329}"
DIR="${OBSFLOW_PG_DIR:-/tmp/obsflow-pg}"
BIN=/usr/lib/postgresql/15/bin

need=()
command -v fitsverify >/dev/null 2>&1 || need+=(fitsverify)
[ -x "$BIN/pg_ctl" ] || need+=(postgresql-15)
[ -f /usr/share/postgresql/15/extension/pg_sphere.control ] || need+=(postgresql-15-pgsphere)
. "$(dirname "$0")/apt.sh"
apt_install_missing postgres.sh ${need[@]+"${need[@]}"}

if [ "$(id -u)" = 0 ]; then
  AS=(runuser -u postgres --)
  mkdir -p "$DIR"
  chown postgres:postgres "$DIR"
else
  AS=()
  mkdir -p "$DIR"
fi

if [ ! -f "$DIR/data/PG_VERSION" ]; then
  "${AS[@]}" "$BIN/initdb" -D "$DIR/data" -A trust -U postgres --no-sync -E UTF8 >&2
fi
if ! "${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
  "${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 start \
    -o "-h 127.0.0.1 -p $PORT -k $DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" >&2
fi

psql_admin() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres "$@"; }
if [ -z "$(psql_admin -d postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'obsflow'")" ]; then
  psql_admin -d postgres -c "CREATE ROLE obsflow LOGIN CREATEDB" >&2
fi
if [ -z "$(psql_admin -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'obsflow'")" ]; then
  psql_admin -d postgres -c "CREATE DATABASE obsflow OWNER obsflow" >&2
fi
# pg_sphere in template1 too, so databases made by tests have it
psql_admin -d template1 -c "CREATE EXTENSION IF NOT EXISTS pg_sphere" >&2
psql_admin -d obsflow -c "CREATE EXTENSION IF NOT EXISTS pg_sphere" >&2
echo "postgresql+psycopg://obsflow@127.0.0.1:$PORT/obsflow"
