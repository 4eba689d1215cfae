#!/usr/bin/env bash
# Installs what herd's build, tests and lab need on a Debian 12 machine (run as root).
# Idempotent: packages already present are not fetched again.
set -euo pipefail

packages=(etcd-server etcd-client protobuf-compiler qemu-system-x86 qemu-utils e2fsprogs openssh-client debootstrap linux-image-cloud-amd64)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Debian's etcd-server starts a system etcd on the default ports; herd's tests and lab run
# their own on free ports, so the system one is not needed.
if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl stop etcd || true
fi
for tool in etcd etcdctl protoc cargo; do
  command -v "$tool" >/dev/null || { echo "setup: $tool is still missing" >&2; exit 1; }
done
