#!/usr/bin/env bash
# Runs every check CI runs: formatting, clippy, all tests (against a real etcd), the end-to-end
# scripts, both demos, and the README's first command in a clean Debian 12 root. Prints how long
# each stage took at the end (docs/clean-room.md keeps the measured times).
set -euo pipefail
cd "$(dirname "$0")/.."

times=()
current=
stage() {
  current=$1
  shift
  printf '\n\033[1m== test.sh: %s\033[0m\n' "$current"
  local started
  started=$(date +%s)
  "$@"
  times+=("$(printf '%6s s  %s' $(($(date +%s) - started)) "$current")")
  current=
}
report() {
  echo
  echo "test.sh: stage times"
  ((${#times[@]} == 0)) || printf '  %s\n' "${times[@]}"
  [ -z "$current" ] || echo "  FAILED  $current"
}

tests() {
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
  else
    cargo test --workspace --no-fail-fast
  fi
  cargo test --workspace --doc
}

# The README's first command, as a newcomer runs it: the lab and the seed's demo (fails unless
# exactly one VM moves), in a lab directory of its own; then down --purge. Then the same demo
# with real QEMU guests (HERD_LAB_DRIVER=qemu), in another lab directory.
lab=$(mktemp -d)
lab_down() { HERD_LAB=$lab/$1 HERD_CONTEXT=$lab/$1.context.yaml bash scripts/lab.sh down --purge; }
lab_demo() {
  HERD_LAB=$lab/$1 HERD_CONTEXT=$lab/$1.context.yaml HERD_LAB_DRIVER=$1 bash scripts/lab.sh
  lab_down "$1"
}
trap 'lab_down sim >/dev/null 2>&1 || true; lab_down qemu >/dev/null 2>&1 || true; rm -rf "$lab"; report' EXIT

# The README's first command once more, from nothing: a fresh clone of HEAD in a clean Debian 12
# root with only what a new machine has, so that a package missing from scripts/setup.sh fails
# here and not on a newcomer's machine (this machine keeps what anybody installed). Inside a
# clean root already (HERD_CLEAN_ROOM), the whole run is that check, so it is not nested.
clean_room_lab() {
  if [ -n "${HERD_CLEAN_ROOM:-}" ]; then
    echo "test.sh: already in a clean root: the stages above were run from nothing"
  else
    bash scripts/clean-room.sh bash scripts/lab.sh
  fi
}

stage "install (scripts/setup.sh)" bash scripts/setup.sh
stage "cargo fmt --check" cargo fmt --all --check
stage "cargo clippy -D warnings" cargo clippy --workspace --all-targets -- -D warnings
stage "unit and integration tests" tests
# The storage role end to end: a real debootstrapped Debian image booted under QEMU.
stage "storage end to end (scripts/storage-e2e.sh)" bash scripts/storage-e2e.sh
# herd on a real Xen 4.17 host booted in QEMU/TCG: one host, a PV guest's whole life through
# herd (plus building the cached dom0 image the first time; docs/xen.md).
stage "Xen lab (tests/xen-lab/run.sh)" bash tests/xen-lab/run.sh
stage "lab and seed demo, simulated hosts" lab_demo sim
stage "lab and demo, QEMU guests" lab_demo qemu
stage "lab and seed demo in a clean root (scripts/clean-room.sh)" clean_room_lab
