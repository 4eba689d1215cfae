#!/usr/bin/env bash
# The Xen lab: herd drives real Xen 4.17 hosts that run as QEMU guests (TCG) on this machine.
#
#   sudo tests/xen-lab/run.sh                  one Xen host: it registers as a Node, and a PV
#                                              guest is created, paused, unpaused, shut down,
#                                              started, destroyed and deleted through herd
#   sudo tests/xen-lab/run.sh --two            also a second Xen host, and `herdctl migrate`
#                                              moves the running guest to it with `xl migrate`
#   sudo tests/xen-lab/run.sh --capture DIR    also save real `xl` output in DIR (the fixtures
#                                              in node-agent/tests/fixtures/xl/real/ come from it)
#   HERD_XEN_LAB_KEEP=1 ...                    leave the lab running at the end (prints how to
#                                              reach it and how to stop it)
#
# Builds the dom0 image once (tests/xen-lab/build-image.sh, cached under
# ${XDG_CACHE_HOME:-$HOME/.cache}/herd/xen-lab), builds herd, starts etcd and the controller on
# 127.0.0.1 here, and boots each Xen host with QEMU: Xen as the multiboot kernel, Debian's dom0
# kernel, the image as a qcow2 overlay. Each dom0 reaches etcd through QEMU's user network
# (the host is 10.0.2.2) and the other dom0 through a point-to-point QEMU socket link on
# 127.0.0.1 bridged into xenbr0. No traffic leaves this machine. herd-agent reaches the dom0s
# over a read-only 9p share. Prints PASS or FAIL for every step, exits 1 at the first FAIL.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${HERD_XEN_LAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/herd/xen-lab}
hosts=1
capture=
while [ $# -gt 0 ]; do
  case $1 in
    --two) hosts=2 ;;
    --capture) capture=$(realpath -m "$2"); shift ;;
    *) echo "usage: $0 [--two] [--capture DIR]" >&2; exit 2 ;;
  esac
  shift
done
if [ "$(id -u)" -ne 0 ]; then
  echo "run.sh: run as root (debootstrap, and xl in the dom0s over ssh as root)" >&2
  exit 1
