#!/usr/bin/env bash
# Runs every check CI runs: formatting, clippy, and all tests (against a real etcd).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
cargo test --workspace --doc
# The storage role end to end: a real debootstrapped Debian image booted under QEMU (~4 min).
bash scripts/storage-e2e.sh
# herd on a real Xen 4.17 host booted in QEMU/TCG: one host, a PV guest's whole life through
# herd (~2 min, plus ~2 min to build the cached dom0 image the first time; docs/xen.md).
bash tests/xen-lab/run.sh
# The README's first command, as a newcomer runs it: the lab and the seed's demo (fails unless
# exactly one VM moves), in a lab directory of its own; then down --purge. Then the same demo
# with real QEMU guests (HERD_LAB_DRIVER=qemu), in another lab directory.
lab=$(mktemp -d)
down() { HERD_LAB=$lab/$1 HERD_CONTEXT=$lab/$1.context.yaml bash scripts/lab.sh down --purge; }
trap 'down sim >/dev/null 2>&1 || true; down qemu >/dev/null 2>&1 || true; rm -rf "$lab"' EXIT
HERD_LAB=$lab/sim HERD_CONTEXT=$lab/sim.context.yaml bash scripts/lab.sh
down sim
HERD_LAB=$lab/qemu HERD_CONTEXT=$lab/qemu.context.yaml HERD_LAB_DRIVER=qemu bash scripts/lab.sh
down qemu
