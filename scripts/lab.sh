#!/usr/bin/env bash
# herd's main job on one machine: install, build, start the local lab with `herdctl up`, and run
# the seed's demo — five busy VMs on ferby; ferby asks for help, herby offers, ferby accepts, one
# VM live-migrates. The lab stays up; `bash scripts/lab.sh down` stops it.
#
#   bash scripts/lab.sh               the demo on simulated hosts (the seed's 4-CPU hosts)
#   HERD_LAB_DRIVER=qemu bash scripts/lab.sh   the same demo with real QEMU guests: two spinning
#                                     guests on nodes declaring one CPU each (manifests/examples/qemu-demo)
#   HERD_LAB_DRIVER=qemu HERD_LAB_NETNS=1 bash scripts/lab.sh
#                                     ... each agent in its own network namespace (root)
#   bash scripts/lab.sh down          stop the lab (add --purge to remove its data)
set -euo pipefail
cd "$(dirname "$0")/.."
export HERD_LAB=${HERD_LAB:-$PWD/.lab}
export HERD_CONTEXT=${HERD_CONTEXT:-$HERD_LAB.context.yaml}
HERDCTL=${CARGO_TARGET_DIR:-$PWD/target}/release/herdctl
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ "${1:-up}" = down ]; then
  exec "$HERDCTL" down "${@:2}"
fi

say "Installing what the lab needs (Debian packages) and building herd"
bash scripts/setup.sh
cargo build --release -p herd-controller -p herd-agent -p herdctl

driver=${HERD_LAB_DRIVER:-sim}
netns=()
[ -n "${HERD_LAB_NETNS:-}" ] && netns=(--netns)
say "Starting from a clean lab (herdctl down --purge of any previous one)"
"$HERDCTL" down --purge
say "herdctl up --nodes 3 --driver $driver ${netns[*]}"
"$HERDCTL" up --nodes 3 --driver "$driver" "${netns[@]}"
"$HERDCTL" get nodes

if [ "$driver" = sim ]; then
  demo=seed; first=busy-1   # five VMs that keep a vCPU busy on the seed's 4-CPU hosts
else
  demo=qemu; first=spin-1   # two real QEMU guests that spin, on nodes declaring one CPU each
fi
say "herdctl apply -f manifests/examples/$demo-demo/"
"$HERDCTL" apply -f "manifests/examples/$demo-demo/"
# A VM shows a node once it is placed (QEMU guests first wait for their disk's export).
for _ in $(seq 60); do
  "$HERDCTL" get vms -l "demo=$demo" | awk 'NR > 1 && $3 == "<none>" { found = 1 } END { exit !found }' || break
  sleep 1
done
"$HERDCTL" get vms
if "$HERDCTL" get vms -l "demo=$demo" | awk 'NR > 1 && $3 != "ferby" { found = 1 } END { exit !found }'; then
  echo "FAILED: the demo's busy VMs should all start on ferby (the node with the most memory)" >&2
  exit 1
fi

say "Waiting for ferby to ask for help (5 points of 2 s samples) and one VM to move"
for _ in $(seq 150); do
  "$HERDCTL" get migrations 2>/dev/null | grep -q Completed && break
  sleep 1
done
"$HERDCTL" get events | grep -E 'RequestHelp|OfferHelp|AcceptHelp|MigrationCompleted' | grep -v 'virtualmachine/\|migration/' || true
"$HERDCTL" get migrations
"$HERDCTL" get vms
moved=$("$HERDCTL" get migrations -o name | wc -l)
completed=$("$HERDCTL" get migrations | grep -c Completed || true)
if [ "$moved" != 1 ] || [ "$completed" != 1 ]; then
  echo "FAILED: the demo should end with exactly one completed migration (got $moved, $completed completed)" >&2
  exit 1
fi
if ! "$HERDCTL" get vms -l "demo=$demo" | awk '$3 == "herby" { found = 1 } END { exit !found }'; then
  echo "FAILED: the VM that moved should be on herby (gerby refuses migrations)" >&2
  exit 1
fi
say "The demo ended as the seed's did: one VM moved from ferby to herby"

say "The lab is up"
cat <<TXT
  export HERD_CONTEXT=$HERD_CONTEXT   # then herdctl needs no flags
  $HERDCTL get vms -w
  $HERDCTL describe vm $first
  $HERDCTL migrate $first --to herby
  $HERDCTL drain herby && $HERDCTL uncordon herby
  bash scripts/lab.sh down                      # stop everything the lab started
Logs are in $HERD_LAB/logs/.
TXT
