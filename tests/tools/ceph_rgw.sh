#!/usr/bin/env bash
# A single-node Ceph cluster with a RADOS Gateway, for tests and benchmarks.
#
#   ceph_rgw.sh start DIR   start mon, osd and radosgw with everything in DIR
#                           (created if needed); prints `export` lines:
#                           AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
#                           AWS_SECRET_ACCESS_KEY, AWS_REGION, RGW_DIR
#   ceph_rgw.sh stop DIR    kill every process started in DIR, remove DIR
#   ceph_rgw.sh stop-rgw DIR / start-rgw DIR
#                           stop or restart only radosgw (fault tests)
#
# Debian packages: ceph-mon, ceph-osd, radosgw, ceph-common. The OSD uses
# memstore (data in RAM, RGW_MEMSTORE_BYTES, default 6 GiB at most), pools
# have one replica, cephx is on with keyrings made by ceph-authtool, the
# monitor speaks msgr v2 only on 127.0.0.1, and radosgw serves S3 with the
# beast frontend on 127.0.0.1 (RGW_ADDR, set at start, picks another
# local address: the benchmarks' delayed link). Ports are picked free at
# start. There is no manager daemon: object I/O does not need one.
#
# Logs: DIR/log/*.log. Startup takes 10-30 seconds.
set -u
set -o pipefail

die() { echo "ceph_rgw.sh: $*" >&2; exit 1; }

cmd=${1:-}
DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || die "usage: ceph_rgw.sh start|stop|stop-rgw|start-rgw DIR"

ACCESS_KEY=${RGW_ACCESS_KEY:-COFFERTESTACCESSKEY1}
SECRET_KEY=${RGW_SECRET_KEY:-cofferTestSecretKey/0123456789abcdefghij}
RGW_NAME=coffer

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_until SECONDS CMD...: poll CMD every 0.2 s
wait_until() {
    local secs=$1; shift
    local i=0
    while [ $i -lt $((secs * 5)) ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
        i=$((i + 1))
    done
    return 1
}

kill_pidfile() {
    local f=$1 pid
    [ -f "$f" ] || return 0
    pid=$(cat "$f" 2>/dev/null)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$f"
}

start_rgw() {
    local port addr
    port=$(cat "$DIR/rgw.port")
    addr=$(cat "$DIR/rgw.addr" 2>/dev/null || echo 127.0.0.1)
    setsid radosgw -f -c "$DIR/ceph.conf" -n "client.rgw.$RGW_NAME" \
        >>"$DIR/log/radosgw.out" 2>&1 </dev/null &
    echo $! >"$DIR/pids/radosgw"
    wait_until 60 curl -s -o /dev/null "http://$addr:$port/" ||
        die "radosgw did not answer on $addr:$port (see $DIR/log)"
}

case "$cmd" in
start)
    for b in ceph-authtool monmaptool ceph-mon ceph-osd radosgw radosgw-admin ceph curl python3; do
        command -v "$b" >/dev/null || die "$b not found (apt-get install ceph-mon ceph-osd radosgw ceph-common curl)"
    done
    mkdir -p "$DIR" || die "cannot create $DIR"
    DIR=$(cd "$DIR" && pwd)
    [ -e "$DIR/ceph.conf" ] && die "$DIR already holds a cluster (stop it first)"
    mkdir -p "$DIR/log" "$DIR/run" "$DIR/pids" "$DIR/mon.a" "$DIR/osd.0"
    FSID=$(python3 -c 'import uuid; print(uuid.uuid4())')
    OSD_UUID=$(python3 -c 'import uuid; print(uuid.uuid4())')
    MON_PORT=$(free_port)
    RGW_PORT=$(free_port)
    echo "$RGW_PORT" >"$DIR/rgw.port"
    RGW_ADDR=${RGW_ADDR:-127.0.0.1}
    echo "$RGW_ADDR" >"$DIR/rgw.addr"
    cat >"$DIR/ceph.conf" <<CONF
[global]
fsid = $FSID
mon host = [v2:127.0.0.1:$MON_PORT]
mon initial members = a
public network = 127.0.0.0/8
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $DIR/admin.keyring
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
pid file = $DIR/run/\$name.pid
ms bind msgr1 = false
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = ${RGW_MEMSTORE_BYTES:-6442450944}
auth allow insecure global id reclaim = false
mon data avail warn = 1
mon data avail crit = 0

