# Shared by the mysql e2e scripts (source after tests/e2e/lib.sh).
#
#   mysql_start            a private MariaDB in $T/mysql (stopped on exit),
#                          MYSQL_* variables from tests/tools/mysql_server.sh
#   my [DB] [args]         the stock client as root over the socket
#   val DB QUERY           one value (or lines of tab-separated values)
#   url_of DB              mysql://coffer@127.0.0.1:PORT/DB (password in MYSQL_PWD)
#   load_asterdrive DB N   AsterDrive-shaped schema + seed(N)
#   table_hash DB TABLE    sha256 of every row, every column (HEX() of strings
#                          and binaries, exact floats), ordered by primary key
#   table_hashes DB        "table hash" for every base table
#   db_diff A B            names of tables whose content differs (or is missing)
#   mcf ARGS...            coffer with the build's plugin directory

MY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MYSQL_SQL=$MY_DIR/asterdrive_mysql.sql
MYSQL_SERVER=$COFFER_SRC/tests/tools/mysql_server.sh
MYSQL_POLICY=$COFFER_SRC/policies/asterdrive-mysql-local.yaml

mcf() { "$COFFER" --plugin-dir "$COFFER_PLUGIN_BUILD_DIR" --no-progress "$@"; }

mysql_start() {
    MYT=$T/mysql
    trap '_rc=$?; "$MYSQL_SERVER" stop "$MYT" >/dev/null 2>&1; (exit $_rc); _cleanup' EXIT
    local envs
    envs=$("$MYSQL_SERVER" start "$MYT") || die "cannot start MariaDB: $(tail -5 "$MYT/error.log" 2>/dev/null)"
    eval "$(printf '%s\n' "$envs" | sed 's/^/export /')"
    export MYSQL_PWD=$MYSQL_TEST_PASSWORD
    note "MariaDB $(val mysql 'SELECT VERSION()') on 127.0.0.1:$MYSQL_PORT and $MYSQL_SOCKET"
}

my() { mysql --defaults-file="$MYSQL_CLIENT_CNF" "$@"; }
val() { my -N -B -e "$2" "$1"; }
url_of() { echo "mysql://coffer@127.0.0.1:$MYSQL_PORT/$1"; }

load_asterdrive() {
    my -e "CREATE DATABASE IF NOT EXISTS coffer_ctl; CREATE TABLE IF NOT EXISTS coffer_ctl.writer_ctl (id INT PRIMARY KEY, stop INT NOT NULL); INSERT IGNORE INTO coffer_ctl.writer_ctl VALUES (1, 0); CREATE DATABASE \`$1\`" ||
        die "cannot create database $1"
    my "$1" <"$MYSQL_SQL" || die "cannot load $MYSQL_SQL into $1"
    my "$1" -e "CALL seed($2)" || die "cannot seed $1"
}

# The SELECT list and ORDER BY that show every byte of every column.
_hash_query() {
    local db=$1 t=$2
    local dbl tl cols order
    dbl=$(printf '%s' "$db" | sed "s/\\\\/\\\\\\\\/g; s/'/''/g")
    tl=$(printf '%s' "$t" | sed "s/\\\\/\\\\\\\\/g; s/'/''/g")
    cols=$(val "$db" "SELECT GROUP_CONCAT(CASE
        WHEN DATA_TYPE IN ('float', 'double') THEN CONCAT('\`', REPLACE(COLUMN_NAME, '\`', '\`\`'), '\` + 0e0')
        WHEN DATA_TYPE IN ('tinyint', 'smallint', 'mediumint', 'int', 'bigint', 'decimal', 'year', 'date',
                           'datetime', 'timestamp', 'time') THEN CONCAT('\`', REPLACE(COLUMN_NAME, '\`', '\`\`'), '\`')
        ELSE CONCAT('HEX(\`', REPLACE(COLUMN_NAME, '\`', '\`\`'), '\`)') END ORDER BY ORDINAL_POSITION SEPARATOR ', ')
        FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '$dbl' AND TABLE_NAME = '$tl'")
    order=$(val "$db" "SELECT GROUP_CONCAT(CONCAT('\`', REPLACE(COLUMN_NAME, '\`', '\`\`'), '\`') ORDER BY SEQ_IN_INDEX)
        FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = '$dbl' AND TABLE_NAME = '$tl' AND INDEX_NAME = 'PRIMARY'")
    [ -n "$order" ] && [ "$order" != NULL ] || order=$cols
    local qt
    qt=$(printf '%s' "$t" | sed 's/`/``/g')
    printf 'SELECT %s FROM `%s` ORDER BY %s' "$cols" "$qt" "$order"
}

table_hash() {
    local q h
    q=$(_hash_query "$1" "$2")
    if h=$(my -N -B "$1" -e "$q" | sha256sum); then
        printf '%s\n' "${h:0:16}"
    else
        echo "ERROR"
    fi
}

table_hashes() {
    local t
    my -N -B -r "$1" -e "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()
              AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME" | while IFS= read -r t; do
        printf '%s\t%s\n' "$t" "$(table_hash "$1" "$t")"
    done
}

db_diff() {
    join -t "$(printf '\t')" -a1 -a2 -e MISSING -o 0,1.2,2.2 <(table_hashes "$1" | sort) <(table_hashes "$2" | sort) |
        awk -F '\t' '$2 != $3 || $2 == "ERROR" {print $1}' | sort | tr '\n' ' ' | sed 's/ $//'
}

# repo_state DIR: one line per repository file with its checksum
repo_state() { (cd "$1" && find . -type f ! -name '*.lock' -print0 | sort -z | xargs -0 -r sha256sum); }
