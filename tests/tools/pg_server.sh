#!/usr/bin/env bash
# A private PostgreSQL server for tests and benchmarks.
#
#   pg_server.sh start DIR    initdb in DIR/data, start on a free loopback port
#                             (DIR already initialised: start it again, same port)
#   pg_server.sh stop DIR     stop it (fast shutdown, then immediate, then kill)
#   pg_server.sh status DIR   exit 0 when it runs
#
# Debian's PostgreSQL (PG_BIN, default the newest /usr/lib/postgresql/*/bin,
# preferring 15) runs as the unprivileged user `postgres` (tests run as
# root: runuser). Connections over TCP (127.0.0.1) need a password (SCRAM);
# the Unix socket in DIR/sock trusts the local superuser `postgres` for
# administration. `start` writes DIR/pg.env to source:
#
#   PG_BIN PG_PORT PG_HOST=127.0.0.1 PG_SOCK  PG_DATA
#   PG_USER=asterdrive PG_PASSWORD PG_DB=asterdrive   application role (CREATEDB) and its database
#   PG_URL=postgres://asterdrive@127.0.0.1:PORT/asterdrive   (no password in it)
#   PG_ADMIN="psql -X -q -h DIR/sock -p PORT -U postgres"    superuser psql
#
# Callers stop the server themselves (trap ... EXIT); the server also stops
# when DIR disappears (its postmaster.pid is checked by PostgreSQL).
set -euo pipefail

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }

pick_bin() {
    if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return; fi
    if [ -x /usr/lib/postgresql/15/bin/postgres ]; then echo /usr/lib/postgresql/15/bin; return; fi
    local b
    b=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$b" ] || { echo "pg_server: no PostgreSQL server installed (apt-get install postgresql-15)" >&2; exit 1; }
    echo "$b"
}

as_pg() { runuser -u postgres -- "$@"; }

free_port() {
    python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

case "$cmd" in
start)
    if [ -f "$dir/pg.env" ] && [ -f "$dir/data/PG_VERSION" ]; then
        bin=$(sed -n 's/^PG_BIN=//p' "$dir/pg.env")
        port=$(sed -n 's/^PG_PORT=//p' "$dir/pg.env")
        as_pg "$bin/pg_ctl" -D "$dir/data" -o "-p $port" -l "$dir/server.log" -w -t 60 start >/dev/null 2>&1 ||
            { echo "pg_server: cannot restart PostgreSQL:" >&2; tail -20 "$dir/server.log" >&2; exit 1; }
        echo "pg_server: PostgreSQL restarted on 127.0.0.1:$port"
        exit 0
    fi
    bin=$(pick_bin)
    id postgres >/dev/null 2>&1 || { echo "pg_server: no user 'postgres' (install postgresql)" >&2; exit 1; }
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    # The server must reach its directory: parents traversable.
    chmod 755 "$dir"
    data=$dir/data sock=$dir/sock
    mkdir -p "$sock"
    chown postgres:postgres "$dir" "$sock"
    chmod 700 "$sock"
    password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=' | cut -c1-20)
    pwfile=$dir/.pw
    printf '%s\n' "$password" >"$pwfile"
    chown postgres "$pwfile"
    chmod 600 "$pwfile"
    as_pg "$bin/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; exit 1; }
    cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sock'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 128MB
max_connections = 40
log_min_messages = warning
EOF
    started=0
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        if as_pg "$bin/pg_ctl" -D "$data" -o "-p $port" -l "$dir/server.log" -w -t 60 start >/dev/null 2>&1; then
            started=1
            break
        fi
        sleep 0.2
    done
    [ $started = 1 ] || { echo "pg_server: cannot start PostgreSQL:" >&2; tail -20 "$dir/server.log" >&2; exit 1; }
    admin="$bin/psql -X -q -v ON_ERROR_STOP=1 -h $sock -p $port -U postgres"
    as_pg $admin -d postgres -c "CREATE ROLE asterdrive LOGIN CREATEDB PASSWORD '$password'" \
        -c "CREATE DATABASE asterdrive OWNER asterdrive" >/dev/null
    rm -f "$pwfile"
    cat >"$dir/pg.env" <<EOF
PG_BIN=$bin
PG_PORT=$port
PG_HOST=127.0.0.1
PG_SOCK=$sock
PG_DATA=$data
PG_USER=asterdrive
PG_PASSWORD=$password
PG_DB=asterdrive
PG_URL=postgres://asterdrive@127.0.0.1:$port/asterdrive
PG_ADMIN="$admin"
EOF
    chmod 600 "$dir/pg.env"
    echo "pg_server: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data $data)"
    ;;
stop)
    [ -d "$dir/data" ] || exit 0
    bin=$(pick_bin)
    [ -f "$dir/pg.env" ] && bin=$(sed -n 's/^PG_BIN=//p' "$dir/pg.env")
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 20 stop >/dev/null 2>&1 ||
            as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 10 stop >/dev/null 2>&1 || true
        if [ -f "$dir/data/postmaster.pid" ]; then
            pid=$(head -1 "$dir/data/postmaster.pid")
            [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    ;;
status)
    [ -f "$dir/data/postmaster.pid" ] || exit 1
    bin=$(sed -n 's/^PG_BIN=//p' "$dir/pg.env" 2>/dev/null)
    as_pg "${bin:-$(pick_bin)}/pg_ctl" -D "$dir/data" status >/dev/null 2>&1
    ;;
*)
    echo "usage: $0 start|stop|status DIR" >&2
    exit 2
    ;;
esac
