#!/usr/bin/env bash
# End-to-end test of the storage role (docs/storage.md): the volumes of
# manifests/examples/create-domain.yaml go into a real etcd, the storage role builds a Debian
# bookworm image with debootstrap (from the Debian mirror in the host's apt sources), clones it
# for the VM, formats the swap volume and exports both over NBD; QEMU then boots the VM with
# Debian's cloud kernel and the test waits for "domain-1 login:" on the serial console.
#
# Needs root (debootstrap chroots) and the network path to the Debian mirror. Installs what is
# missing with apt. Takes about two minutes here (see docs/storage.md for the measured times).
#
#   sudo scripts/storage-e2e.sh
#   HERD_STORAGE_E2E_DIR=/var/tmp/herd-e2e sudo -E scripts/storage-e2e.sh   # keep the base image
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "storage-e2e.sh: run as root: debootstrap needs it for its chroot" >&2
  exit 1
fi

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
have debootstrap || need+=(debootstrap)
have mkfs.ext4 || need+=(e2fsprogs)
have ssh-keygen || need+=(openssh-client)
have qemu-nbd || need+=(qemu-utils)
have qemu-system-x86_64 || need+=(qemu-system-x86)
have etcd || need+=(etcd-server)
compgen -G "/boot/vmlinuz-*-cloud-amd64" >/dev/null || need+=(linux-image-cloud-amd64)
if ((${#need[@]})); then
  echo "storage-e2e.sh: installing ${need[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

started=$(date +%s)
cargo test -p herd-agent --test storage -- --ignored --nocapture \
  a_debootstrap_image_boots_to_multi_user_with_its_hostname
echo "storage-e2e.sh: passed in $(($(date +%s) - started)) s"
