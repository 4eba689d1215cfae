#!/usr/bin/env bash
# Installs what herd's build, tests and lab need on a Debian 12 machine (run as root), then
# checks that every file they rely on is really there — not only that a command is on PATH — and
# fails with a sentence naming the Debian package that should have brought a missing one.
# Idempotent: packages already present are not fetched again.
#
# What a new machine is assumed to have already (README, "Two commands"): Debian 12 or the
# like, root, a Rust toolchain (cargo, rustc, rustfmt, clippy). Everything else comes from here.
set -euo pipefail

# One line per need: the Debian package, then the files of it that herd's build, tests or lab
# use (globs allowed). A package is installed when it is absent or any of its files is missing.
needs=(
  # etcd-client's build script runs protoc, which needs the well-known .proto files.
  "protobuf-compiler      /usr/bin/protoc"
  "libprotobuf-dev        /usr/include/google/protobuf/descriptor.proto /usr/include/google/protobuf/timestamp.proto"
  # Crates that compile C (ring, libc's build checks) and the linker.
  "gcc                    /usr/bin/cc"
  "libc6-dev              /usr/include/stdio.h"
  "pkg-config             /usr/bin/pkg-config"
  # The store: every test and the lab start their own etcd; some tests read it with etcdctl.
  "etcd-server            /usr/bin/etcd"
  "etcd-client            /usr/bin/etcdctl"
  # The qemu driver and the storage role.
  "qemu-system-x86        /usr/bin/qemu-system-x86_64"
  "qemu-system-data       /usr/share/qemu/kvmvapic.bin"
  "seabios                /usr/share/seabios/bios-256k.bin"
  "qemu-utils             /usr/bin/qemu-img /usr/bin/qemu-nbd /usr/bin/qemu-io"
  "e2fsprogs              /usr/sbin/mkfs.ext4"
  "debootstrap            /usr/sbin/debootstrap /usr/share/debootstrap/scripts/bookworm"
  "debian-archive-keyring /usr/share/keyrings/debian-archive-keyring.gpg"
  "linux-image-cloud-amd64 /boot/vmlinuz-*-cloud-amd64"
  "openssh-client         /usr/bin/ssh /usr/bin/ssh-keygen"
  # herdctl up --netns and the multi-host tests: network namespaces, bridges, veth pairs.
  "iproute2               /usr/bin/ip /usr/sbin/bridge"
  "procps                 /usr/bin/pkill /usr/bin/ps"
  # The Xen lab (tests/xen-lab) reads xl's JSON and serves its dom0 files.
  "jq                     /usr/bin/jq"
  "cpio                   /usr/bin/cpio"
  "python3                /usr/bin/python3"
  "xz-utils               /usr/bin/xz"
  # GitOps tests serve repositories with git http-backend and fetch file:// with upload-pack.
  "git                    /usr/bin/git /usr/lib/git-core/git-http-backend /usr/lib/git-core/git-upload-pack"
  "ca-certificates        /etc/ssl/certs/ca-certificates.crt"
)

# Prints the files of a need that are not on this machine.
missing_files() {
  local pattern
  for pattern in "$@"; do
    compgen -G "$pattern" >/dev/null || printf '%s\n' "$pattern"
  done
}

packages_to_install() {
  local line package files
  for line in "${needs[@]}"; do
    read -r package files <<<"$line"
    # shellcheck disable=SC2086 # the file list is split on purpose
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
      [ -n "$(missing_files $files)" ]; then
      printf '%s\n' "$package"
    fi
  done
}

# Two rounds: apt may remove a package to install another. A new machine of this kind comes with
# qemu-utils 10.0 (a backport); installing bookworm's qemu-system-x86 7.2 removes it, and the
# second round installs bookworm's qemu-utils 7.2 to match.
export DEBIAN_FRONTEND=noninteractive
updated=
for _round in 1 2; do
  mapfile -t install < <(packages_to_install)
  ((${#install[@]})) || break
  echo "setup: installing ${install[*]}"
  [ -n "$updated" ] || { apt-get update -q; updated=1; }
  apt-get install -y -q --no-install-recommends "${install[@]}"
done

# Debian's etcd-server starts a system etcd on the default ports; herd's tests and lab run
# their own on free ports, so the system one is not needed.
if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl stop etcd || true
fi

failed=0
for line in "${needs[@]}"; do
  read -r package files <<<"$line"
  # shellcheck disable=SC2086
  while IFS= read -r file; do
    [ -n "$file" ] || continue
    echo "setup: $file is missing: it comes with the Debian package $package (apt-get install -y $package)" >&2
    failed=1
  done < <(missing_files $files)
done
for tool in cargo rustc rustfmt cargo-clippy; do
  command -v "$tool" >/dev/null || {
    echo "setup: $tool is missing: install a Rust toolchain with rustup (https://rustup.rs), components rustfmt and clippy" >&2
    failed=1
  }
done
exit "$failed"
