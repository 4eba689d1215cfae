#!/usr/bin/env bash
# herd's local lab: etcd, the controller and three node agents (ferby, gerby, herby) driving
# real QEMU guests on this machine, then a short demo. `scripts/lab.sh down` stops it all.
#
#   bash scripts/lab.sh          install, build, start the lab, run the demo (lab stays up)
#   bash scripts/lab.sh down     stop every process the lab started and its guests
#   bash scripts/lab.sh purge    stop and remove the lab's data (.lab/)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LAB=${HERD_LAB:-$ROOT/.lab}
BIN=$ROOT/target/release
NODES=(ferby gerby herby)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

stop_lab() {
  for pidfile in "$LAB"/pids/*.pid; do
    [ -e "$pidfile" ] || continue
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
  # Guests are daemonized QEMU processes (they outlive their agent on purpose): end them too.
  pkill -9 -f "qemu-system-x86_64.*$LAB/" 2>/dev/null || true
}

case "${1:-up}" in
  down) stop_lab; echo "lab stopped (data kept in $LAB)"; exit 0 ;;
  purge) stop_lab; rm -rf "$LAB"; echo "lab stopped and $LAB removed"; exit 0 ;;
  up) ;;
  *) echo "usage: $0 [up|down|purge]" >&2; exit 2 ;;
esac

say "Installing what the lab needs (Debian packages) and building herd"
bash scripts/setup.sh
cargo build --release -p herd-controller -p herd-agent -p herdctl

stop_lab
mkdir -p "$LAB/pids" "$LAB/logs" "$LAB/images" "$LAB/manifests"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CLIENT_PORT=$(free_port); PEER_PORT=$(free_port); METRICS_PORT=$(free_port)
ENDPOINT=http://127.0.0.1:$CLIENT_PORT

say "Starting etcd on $ENDPOINT"
etcd --name herd-lab --data-dir "$LAB/etcd" \
  --listen-client-urls "$ENDPOINT" --advertise-client-urls "$ENDPOINT" \
  --listen-peer-urls "http://127.0.0.1:$PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT" \
  --initial-cluster "herd-lab=http://127.0.0.1:$PEER_PORT" >"$LAB/logs/etcd.log" 2>&1 &
echo $! >"$LAB/pids/etcd.pid"
for _ in $(seq 100); do ETCDCTL_API=3 etcdctl --endpoints="$ENDPOINT" endpoint health >/dev/null 2>&1 && break; sleep 0.1; done

cat >"$LAB/context.yaml" <<YAML
endpoints: [$ENDPOINT]
prefix: /herd
YAML
export HERD_CONTEXT=$LAB/context.yaml

say "Starting the controller (metrics on http://127.0.0.1:$METRICS_PORT/metrics)"
"$BIN/herd-controller" --etcd "$ENDPOINT" --listen "127.0.0.1:$METRICS_PORT" >"$LAB/logs/controller.log" 2>&1 &
echo $! >"$LAB/pids/controller.pid"

for node in "${NODES[@]}"; do
  "$BIN/herd-agent" --node "$node" --etcd "$ENDPOINT" --driver qemu --state-dir "$LAB/$node" \
    >"$LAB/logs/agent-$node.log" 2>&1 &
  echo $! >"$LAB/pids/agent-$node.pid"
done

HERDCTL="$BIN/herdctl"
say "Waiting for the nodes to report"
for _ in $(seq 120); do
  ready=$("$HERDCTL" get nodes 2>/dev/null | grep -c ' True ' || true)
  [ "$ready" -ge ${#NODES[@]} ] && break
  sleep 0.5
done
"$HERDCTL" get nodes

say "Writing the demo guests and manifests"
SPIN=$("$BIN/herd-test-guest" spin "$LAB/images")
IDLE=$("$BIN/herd-test-guest" idle "$LAB/images")
{
  for i in 1 2 3; do
    cat <<YAML
---
apiVersion: herd.dev/v1alpha1
kind: VirtualMachine
metadata:
  name: busy-$i
  labels: {app: busy}
spec:
  memoryMiB: 32
  boot: {disk: root}
  disks: [{name: root, path: $SPIN, readOnly: true}]
  affinity:
    vmAntiAffinity: [{matchLabels: {app: busy}}]
YAML
  done
  cat <<YAML
---
apiVersion: herd.dev/v1alpha1
kind: VirtualMachine
metadata:
  name: quiet-1
spec:
  memoryMiB: 32
  nodeName: gerby
  boot: {disk: root}
  disks: [{name: root, path: $IDLE, readOnly: true}]
YAML
} >"$LAB/manifests/demo.yaml"

say "herdctl apply -f $LAB/manifests/demo.yaml"
"$HERDCTL" apply -f "$LAB/manifests/demo.yaml"

say "Waiting for the guests to run (anti-affinity spreads busy-1..3 over the three nodes)"
for _ in $(seq 120); do
  running=$("$HERDCTL" get vms 2>/dev/null | grep -c ' Running ' || true)
  [ "$running" -ge 4 ] && break
  sleep 1
done
"$HERDCTL" get vms

say "Pausing busy-1 through its spec"
sed -i '0,/name: busy-1/{/name: busy-1/!b};/memoryMiB: 32/{s/memoryMiB: 32/memoryMiB: 32\n  runState: Paused/;:a;n;ba}' "$LAB/manifests/demo.yaml"
"$HERDCTL" apply -f "$LAB/manifests/demo.yaml"
for _ in $(seq 30); do "$HERDCTL" get vms busy-1 | grep -q ' Paused ' && break; sleep 1; done
"$HERDCTL" get vms
"$HERDCTL" get nodes

say "The lab is up"
cat <<TXT
  export HERD_CONTEXT=$LAB/context.yaml   # then herdctl needs no flags
  $HERDCTL get vms
  $HERDCTL get events
  $HERDCTL delete vm quiet-1
  bash scripts/lab.sh down                # stop everything the lab started
Logs are in $LAB/logs/.
TXT
