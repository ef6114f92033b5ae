#!/usr/bin/env bash
# Hooks and monitoring: the policy's before/after/on_success/on_failure
# commands run with the run's facts in their environment and no secret;
# healthchecks-style pings go to a local HTTP endpoint (start, success,
# failure with the error and the last log lines); the Prometheus textfile
# is written atomically and parsed by the Prometheus client library's own
# text-format parser. A failing or hanging hook, a ping URL that never
# answers and a metrics path in a missing directory are reported and leave
# the backup's result as it was; a failing `before` hook stops the backup.
. "$(dirname "$0")/lib.sh"
require_coffer
setup_env
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 2 --seed 12
"$PY" -c 'import prometheus_client' 2>/dev/null || die "python3-prometheus-client is not installed"

"$PY" "$TOOLS/http_recorder.py" "$T/requests.log" "$T/port" &
bg_register $!
wait_for "HTTP endpoint" 10 test -s "$T/port"
port=$(cat "$T/port")
url=http://127.0.0.1:$port
H=$T/hooks
mkdir -p "$H"
export MONITOR_SECRET_PASSWORD=do-not-leak

# policy EXTRA-YAML: the shipped policy plus hooks/monitor sections
policy() {
    cp "$POLICY" "$T/p.yaml"
    printf '%s\n' "$1" >>"$T/p.yaml"
}
hooks_yaml="hooks:
  before: env > $H/before.env
  after: env > $H/after.env
  on_success: env > $H/success.env
  on_failure: env > $H/failure.env
  timeout: 5"
monitor_yaml="monitor:
  ping:
    start: $url/ping/start
    success: $url/ping/ok
    failure: $url/ping/fail-report
    timeout: 2
  metrics_file: $T/metrics/coffer.prom"
mkdir -p "$T/metrics"
policy "$hooks_yaml
$monitor_yaml"
expect_ok "policy with hooks and monitor is valid" cf policy check "$T/p.yaml"
run cf init -p "$T/p.yaml"

metric() { # metric NAME: its value for policy asterdrive, parsed by prometheus_client
    "$PY" - "$T/metrics/coffer.prom" "$1" <<'PYEOF'
import sys
from prometheus_client.parser import text_string_to_metric_families
text = open(sys.argv[1]).read()
for fam in text_string_to_metric_families(text):
    for s in fam.samples:
        if s.name == sys.argv[2] and s.labels.get("policy") == "asterdrive":
            print(repr(s.value) if s.value != int(s.value) else int(s.value))
            sys.exit(0)
sys.exit(1)
PYEOF
}

section "a successful backup"
t0=$(date +%s)
expect_ok "backup" cf backup -p "$T/p.yaml"
set1=$(last_line "$OUT")
assert_match "$set1" "$SETID_RE" "set id printed"
for h in before after success; do assert_exists "$H/$h.env" "hook '$h' ran"; done
assert_absent "$H/failure.env" "on_failure did not run"
assert_contains "$(cat "$H/success.env")" "COFFER_SET_ID=$set1" "on_success knows the set id"
assert_contains "$(cat "$H/after.env")" "COFFER_STATUS=success" "after knows the status"
assert_match "$(cat "$H/after.env")" 'COFFER_BYTES=[1-9]' "after knows the bytes"
assert_match "$(cat "$H/after.env")" 'COFFER_DURATION=[0-9.]+' "after knows the duration"
for h in before after success; do
    assert_not_contains "$(cat "$H/$h.env")" "COFFER_PASSPHRASE" "hook '$h' gets no passphrase"
    assert_not_contains "$(cat "$H/$h.env")" "do-not-leak" "hook '$h' gets no *_PASSWORD"