[mon.a]
mon data = $DIR/mon.a

[osd.0]
osd data = $DIR/osd.0
keyring = $DIR/osd.0/keyring

[client.rgw.$RGW_NAME]
keyring = $DIR/rgw.keyring
rgw frontends = beast endpoint=$RGW_ADDR:$RGW_PORT
rgw data = $DIR/rgw
rgw dns name = localhost
rgw enable usage log = false
rgw thread pool size = 64
CONF
    C=(-c "$DIR/ceph.conf")
    {
        ceph-authtool --create-keyring "$DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *' &&
        ceph-authtool --create-keyring "$DIR/admin.keyring" --gen-key -n client.admin \
            --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *' &&
        ceph-authtool --create-keyring "$DIR/osd.0/keyring" --gen-key -n osd.0 \
            --cap mon 'allow profile osd' --cap osd 'allow *' --cap mgr 'allow profile osd' &&
        ceph-authtool --create-keyring "$DIR/rgw.keyring" --gen-key -n "client.rgw.$RGW_NAME" \
            --cap mon 'allow rw' --cap osd 'allow rwx' --cap mgr 'allow rw' &&
        ceph-authtool "$DIR/mon.keyring" --import-keyring "$DIR/admin.keyring" &&
        ceph-authtool "$DIR/mon.keyring" --import-keyring "$DIR/osd.0/keyring" &&
        ceph-authtool "$DIR/mon.keyring" --import-keyring "$DIR/rgw.keyring" &&
        monmaptool --create --addv a "[v2:127.0.0.1:$MON_PORT]" --fsid "$FSID" "$DIR/monmap" &&
        ceph-mon "${C[@]}" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/mon.keyring"
    } >"$DIR/log/setup.out" 2>&1 || die "cluster setup failed: $(tail -5 "$DIR/log/setup.out")"

    setsid ceph-mon -f "${C[@]}" -i a >>"$DIR/log/mon.out" 2>&1 </dev/null &
    echo $! >"$DIR/pids/mon"
    wait_until 30 ceph "${C[@]}" --connect-timeout 2 mon stat || die "monitor did not start (see $DIR/log)"

    ceph "${C[@]}" osd new "$OSD_UUID" 0 >>"$DIR/log/setup.out" 2>&1 || die "ceph osd new failed"
    ceph-osd "${C[@]}" -i 0 --mkfs --osd-uuid "$OSD_UUID" >>"$DIR/log/setup.out" 2>&1 ||
        die "ceph-osd --mkfs failed: $(tail -3 "$DIR/log/setup.out")"
    setsid ceph-osd -f "${C[@]}" -i 0 >>"$DIR/log/osd.out" 2>&1 </dev/null &
    echo $! >"$DIR/pids/osd"
    osd_up() { ceph "${C[@]}" osd dump 2>/dev/null | grep -q '^osd.0 up'; }
    wait_until 60 osd_up || die "osd.0 did not come up (see $DIR/log)"

    start_rgw
    radosgw-admin "${C[@]}" user create --uid test --display-name test \
        --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" >"$DIR/log/user.json" 2>>"$DIR/log/setup.out" ||
        die "radosgw-admin user create failed"
    cat >"$DIR/env" <<ENV
export AWS_ENDPOINT_URL=http://$RGW_ADDR:$RGW_PORT
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export RGW_DIR=$DIR
ENV
    cat "$DIR/env"
    ;;
stop-rgw)
    kill_pidfile "$DIR/pids/radosgw"
    ;;
start-rgw)
    DIR=$(cd "$DIR" && pwd)
    kill_pidfile "$DIR/pids/radosgw"
    start_rgw
    ;;
stop)
    [ -d "$DIR" ] || exit 0
    kill_pidfile "$DIR/pids/radosgw"
    kill_pidfile "$DIR/pids/osd"
    kill_pidfile "$DIR/pids/mon"
    rm -rf "$DIR"
    ;;
*)
    die "unknown command '$cmd'"
    ;;
esac
