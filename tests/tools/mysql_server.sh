#!/usr/bin/env bash
# A private MariaDB server for tests and benchmarks: Debian's mariadb-server
# (10.11), initialised with mariadb-install-db in DIR, listening on a
# loopback port and a socket in DIR, never touching the system's server.
#
#   mysql_server.sh start DIR        initialise (first time) and start; wait until ready
#   mysql_server.sh stop DIR         shut down (SIGTERM, then SIGKILL after 60 s)
#   mysql_server.sh kill DIR         SIGKILL, no shutdown (a server that vanishes)
#   mysql_server.sh run DIR CMD...   start, run CMD with the variables below, stop (trap)
#   mysql_server.sh env DIR          print the variables below (shell syntax)
#
# After start, DIR holds data/, mysqld.sock, port, mysqld.pid, error.log and
# client.cnf (a [client] defaults file for root over the socket), and
#   MYSQL_SOCKET, MYSQL_PORT  where the server listens
#   MYSQL_CLIENT_CNF          use as: mysql --defaults-file="$MYSQL_CLIENT_CNF" ...
#   MYSQL_TEST_USER           'coffer', a password account with every privilege,
#                             for 'localhost' (socket) and '127.0.0.1' (TCP)
#   MYSQL_TEST_PASSWORD       its password (from the environment if set, else a
#                             fixed test value; it never appears on a command line)
# Root (the OS user running this script) logs in over the socket without a
# password (unix_socket authentication).
#
# Environment: MYSQL_PORT (default: a free port), MYSQL_SERVER_ARGS (extra
# mariadbd options, e.g. --innodb-buffer-pool-size=1G).
set -u
set -o pipefail

die() { echo "mysql_server.sh: $*" >&2; exit 1; }

[ $# -ge 2 ] || die "usage: mysql_server.sh start|stop|kill|env|run DIR [CMD...]"
CMD=$1
DIR=$2
shift 2
mkdir -p "$DIR" || die "cannot create $DIR"
DIR=$(cd "$DIR" && pwd)
SOCK=$DIR/mysqld.sock
PIDF=$DIR/mysqld.pid
: "${MYSQL_TEST_PASSWORD:=coffer-test-pw-$(printf '%s' "$DIR" | cksum | cut -d' ' -f1)}"

find_bin() {
    local b
    for b in "$@"; do
        if command -v "$b" >/dev/null 2>&1; then command -v "$b"; return 0; fi
        if [ -x "/usr/sbin/$b" ]; then echo "/usr/sbin/$b"; return 0; fi
    done
    return 1
}
MARIADBD=$(find_bin mariadbd mysqld) || die "mariadbd not found (apt-get install mariadb-server)"
INSTALL_DB=$(find_bin mariadb-install-db mysql_install_db) || die "mariadb-install-db not found"
CLIENT=$(find_bin mariadb mysql) || die "mariadb client not found (apt-get install mariadb-client)"
ADMIN=$(find_bin mariadb-admin mysqladmin) || die "mariadb-admin not found"

USER_ARGS=()
[ "$(id -u)" = 0 ] && USER_ARGS=(--user=root)

free_port() {
    python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

print_env() {
    echo "MYSQL_SOCKET=$SOCK"
    echo "MYSQL_PORT=$(cat "$DIR/port" 2>/dev/null)"
    echo "MYSQL_CLIENT_CNF=$DIR/client.cnf"
    echo "MYSQL_TEST_USER=coffer"
    echo "MYSQL_TEST_PASSWORD=$MYSQL_TEST_PASSWORD"
}

server_pid() {
    local p
    p=$(cat "$PIDF" 2>/dev/null) || return 1
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null && echo "$p"
}

start() {
    if server_pid >/dev/null; then
        echo "mysql_server.sh: already running in $DIR" >&2
        return 0
    fi
    if [ ! -d "$DIR/data/mysql" ]; then
        "$INSTALL_DB" --no-defaults --datadir="$DIR/data" "${USER_ARGS[@]}" \
            --auth-root-authentication-method=socket --skip-test-db --skip-name-resolve \
            >"$DIR/install.log" 2>&1 || { cat "$DIR/install.log" >&2; die "mariadb-install-db failed"; }
    fi
    local port=${MYSQL_PORT:-$(free_port)}
    echo "$port" >"$DIR/port"
    rm -f "$SOCK" "$PIDF"
    # shellcheck disable=SC2086
    "$MARIADBD" --no-defaults "${USER_ARGS[@]}" --datadir="$DIR/data" --socket="$SOCK" \
        --port="$port" --bind-address=127.0.0.1 --pid-file="$PIDF" --log-error="$DIR/error.log" \
        --skip-name-resolve --innodb-buffer-pool-size=128M --innodb-log-file-size=64M \
        --max-connections=100 --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
        ${MYSQL_SERVER_ARGS:-} </dev/null >/dev/null 2>&1 &
    local i
    for i in $(seq 1 600); do
        if [ -S "$SOCK" ] && "$ADMIN" --no-defaults -S "$SOCK" -u root ping >/dev/null 2>&1; then
            break
        fi
        if [ "$i" = 600 ]; then
            tail -20 "$DIR/error.log" >&2
            die "server in $DIR did not start in 60 s"
        fi
        sleep 0.1
    done
    printf '[client]\nsocket=%s\nuser=root\ndefault-character-set=utf8mb4\n' "$SOCK" >"$DIR/client.cnf"
    # The password goes to the server on stdin, never on a command line.
    "$CLIENT" --defaults-file="$DIR/client.cnf" <<EOF || die "cannot create the test account"
CREATE USER IF NOT EXISTS 'coffer'@'localhost' IDENTIFIED BY '$MYSQL_TEST_PASSWORD';
CREATE USER IF NOT EXISTS 'coffer'@'127.0.0.1' IDENTIFIED BY '$MYSQL_TEST_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO 'coffer'@'localhost' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO 'coffer'@'127.0.0.1' WITH GRANT OPTION;
EOF
}

stop() {
    local p
    p=$(server_pid) || return 0
    kill -TERM "$p" 2>/dev/null
    local i
    for i in $(seq 1 600); do
        kill -0 "$p" 2>/dev/null || return 0
        sleep 0.1
    done
    echo "mysql_server.sh: server $p did not stop in 60 s; killing it" >&2
    kill -KILL "$p" 2>/dev/null
    return 0
}

kill_now() {
    local p
    p=$(server_pid) || return 0
    kill -KILL "$p" 2>/dev/null
    for _ in $(seq 1 100); do
        kill -0 "$p" 2>/dev/null || return 0
        sleep 0.1
    done
}

case "$CMD" in
start) start && print_env ;;
stop) stop ;;
kill) kill_now ;;
env) print_env ;;
run)
    [ $# -ge 1 ] || die "run: no command"
    trap 'stop' EXIT
    trap 'exit 130' INT TERM
    start >/dev/null || exit 1
    eval "$(print_env | sed 's/^/export /')"
    "$@"
    ;;
*) die "unknown command '$CMD' (start, stop, kill, env, run)" ;;
esac