done
reqs=$(cat "$T/requests.log")
assert_contains "$reqs" '"path": "/ping/start"' "start ping sent"
assert_contains "$reqs" '"path": "/ping/ok"' "success ping sent"
assert_contains "$(grep /ping/ok "$T/requests.log")" "$set1" "success ping names the set"
assert_not_contains "$reqs" "fail-report" "no failure ping"
assert_eq "$(metric coffer_backup_last_status)" 1 "metrics: last status 1"
assert_gt "$(metric coffer_backup_files)" 10 "metrics: files"
assert_gt "$(metric coffer_backup_bytes_read)" 1000000 "metrics: bytes read"
assert_eq "$(metric coffer_repository_sets)" 1 "metrics: one set in the repository"
assert_gt "$(metric coffer_repository_size_bytes)" 100000 "metrics: repository size"
ts1=$(metric coffer_backup_last_success_timestamp_seconds | cut -d. -f1)
assert_gt "$((ts1 + 1))" "$t0" "metrics: last success time is this run's"
assert_eq "$(stat -c %a "$T/metrics/coffer.prom")" 644 "metrics file readable by the exporter"
assert_eq "$(ls "$T/metrics")" "coffer.prom" "no temporary file left beside it"
run cf backup -p "$T/p.yaml" --json
assert_eq "$(json_get "$OUT" 'j["repository"]["sets"]')" 2 "backup --json carries the repository figures"
# every pack is indexed after a backup: the figure is the bytes under
# data/, index/ and sets/, counted without listing each pack
stored=$(find "$COFFER_REPO/data" "$COFFER_REPO/index" "$COFFER_REPO/sets" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
assert_eq "$(json_get "$OUT" 'j["repository"]["size_bytes"]')" "$stored" "repository size: the bytes of its packs, index objects and manifests"

section "a failed backup"
rm -f "$H"/*.env
: >"$T/requests.log"
mv "$ASTERDRIVE_ROOT/data/config.toml" "$T/config.toml.away"
expect_rc 1 "backup without the required config fails" cf backup -p "$T/p.yaml"
mv "$T/config.toml.away" "$ASTERDRIVE_ROOT/data/config.toml"
assert_exists "$H/failure.env" "on_failure ran"
assert_absent "$H/success.env" "on_success did not run"
assert_contains "$(cat "$H/failure.env")" "COFFER_STATUS=failure" "on_failure: status"
assert_match "$(cat "$H/failure.env")" 'COFFER_ERROR=.*config\.toml' "on_failure: the error"
fail_body=$(grep fail-report "$T/requests.log")
assert_contains "$fail_body" "FAILED" "failure ping sent"
assert_contains "$fail_body" "config.toml" "failure ping carries the error"
assert_contains "$fail_body" "last log lines" "failure ping carries the last log lines"
assert_not_contains "$fail_body" "do-not-leak" "no secret in the failure ping"
assert_eq "$(metric coffer_backup_last_status)" 0 "metrics: last status 0"
ts2=$(metric coffer_backup_last_success_timestamp_seconds | cut -d. -f1)
assert_gt "$ts2" "$((ts1 - 1))" "metrics: last success time kept from the good run"

section "check results in the metrics"
expect_ok "check" cf check -p "$T/p.yaml"
assert_eq "$(metric coffer_check_last_status)" 1 "metrics: check status 1"
assert_eq "$(metric coffer_check_problems)" 0 "metrics: 0 problems"
assert_eq "$(metric coffer_backup_last_status)" 0 "the backup's metrics stay as they were"

section "hooks that fail or hang, pings that never answer, a missing metrics directory"
policy "hooks:
  after: exit 7
  on_success: sleep 60
  timeout: 2
monitor:
  ping:
    start: $url/hang/start
    success: $url/fail/ok
    timeout: 2
  metrics_file: $T/no-such-dir/coffer.prom"
start=$(date +%s)
expect_ok "backup succeeds whatever the hooks and pings do" cf backup -p "$T/p.yaml"
took=$(($(date +%s) - start))
assert_lt "$took" 30 "timeouts honoured (${took}s)"
assert_match "$ERR" "hook 'after'.*status 7" "failing hook reported"
assert_match "$ERR" "hook 'on_success'.*(timed out|time)" "hanging hook reported"
assert_match "$ERR" "start ping to 127.0.0.1:$port failed" "silent ping URL reported"
assert_not_contains "$ERR" "/hang/start" "the ping URL's path (its token) is not logged"
assert_match "$ERR" "HTTP 500" "a ping answered with 500 is reported"
assert_contains "$ERR" "$T/no-such-dir/coffer.prom" "metrics path in a missing directory named"
assert_absent "$T/no-such-dir" "no directory made for it"

section "a failing before hook stops the backup"
n=$(count_sets "$COFFER_REPO")
policy "hooks:
  before: exit 3"
expect_rc 1 "backup refused by the before hook" cf backup -p "$T/p.yaml"
assert_contains "$ERR" "hook 'before'" "error names the hook"
assert_eq "$(count_sets "$COFFER_REPO")" "$n" "no set written"

section "bad monitor settings"
policy "monitor:
  ping:
    success: ftp://example/x"
expect_rc 2 "a ping URL that is not http(s) is refused" cf policy check "$T/p.yaml"
assert_match "$ERR" 'p\.yaml:[0-9]+:[0-9]+: monitor\.ping\.success' "error names file:line:col and key"
policy "monitor:
  metrics_file: relative.prom"
expect_rc 2 "a relative metrics path is refused" cf policy check "$T/p.yaml"
policy "hooks:
  befor: true"
expect_rc 2 "an unknown hook is refused" cf policy check "$T/p.yaml"
assert_contains "$ERR" "befor" "error names the key"
finish
