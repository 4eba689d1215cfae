#!/usr/bin/env bash
# Runs a command in a fresh clone of HEAD inside a clean Debian 12 root: a machine that has only
# what a new machine of this project's kind starts with (docs/clean-room.md). A step missing from
# the project's own install scripts fails here, not on a newcomer's machine — this machine keeps
# every package anybody ever installed on it, a new one does not.
#
#   bash scripts/clean-room.sh bash scripts/lab.sh     the README's first command, from nothing
#   bash scripts/clean-room.sh bash .ci/run            the README's second command, from nothing
#   bash scripts/clean-room.sh --shell                 a shell in a fresh clean root, to look around
#
# Run as root, from inside the repository; the clone is of HEAD (commit first: uncommitted
# changes are not in it). The base root is built once with debootstrap (minbase, a few minutes)
# and cached in $HERD_CLEAN_ROOM_CACHE (default /var/cache/herd-clean-room); each run gets a
# throwaway overlay on top of it, with /dev, /proc and /sys bound in (KVM and network namespaces
# work), the Rust toolchain and cargo-nextest bound read-only, and the machine's CA bundle copied
# in. Crates are fetched afresh into the run's own CARGO_HOME. Processes the command leaves
# running (a lab that stays up) are killed when it ends. Exit status: the command's.
set -euo pipefail

repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
cache=${HERD_CLEAN_ROOM_CACHE:-/var/cache/herd-clean-room}
base=$cache/bookworm
mirror=http://deb.debian.org/debian
# What a new machine of this kind has before any project script runs (beyond minbase), and
# nothing more: no etcd, no protobuf, no qemu-system, no debootstrap, no C headers.
base_packages=gcc,git,python3,curl,ca-certificates,iproute2,qemu-utils,procps

say() { echo "clean-room: $*" >&2; }
[ "$(id -u)" = 0 ] || { say "run as root (debootstrap, chroot and mounts need it)"; exit 2; }
[ $# -gt 0 ] || { say "usage: $0 CMD... | --shell"; exit 2; }

build_base() {
  [ -f "$base/.complete" ] && return
  if ! command -v debootstrap >/dev/null && [ ! -x /usr/sbin/debootstrap ]; then
    say "installing debootstrap (to build the clean root)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null
  fi
  say "building the clean Debian 12 root once (a few minutes) in $base"
  rm -rf "$base"
  mkdir -p "$base"
  if ! PATH=/usr/sbin:/sbin:$PATH debootstrap --variant=minbase --include="$base_packages" \
    bookworm "$base" "$mirror" >"$cache/debootstrap.log" 2>&1; then
    tail -20 "$cache/debootstrap.log" >&2
    say "debootstrap failed (log: $cache/debootstrap.log)"
    exit 2
  fi
  cat >"$base/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  touch "$base/.complete"
}

# The run's writable layer. overlayfs cannot use another overlay as its upper layer, so inside
# a clean root (or any overlay root) the layer goes on a tmpfs.
make_run_dir() {
  run=$(mktemp -d /var/tmp/herd-clean-room.XXXXXX)
  if [ "$(stat -f -c %T /var/tmp)" = overlayfs ]; then
    mount -t tmpfs -o size=20g tmpfs "$run"
    mounts+=("$run")
  fi
  mkdir -p "$run/upper" "$run/work" "$run/root"
}

mount_root() {
  local root=$run/root toolchain
  mount -t overlay overlay -o "lowerdir=$base,upperdir=$run/upper,workdir=$run/work" "$root"
  mounts+=("$root")
  for dir in dev proc sys; do
    mount --rbind "/$dir" "$root/$dir"
    mount --make-rslave "$root/$dir"
    mounts+=("$root/$dir")
  done
  toolchain=${RUSTUP_HOME:-$HOME/.rustup}
  mkdir -p "$root/opt/rustup" "$root/opt/cargo-bin" "$root/work"
  mount --bind -o ro "$toolchain" "$root/opt/rustup"
  mounts+=("$root/opt/rustup")
  mount --bind -o ro "${CARGO_HOME:-$HOME/.cargo}/bin" "$root/opt/cargo-bin"
  mounts+=("$root/opt/cargo-bin")
  # cargo-nextest comes with this kind of machine, beside the toolchain.
  if nextest=$(command -v cargo-nextest); then
    touch "$root/usr/local/bin/cargo-nextest"
    mount --bind -o ro "$nextest" "$root/usr/local/bin/cargo-nextest"
    mounts+=("$root/usr/local/bin/cargo-nextest")
  fi
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  # The machine's certificate authorities: registries may be reached through them.
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  cp /usr/local/share/ca-certificates/* "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
}

# The project at HEAD, and the shared folder beside it (the CPU traces tests read).
clone_project() {
  local root=$run/root
  if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then
    say "note: uncommitted changes are not in the clone (it is of HEAD)"
  fi
  git clone -q "$repo" "$root/work/herd"
  if [ -d "$repo/../shared" ]; then
    cp -r "$repo/../shared" "$root/work/shared"
    chmod -R a-w "$root/work/shared"
  fi
}

# Kills what the command left running in the root (a lab stays up after lab.sh), unmounts, and
# deletes the run's layer — never through a path that is still mounted (/dev is bound in).
cleanup() {
  local proc i
  if [ -n "${run:-}" ] && [ -d "$run/root" ]; then
    for proc in /proc/[0-9]*; do
      [ "$(readlink "$proc/root" 2>/dev/null)" = "$run/root" ] && kill -9 "${proc#/proc/}" 2>/dev/null
    done
    sleep 1
    # Network namespaces a lab made are bind mounts under the root's /run.
    grep -o " $run/root/[^ ]*" /proc/mounts | sort -r | while read -r mnt; do umount -l "$mnt" 2>/dev/null; done
  fi
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
  [ -n "${run:-}" ] || return 0
  if grep -q " $run" /proc/mounts; then
    say "left $run in place: something under it is still mounted"
    return 0
  fi
  rm -rf "$run/upper" "$run/work"
  rmdir "$run/root" "$run" 2>/dev/null || true
}

mounts=()
run=
trap cleanup EXIT
build_base
make_run_dir
mount_root
clone_project

passenv=()
for var in SSL_CERT_FILE SSL_CERT_DIR CURL_CA_BUNDLE GIT_SSL_CAINFO http_proxy https_proxy no_proxy \
  HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  [ -n "${!var:-}" ] && passenv+=("$var=${!var}")
done
if [ "$1" = --shell ]; then set -- bash -l; fi
say "running '$*' in a fresh clone of HEAD ($(git -C "$repo" rev-parse --short HEAD)) in a clean Debian 12 root"
started=$(date +%s)
set +e
chroot "$run/root" /usr/bin/env -i HOME=/root TERM="${TERM:-dumb}" LANG=C.UTF-8 HERD_CLEAN_ROOM=1 "${passenv[@]}" \
  RUSTUP_HOME=/opt/rustup CARGO_HOME=/root/.cargo \
  RUSTUP_TOOLCHAIN="$(rustup show active-toolchain 2>/dev/null | cut -d' ' -f1)" \
  PATH=/root/.cargo/bin:/opt/cargo-bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  bash -c 'cd /work/herd && exec "$@"' clean-room "$@"
status=$?
set -e
if [ "$status" = 0 ]; then
  say "'$*' passed in a clean root in $(($(date +%s) - started)) s"
else
  say "'$*' FAILED in a clean root (exit $status, after $(($(date +%s) - started)) s): on a new machine it fails the same way; a package the project's scripts do not install is the usual cause (scripts/setup.sh)"
fi
exit "$status"
