# shellcheck shell=bash
# Helpers for the snapshot tests (source after tests/e2e/lib.sh): loop
# devices cleaned up whatever happens, and snapshots held by a running
# fssnap_tool that the test talks to through a fifo.

: "${FSSNAP_TOOL:=$COFFER_BUILD/tests/core/snapshot/fssnap_tool}"

declare -A HOLD_PID HOLD_FD
_LOOPS=()
_LATE_MOUNTS=()
_CLEANUPS=()

# Runs before lib.sh's cleanup (which removes $T): holders release their
# snapshots, then the file systems are unmounted and the loop devices
# detached, also when the test failed half-way.
_fssnap_cleanup() {
    local n p m l c
    # background helpers first: one may hold a snapshot busy
    for p in "${_BG_PIDS[@]}"; do
        kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    for n in "${!HOLD_PID[@]}"; do
        p=${HOLD_PID[$n]}
        kill -TERM "$p" 2>/dev/null
    done
    for n in "${!HOLD_PID[@]}"; do
        wait "${HOLD_PID[$n]}" 2>/dev/null
    done
    for ((i = ${#_CLEANUPS[@]} - 1; i >= 0; i--)); do
        eval "${_CLEANUPS[$i]}" >/dev/null 2>&1
    done
    for ((i = ${#_LATE_MOUNTS[@]} - 1; i >= 0; i--)); do
        m=${_LATE_MOUNTS[$i]}
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
    done
    for l in "${_LOOPS[@]}"; do
        losetup -d "$l" 2>/dev/null
    done
    # and any other loop device on a file of the test's
    losetup -l -n -O NAME,BACK-FILE 2>/dev/null | while read -r l f; do
        case "$f" in "$T"/*) losetup -d "$l" 2>/dev/null ;; esac
    done
}
trap '_rc=$?; _fssnap_cleanup; (exit $_rc); _cleanup' EXIT

# skip_all REASON: the whole test cannot run here. Exit 77: ctest shows
# it as skipped (SKIP_RETURN_CODE), with the reason in its output.
skip_all() {
    skip "$1"
    echo
    echo "RESULT: $TEST_NAME SKIPPED: $1"
    exit 77
}

# on_cleanup COMMAND: run at exit, before the unmounts (last first).
on_cleanup() { _CLEANUPS+=("$1"); }

# What an LVM test's snapshots may have left mounted when it stopped
# half-way: unmounted (and their directories removed) at exit.
umount_lvm_snapshots_at_exit() {
    on_cleanup "grep -Eo ' /run/coffer/fssnap/coffer_(fssnap\\.|t_)[^ ]*' /proc/self/mountinfo | while read -r m; do umount \$m && rmdir \$m; done"
}

# require_root_loop WHAT: skip the whole test unless root with loop devices.
require_root_loop() {
    if [ "$(id -u)" != 0 ]; then
        skip_all "$1: needs root (loop devices, mount, snapshots)"
    fi
    if [ ! -e /dev/loop-control ] || ! command -v losetup >/dev/null; then
        skip_all "$1: no loop devices here (/dev/loop-control or losetup missing)"
    fi
    [ -x "$FSSNAP_TOOL" ] || die "fssnap_tool not found at $FSSNAP_TOOL (set FSSNAP_TOOL)"
}

# loop_file SIZE: a loop device on a new sparse file in $T, in $LOOP
# (not printed: a command substitution's subshell would not record it for
# the cleanup).
loop_file() {
    local img
    LOOP=
    img=$(mktemp "$T/disk.XXXXXX") || return 1
    truncate -s "$1" "$img" || return 1
    LOOP=$(losetup -f --show "$img") || return 1
    _LOOPS+=("$LOOP")
    note "loop device $LOOP on $img ($1)"
}

# mount_late ARGS... DIR: mount, unmounted at exit before the loops go.
mount_late() {
    mount "$@" || return 1
    _LATE_MOUNTS+=("${!#}")
}

# hold NAME ARGS...: `fssnap_tool take ARGS...` in the background as NAME;
# returns once it printed "ready" (0) or exited (1, its stderr in $ERR).
hold() {
    local name=$1
    shift
    local in=$T/hold-$name.in out=$T/hold-$name.out
    rm -f "$in" "$out"
    mkfifo "$in"
    echo "+ fssnap_tool take $* &   ($name)"
    (
        # other holders' inputs stay with the test alone
        for f in "${HOLD_FD[@]}"; do exec {f}>&-; done
        exec "$FSSNAP_TOOL" take "$@" <"$in" >"$out" 2>"$T/hold-$name.err"
    ) &
    HOLD_PID[$name]=$!
    local fd
    exec {fd}>"$in"
    HOLD_FD[$name]=$fd
    local i
    for ((i = 0; i < 1200; i++)); do
        grep -qx ready "$out" 2>/dev/null && return 0
        kill -0 "${HOLD_PID[$name]}" 2>/dev/null || break
        sleep 0.05
    done
    release_fd "$name"
    wait "${HOLD_PID[$name]}" 2>/dev/null
    RC=$?
    ERR=$(cat "$T/hold-$name.err")
    unset "HOLD_PID[$name]"
    return 1
}

release_fd() {
    local fd=${HOLD_FD[$1]:-}
    [ -n "$fd" ] && exec {fd}>&-
    unset "HOLD_FD[$1]"
}

# held NAME: what the holder printed so far.
held() { cat "$T/hold-$1.out"; }
# map_of NAME REL: the path the holder printed for REL.
map_of() { awk -v r="$2" '$1 == "map" && $2 == r { print $3 }' "$T/hold-$1.out" | tail -n1; }
# tell NAME LINE: send a command to the holder.
tell() { echo "$2" >&"${HOLD_FD[$1]}"; }
# stop NAME [CMD]: send CMD (default: release), close its input, wait;
# exit status in $RC, its output in $OUT, its stderr in $ERR.
stop() {
    local name=$1 cmd=${2:-release}
    [ -n "$cmd" ] && tell "$name" "$cmd"
    release_fd "$name"
    wait "${HOLD_PID[$name]}" 2>/dev/null
    RC=$?
    unset "HOLD_PID[$name]"
    OUT=$(cat "$T/hold-$name.out")
    ERR=$(cat "$T/hold-$name.err")
}
# kill_hold NAME SIGNAL: signal the holder, wait for it.
kill_hold() {
    kill "-$2" "${HOLD_PID[$1]}"
    wait "${HOLD_PID[$1]}" 2>/dev/null
    RC=$?
    release_fd "$1"
    unset "HOLD_PID[$1]"
    OUT=$(cat "$T/hold-$1.out")
    ERR=$(cat "$T/hold-$1.err")
}

# tree_sum DIR PATH...: every entry under the paths (type, mode, link
# target) and the SHA-256 of every file, relative to DIR.
tree_sum() {
    local d=$1
    shift
    (cd "$d" && find "$@" -printf '%p %y %m %l\n' | sort &&
        find "$@" -type f -exec sha256sum {} + | sort -k2)
}
