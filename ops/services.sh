#!/usr/bin/env bash
# Starts PostgreSQL and Redis on loopback unless they already answer, then makes sure
# the databases (and PostGIS in them) exist. Idempotent.
#   As root: the Debian cluster 15/main runs as the postgres user.
#   As a normal user: a private cluster and Redis under .state/ (Debian packages must be installed).
# Usage: ops/services.sh DBNAME [DBNAME...]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
state=$root/.state
PGPORT=${PGPORT:-5432}
REDIS_PORT=${REDIS_PORT:-6379}
PG_BIN=/usr/lib/postgresql/15/bin
DB_USER=guardian
DB_PASSWORD=${GUARDIAN_DB_PASSWORD:-guardian}
mkdir -p "$state"

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2; shift 2
  for _ in $(seq $((seconds * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "services: $what did not come up in ${seconds}s" >&2; return 1
}

# --- PostgreSQL ------------------------------------------------------------
as_superuser() {  # runs psql as a PostgreSQL superuser, quiet unless something is wrong
  export PGOPTIONS="-c client_min_messages=warning"
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PGPORT" "$@"
  else
    psql -X -q -v ON_ERROR_STOP=1 -h "$state/pg-socket" -p "$PGPORT" -d postgres "$@"
  fi
}

if ! pg_isready -q -h 127.0.0.1 -p "$PGPORT"; then
  if [[ $(id -u) -eq 0 ]]; then
    if ! pg_lsclusters -h | awk '$1=="15" && $2=="main"' | grep -q .; then
      pg_createcluster 15 main -p "$PGPORT" >/dev/null
    fi
    conf=/etc/postgresql/15/main/conf.d/guardian.conf
    [[ -f $conf ]] || cp ops/postgresql.conf "$conf"
    pg_ctlcluster 15 main start
  else
    if [[ ! -f $state/pg/PG_VERSION ]]; then
      "$PG_BIN/initdb" -D "$state/pg" -A trust -U "$(id -un)" >/dev/null
      cat ops/postgresql.conf >> "$state/pg/postgresql.conf"
    fi
    mkdir -p "$state/pg-socket"
    "$PG_BIN/pg_ctl" -D "$state/pg" -l "$state/pg.log" -w \
      -o "-p $PGPORT -k $state/pg-socket -c listen_addresses=127.0.0.1" start >/dev/null
  fi
  wait_for 30 PostgreSQL pg_isready -h 127.0.0.1 -p "$PGPORT"
fi

db_ready() {  # the database exists, our role reaches it, and PostGIS and pg_partman are in it
  PGPASSWORD=$DB_PASSWORD psql -X -q -h 127.0.0.1 -p "$PGPORT" -U "$DB_USER" -d "$1" -tAc \
    "SELECT count(*) FROM pg_extension WHERE extname IN ('postgis', 'pg_partman')" 2>/dev/null | grep -qx 2
}
missing_dbs=()
for db in "$@"; do db_ready "$db" || missing_dbs+=("$db"); done
if ((${#missing_dbs[@]})) && [[ $(id -u) -ne 0 && ! -f $state/pg/PG_VERSION ]]; then
  echo "services: PostgreSQL on port $PGPORT is not ours and lacks: ${missing_dbs[*]}" >&2
  echo "services: run 'make services' once as root, or stop that server to let this user run its own" >&2
  exit 1
fi
((${#missing_dbs[@]})) && as_superuser -d postgres <<SQL
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', '$DB_USER', '$DB_PASSWORD')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER')\gexec
SQL
for db in "${missing_dbs[@]}"; do
  as_superuser -d postgres <<SQL
SELECT format('CREATE DATABASE %I OWNER %I', '$db', '$DB_USER')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$db')\gexec
SQL
  # The app role is no superuser: the extensions (PostGIS; pg_partman in schema partman) are made here.
  as_superuser -d "$db" -v role="$DB_USER" < ops/extensions.sql
done

# --- Redis -----------------------------------------------------------------
if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  mkdir -p "$state/redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" \
    --dir "$state/redis" --logfile "$state/redis.log" --save "" --appendonly no >/dev/null
  wait_for 10 Redis redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping
fi
echo "services: PostgreSQL on 127.0.0.1:$PGPORT, Redis on 127.0.0.1:$REDIS_PORT, databases: $*"
