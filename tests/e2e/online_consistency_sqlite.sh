#!/usr/bin/env bash
# Online backups with the shipped online SQLite policy while
# tests/tools/aster_writer.py uploads and purges files (object first, then
# rows; rows first, then the object). Every published set either restores
# to a deployment whose database finds every blob object it names, or is
# marked inconsistent and lists exactly the objects its restore lacks (each
# one an object the writer purged); four backups with two passes, two with
# one. The writer itself first: every state it commits is doctor-clean. A deployment whose database names an
# object that is gone: on_inconsistent: fail refuses the set (exit 1,
# nothing published, the path named); mark publishes it marked (exit 3),
# and sets, verify, rehearse and the restore's checks report that path.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/online_lib.sh"
require_coffer
POLICY=$COFFER_SRC/policies/asterdrive-sqlite-online.yaml
setup_env
export TMPDIR=$T/scratch
mkdir -p "$TMPDIR"
DB=$ASTERDRIVE_ROOT/data/asterdrive.db

section "the writer alone: every committed state is doctor-clean"
gen_deployment "$T/small" --size-mb 2 --seed 30
ol_writer_selfcheck "$T/small" 40

section "deployment, init"
gen_deployment "$ASTERDRIVE_ROOT" --size-mb 30 --seed 31
expect_ok "the shipped online policy is valid" cf policy check "$POLICY" || die "policy check"
expect_ok "init" cf init -p "$POLICY" || die "init failed"

section "writer: uploads and purges"
ol_writer_start
ol_backups 4
# One pass only: objects purged before the walk reaches them while the
# snapshot still has their rows are what the reference check is for.
SINGLE=$T/online-single-pass.yaml
make_policy "$SINGLE" 's/^\(  two_pass:\) true/\1 false/'
grep -q '^  two_pass: false' "$SINGLE" || die "cannot make a two_pass: false policy"
ol_backups 2 "$SINGLE"
ol_writer_stop
doctor "the live deployment is doctor-clean after the writer" "$ASTERDRIVE_ROOT"
ol_check_sets

REL=$(sql "$DB" "SELECT rtrim(json_extract(p.storage_config, '\$.base_path'), '/') || '/' || b.storage_path
  FROM file_blobs b JOIN storage_policies p ON p.id = b.policy_id
  WHERE p.connector_id = 'local' AND b.backing = 'stored' AND b.thumbnail_path IS NULL ORDER BY b.id LIMIT 1")
ol_broken "$REL"
finish
