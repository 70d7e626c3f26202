#!/bin/sh
# The official image's contract, reduced: initialise $PGDATA once with POSTGRES_USER, its
# password (POSTGRES_PASSWORD_FILE) and POSTGRES_DB, then run `postgres "$@"` as postgres.
set -eu
[ "${1:-}" = "postgres" ] && shift
mkdir -p "$PGDATA" /run/postgresql
chown -R postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
if [ ! -e "$PGDATA/.priorwatch-initialised" ]; then  # also redo an initialisation cut short
    find "$PGDATA" -mindepth 1 -delete
    cp "${POSTGRES_PASSWORD_FILE:?}" /tmp/pwfile && chown postgres /tmp/pwfile
    # Like the official image: trust on the local socket, passwords over TCP.
    su postgres -c "initdb -D '$PGDATA' -U '${POSTGRES_USER:?}' --pwfile=/tmp/pwfile --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null"
    rm -f /tmp/pwfile
    su postgres -c "pg_ctl -D '$PGDATA' -o '-c listen_addresses= -p 5432' -w start >/dev/null"
    su postgres -c "psql -q -h /run/postgresql -p 5432 -U '$POSTGRES_USER' -d postgres -c 'CREATE DATABASE \"${POSTGRES_DB:?}\"'"
    su postgres -c "pg_ctl -D '$PGDATA' -m fast -w stop >/dev/null"
    touch "$PGDATA/.priorwatch-initialised"
fi
exec su postgres -c "exec postgres -D '$PGDATA' $*"