fi

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
have debootstrap || need+=(debootstrap)
have mkfs.ext4 || need+=(e2fsprogs)
have ssh || need+=(openssh-client)
have qemu-img || need+=(qemu-utils)
have qemu-system-x86_64 || need+=(qemu-system-x86)
have etcd || need+=(etcd-server)
have etcdctl || need+=(etcd-client)
have jq || need+=(jq)
have python3 || need+=(python3)
if ((${#need[@]})); then
  echo "run.sh: installing ${need[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

started=$(date +%s)
run=$(mktemp -d /tmp/herd-xen-lab.XXXXXX)
vm=lab-guest-1
step_started=$started
steps=()

say() { printf '%s\n' "$*"; }
begin() { step=$1; step_started=$(date +%s); say "---- $step"; }
pass() {
  local line
  line=$(printf 'PASS  %-44s %4ss  %s' "$step" $(($(date +%s) - step_started)) "$*")
  steps+=("$line")
  say "$line"
}
fail() {
  local line
  line=$(printf 'FAIL  %-44s %4ss  %s' "$step" $(($(date +%s) - step_started)) "$*")
  steps+=("$line")
  say "$line"
  say "logs and consoles: $run"
  exit 1
}

# ---- the lab's processes, and cleaning them up ---------------------------------------------
pids=()
cleanup() {
  local status=$?
  if [ "${HERD_XEN_LAB_KEEP:-0}" = 1 ] && [ $status -eq 0 ]; then
    say "The lab stays up (HERD_XEN_LAB_KEEP=1). etcd: http://127.0.0.1:$etcd_port"
    say "  ssh: ssh -i $cache/lab_key -p PORT root@127.0.0.1 (ports in $run/ssh-ports)"
    say "  stop: kill ${pids[*]} \$(cat $run/*.pid)"
    return
  fi
  for f in "$run"/*.pid; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -f "$run"/*.qcow2
  say ""
  say "Summary ($(($(date +%s) - started)) s in all; logs in $run):"
  printf '%s\n' "${steps[@]}"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
etcd_port=$(free_port)
peer_port=$(free_port)
link_port=$(free_port)
H() { "${CARGO_TARGET_DIR:-$repo/target}/debug/herdctl" --etcd "http://127.0.0.1:$etcd_port" "$@"; }
declare -A ssh_port
dom0() {
  local host=$1
  shift
  timeout 120 ssh -i "$cache/lab_key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o LogLevel=ERROR -o BatchMode=yes -o ConnectTimeout=20 -p "${ssh_port[$host]}" root@127.0.0.1 "$@"
}
# wait_for SECONDS COMMAND...: polls every 3 s until COMMAND succeeds.
wait_for() {
  local deadline=$(($(date +%s) + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt $deadline ] || return 1
    sleep 3
  done
}
vm_state() { H get vm "$vm" -o json 2>/dev/null | jq -r '.status.state // "none"'; }
vm_node() { H get vm "$vm" -o json 2>/dev/null | jq -r '.status.nodeName // "none"'; }
vm_is() { [ "$(vm_state)" = "$1" ]; }
# The State column of `xl list` for the lab guest on HOST (any of xl's migration names), or
# "absent".
xl_state() {
  dom0 "$1" xl list | awk -v vm="$vm" '$1 == vm || $1 == vm"--incoming" || $1 == vm"--migratedaway" { print $1 ":" $5; found=1 } END { if (!found) print "absent" }'
}
xl_has() { xl_state "$1" | grep -Eq "^$vm:$2\$"; }
xl_absent() { [ "$(xl_state "$1")" = absent ]; }
node_ready() { H get nodes -o json | jq -e --arg n "$1" '.items[] | select(.metadata.name == $n) | .status.ready == true' >/dev/null; }

# ---- build ---------------------------------------------------------------------------------
begin "dom0 image (debootstrap, cached)"
bash "$here/build-image.sh" >"$run/build-image.log" 2>&1 || { tail -5 "$run/build-image.log"; fail "build-image.sh failed"; }
pass "$(tail -1 "$run/build-image.log" | sed 's/^build-image: //')"

begin "build herd (agent, controller, herdctl)"
(cd "$repo" && cargo build -q -p herd-agent -p herd-controller -p herdctl --bins) >"$run/cargo.log" 2>&1 \
  || { tail -20 "$run/cargo.log"; fail "cargo build failed"; }
mkdir -p "$run/share"
cp "${CARGO_TARGET_DIR:-$repo/target}/debug/herd-agent" "$run/share/herd-agent"
pass "target/debug/{herd-agent,herd-controller,herdctl}"

begin "etcd and herd-controller on 127.0.0.1"
etcd --name xen-lab --data-dir "$run/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "xen-lab=http://127.0.0.1:$peer_port" --log-level warn --logger zap \
  >"$run/etcd.log" 2>&1 &
pids+=($!)
wait_for 30 etcdctl --endpoints "http://127.0.0.1:$etcd_port" endpoint health || fail "etcd did not start"
"${CARGO_TARGET_DIR:-$repo/target}/debug/herd-controller" --etcd "http://127.0.0.1:$etcd_port" --listen "" \
  >"$run/controller.log" 2>&1 &
pids+=($!)
wait_for 30 H apply -f "$here/lab-policy.yaml" || fail "cannot apply the lab's cluster policy"
pass "etcd :$etcd_port, controller, lab cluster policy (balancer off, long migration limits)"

# ---- the Xen hosts -------------------------------------------------------------------------
boot() {
  local name=$1 index=$2 link
  ssh_port[$name]=$(free_port)
  echo "$name ${ssh_port[$name]}" >>"$run/ssh-ports"
  if [ "$index" = 1 ]; then link=listen; else link=connect; fi
  qemu-img create -q -f qcow2 -F raw -b "$cache/dom0.img" "$run/$name.qcow2"
  qemu-system-x86_64 -accel tcg -m 2048 -smp 2 -display none -no-reboot \
    -kernel "$cache/xen" -append "console=com1 com1=115200,8n1 dom0_mem=1024M,max:1024M" \
    -initrd "$cache/vmlinuz console=hvc0 root=/dev/vda rw herd.node=$name herd.ip=192.168.77.1$index herd.etcd=http://10.0.2.2:$etcd_port,$cache/initrd" \
    -drive "file=$run/$name.qcow2,if=virtio,format=qcow2" \
    -netdev "user,id=user,hostfwd=tcp:127.0.0.1:${ssh_port[$name]}-:22" \
    -device virtio-net-pci,netdev=user,addr=0x4 \
    -netdev "socket,id=lab,$link=127.0.0.1:$link_port" \
    -device "virtio-net-pci,netdev=lab,addr=0x5,mac=52:54:00:77:00:1$index" \
    -virtfs "local,path=$run/share,mount_tag=herd,security_model=none,readonly=on" \
    -serial "file:$run/$name.console" -monitor none \
    -pidfile "$run/$name.pid" -daemonize
}
names=(xen-a)
[ $hosts = 2 ] && names+=(xen-b)
index=0
for name in "${names[@]}"; do
  index=$((index + 1))
  begin "boot $name (Xen 4.17 + dom0 under TCG)"
  boot "$name" $index || fail "qemu did not start"
  wait_for 600 node_ready "$name" || fail "$name did not register as a ready Node within 600 s (console: $run/$name.console)"
  version=$(dom0 "$name" xl info | awk -F': ' '/^xen_version/ { print $2 }')
  caps=$(dom0 "$name" cat /proc/xen/capabilities)
  pass "Node $name Ready, driver $(H get nodes -o json | jq -r --arg n "$name" '.items[] | select(.metadata.name == $n) | .status.driver'), xl info: Xen $version, /proc/xen/capabilities: $caps"
done

# ---- one guest through its life ------------------------------------------------------------
begin "create $vm from its VirtualMachine manifest"
sed "s/^spec:/spec:\n  nodeName: xen-a/" "$here/lab-guest.yaml" >"$run/lab-guest.yaml"
H apply -f "$run/lab-guest.yaml" >/dev/null
wait_for 300 vm_is Running || fail "VM state $(vm_state), xl list: $(xl_state xen-a)"
wait_for 30 xl_has xen-a '-[rb]----' || fail "xl list: $(xl_state xen-a)"
# The guest's console as xenconsoled logs it (an observation, not a condition).
console() { dom0 "$1" "grep -ah 'herd-lab-guest' /var/log/xen/console/guest-$vm*.log 2>/dev/null | tail -1 | tr -d '\r'" || true; }
wait_for 60 dom0 xen-a "grep -q 'herd-lab-guest: up' /var/log/xen/console/guest-$vm*.log" || true
pass "VM Running on $(vm_node); xl list: $(xl_state xen-a); console: $(console xen-a)"

if [ -n "$capture" ]; then
  begin "capture real xl output into $capture"
  mkdir -p "$capture"
  dom0 xen-a xl list >"$capture/list.txt"
  dom0 xen-a xl list -l >"$capture/list-l.json"
  dom0 xen-a xl vcpu-list >"$capture/vcpu-list.txt"
  dom0 xen-a xl info >"$capture/info.txt"
  dom0 xen-a xentop -b -f -i 2 -d 1 >"$capture/xentop-b.txt"
  dom0 xen-a xl pause nosuch-domain 2>"$capture/no-such-domain.stderr.txt" || true
  dom0 xen-a cat "/var/lib/herd/xl/$vm.cfg" >"$capture/$vm.cfg"
  pass "$(ls "$capture" | tr '\n' ' ')"
fi

begin "herdctl pause $vm"
H pause "$vm" >/dev/null
wait_for 120 vm_is Paused || fail "VM state $(vm_state)"
wait_for 30 xl_has xen-a '--p---' || fail "xl list: $(xl_state xen-a)"
pass "VM Paused; xl list: $(xl_state xen-a)"

begin "herdctl unpause $vm"
H unpause "$vm" >/dev/null
wait_for 120 vm_is Running || fail "VM state $(vm_state)"
wait_for 30 xl_has xen-a '-[rb]----' || fail "xl list: $(xl_state xen-a)"
pass "VM Running; xl list: $(xl_state xen-a)"

on=xen-a
if [ $hosts = 2 ]; then
  begin "herdctl migrate $vm --to xen-b (xl migrate)"
  H migrate "$vm" --to xen-b >"$run/migrate.out"
  migration=$(awk -F'[/ ]' '{ print $2 }' "$run/migrate.out")
  deadline=$(($(date +%s) + 1500))
  phase=
  while :; do
    phase=$(H get migration "$migration" -o json | jq -r '.status.phase // "Pending"')
    a=$(xl_state xen-a) b=$(xl_state xen-b)
    # Exactly one running: never a running (r or b, not paused) copy on both hosts.
    running=0
    for s in "$a" "$b"; do
      case $s in *:-[rb]----) running=$((running + 1)) ;; esac
    done
    echo "$(date +%T) $phase xen-a=$a xen-b=$b" >>"$run/migration-watch.log"
    [ $running -le 1 ] || fail "both hosts run the guest: xen-a $a, xen-b $b"
    case $phase in Completed | Failed | Aborted) break ;; esac
    [ "$(date +%s)" -lt $deadline ] || break
    sleep 5
  done
  [ "$phase" = Completed ] || fail "migration $migration $phase: $(H get migration "$migration" -o json | jq -r '.status.message // ""')"
  wait_for 60 xl_has xen-b '-[rb]----' || fail "xl list on xen-b: $(xl_state xen-b)"
  wait_for 60 xl_absent xen-a || fail "xl list on xen-a still shows $(xl_state xen-a)"
  pass "Completed; VM on $(vm_node); xl list xen-a: $(xl_state xen-a), xen-b: $(xl_state xen-b); never two running (polled every 5 s: $run/migration-watch.log)"
  on=xen-b
fi

begin "herdctl stop $vm (xl shutdown)"
H stop "$vm" >/dev/null
wait_for 180 vm_is Stopped || fail "VM state $(vm_state)"
wait_for 60 xl_absent $on || fail "xl list: $(xl_state $on)"
pass "VM Stopped; xl list on $on: $(xl_state $on); console: $(console $on)"

begin "herdctl start $vm"
H start "$vm" >/dev/null
wait_for 300 vm_is Running || fail "VM state $(vm_state)"
host=$(vm_node)
wait_for 30 xl_has "$host" '-[rb]----' || fail "xl list: $(xl_state "$host")"
pass "VM Running on $host; xl list: $(xl_state "$host")"

begin "herdctl destroy $vm (xl destroy)"
H destroy "$vm" >/dev/null
wait_for 120 vm_is Stopped || fail "VM state $(vm_state)"
wait_for 60 xl_absent "$host" || fail "xl list: $(xl_state "$host")"
pass "VM Stopped; xl list on $host: $(xl_state "$host")"

begin "herdctl delete vm $vm"
H delete vm "$vm" >/dev/null || fail "herdctl delete failed"
for name in "${names[@]}"; do
  wait_for 60 xl_absent "$name" || fail "xl list on $name: $(xl_state "$name")"
done
problems=$(H get events -o json | jq -r '[.items[] | select(.type == "Warning")] | length')
pass "VM gone; no domain on ${names[*]}; $problems warning events in all"
say "xen-lab: passed in $(($(date +%s) - started)) s"
