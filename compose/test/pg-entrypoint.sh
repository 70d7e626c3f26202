#!/bin/sh
# The official image's contract, reduced: initialise $PGDATA once with POSTGRES_USER, its
# password (POSTGRES_PASSWORD_FILE) and POSTGRES_DB, then run `postgres "$@"` as postgres.
set -eu
[ "${1:-}" = "postgres" ] && shift
mkdir -p "$PGDATA" /run/postgresql
chown -R postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pw=$(cat "${POSTGRES_PASSWORD_FILE:?}")
    printf '%s\n' "$pw" > /tmp/pwfile && chown postgres /tmp/pwfile
    su postgres -c "initdb -D '$PGDATA' -U '${POSTGRES_USER:?}' --pwfile=/tmp/pwfile -A scram-sha-256 >/dev/null"
    rm -f /tmp/pwfile
    su postgres -c "pg_ctl -D '$PGDATA' -o '-c listen_addresses= -p 5432' -w start >/dev/null"
    su postgres -c "psql -q -h /run/postgresql -p 5432 -U '$POSTGRES_USER' -d postgres -c 'CREATE DATABASE \"${POSTGRES_DB:?}\"'"
    su postgres -c "pg_ctl -D '$PGDATA' -m fast -w stop >/dev/null"
    echo "host all all 127.0.0.1/32 scram-sha-256" >> "$PGDATA/pg_hba.conf"
fi
exec su postgres -c "exec postgres -D '$PGDATA' $*"
