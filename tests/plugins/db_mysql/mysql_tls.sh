#!/usr/bin/env bash
# database "mysql": TLS settings against a real MariaDB 10.11.
#   - ssl_mode: required against a server without TLS fails (and says why)
#   - the same server restarted with a certificate (a private CA, SAN
#     127.0.0.1): an account created REQUIRE SSL can back up and restore
#     with ssl_mode preferred (the default), required, and verify_identity
#     with ssl_ca; verify_identity with another CA fails; disabled is
#     refused by the account
. "$(dirname "$0")/../../e2e/lib.sh"
. "$(dirname "$0")/mysql_lib.sh"
require_coffer
command -v openssl >/dev/null || { skip "openssl missing"; finish; }
mysql_start

section "fixtures"
load_asterdrive asterdrive 1
export ASTERDRIVE_ROOT=$T/live COFFER_REPO=$T/repo ASTERDRIVE_STOP=true ASTERDRIVE_START=true ASTERDRIVE_DOCTOR=true
export ASTERDRIVE_DATABASE_URL=$(url_of asterdrive)
mkdir -p "$ASTERDRIVE_ROOT/data/uploads" "$ASTERDRIVE_ROOT/data/avatar"
printf '[auth]\njwt_secret = "%064d"\n' 7 >"$ASTERDRIVE_ROOT/data/config.toml"
expect_ok "init" mcf init -p "$MYSQL_POLICY" || die "init failed"
# tls_policy OUT USER MODE [CA]: the shipped policy with TLS options
tls_policy() {
    local extra="    ssl_mode: $3"
    [ -n "${4:-}" ] && extra="$extra\n    ssl_ca: $4"
    sed -e "s|^    url: .*|    url: mysql://$2@127.0.0.1:$MYSQL_PORT/asterdrive|" \
        -e "s|^    password_env: MYSQL_PWD\$|    password_env: MYSQL_PWD\n$extra|" "$MYSQL_POLICY" >"$1"
}

section "ssl_mode: required, server without TLS"
tls_policy "$T/required.yaml" coffer required
expect_rc 1 "backup with ssl_mode: required fails" mcf backup -p "$T/required.yaml"
assert_match "$ERR" "TLS|SSL|not encrypted" "the error says TLS is missing"

section "a private CA and a server certificate; restart the server with TLS"
C=$T/certs
mkdir -p "$C"
(
    cd "$C" &&
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=coffer test CA" &&
        openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=127.0.0.1" &&
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >ext.cnf &&
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 \
            -extfile ext.cnf &&
        openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other-ca.pem -days 2 -subj "/CN=other CA"
) >"$T/openssl.log" 2>&1 || die "openssl failed: $(tail -5 "$T/openssl.log")"
chmod 644 "$C"/*.pem "$C"/*.key
"$MYSQL_SERVER" stop "$MYT"
MYSQL_SERVER_ARGS="--ssl-ca=$C/ca.pem --ssl-cert=$C/server.pem --ssl-key=$C/server.key" \
    "$MYSQL_SERVER" start "$MYT" >/dev/null || die "cannot restart MariaDB with TLS"
assert_ne "" "$(val mysql "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_VARIABLES WHERE VARIABLE_NAME = 'have_ssl' AND VARIABLE_VALUE = 'YES'")" \
    "the server has TLS"
my -e "CREATE USER 'tlsonly'@'127.0.0.1' IDENTIFIED BY '$MYSQL_PWD' REQUIRE SSL;
       GRANT ALL PRIVILEGES ON *.* TO 'tlsonly'@'127.0.0.1'"

section "an account that requires TLS"
tls_policy "$T/preferred.yaml" tlsonly preferred
expect_ok "ssl_mode: preferred (the default) uses TLS when offered" mcf backup -p "$T/preferred.yaml" --json
SET=$(json_get "$OUT" 'j["set"]')
expect_ok "ssl_mode: required" mcf backup -p "$T/required.yaml"
tls_policy "$T/verify.yaml" tlsonly verify_identity "$C/ca.pem"
expect_ok "ssl_mode: verify_identity with the right CA" mcf backup -p "$T/verify.yaml"
expect_ok "restore over TLS (verify_identity)" \
    mcf restore --no-checks -p "$T/verify.yaml" --set "$SET" --to "$T/r1" --map "database=mysql://tlsonly@127.0.0.1:$MYSQL_PORT/over_tls"
assert_eq "" "$(db_diff asterdrive over_tls)" "restored over TLS, identical"
tls_policy "$T/wrongca.yaml" tlsonly verify_identity "$C/other-ca.pem"
expect_rc 1 "ssl_mode: verify_identity with another CA fails" mcf backup -p "$T/wrongca.yaml"
assert_match "$ERR" "TLS|SSL|certificate|verif" "the error is about the certificate"
tls_policy "$T/disabled.yaml" tlsonly disabled
expect_rc 1 "ssl_mode: disabled is refused by an account that requires TLS" mcf backup -p "$T/disabled.yaml"
assert_contains "$ERR" "Access denied" "the server refused the plain connection"
finish
