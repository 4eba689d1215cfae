#!/usr/bin/env bash
# Builds (once) the Xen lab's dom0 disk image and the files QEMU boots it from, in the cache
# directory ($HERD_XEN_LAB_CACHE, default ${XDG_CACHE_HOME:-$HOME/.cache}/herd/xen-lab):
#
#   rootfs/           a Debian bookworm tree made with debootstrap: Xen 4.17's hypervisor and
#                     tools, Debian's dom0-capable kernel (linux-image-amd64), nbd-client,
#                     openssh, busybox-static, and the lab's units from tests/xen-lab/dom0/
#   dom0.img          that tree as an ext4 disk image (raw), the hosts' shared backing file
#   xen               the hypervisor, gunzipped from /boot/xen-4.17-amd64.gz (QEMU's -kernel
#                     loads it as a multiboot kernel)
#   vmlinuz, initrd   the dom0 kernel and its initramfs
#   lab_key           the ssh key the host and the dom0s use to reach each other (also the key
#                     `xl migrate` uses between the two dom0s)
#
# Nothing of herd goes into the image: the agent binary reaches the dom0s through a 9p share
# at boot, so a rebuilt agent needs no new image. Needs root (debootstrap chroots). Run by
# tests/xen-lab/run.sh; delete the cache directory (or set HERD_XEN_LAB_REBUILD=1) to rebuild.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${HERD_XEN_LAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/herd/xen-lab}
mirror=${HERD_XEN_LAB_MIRROR:-http://deb.debian.org/debian}
packages=systemd-sysv,udev,kmod,iproute2,procps,e2fsprogs,ca-certificates,xen-utils-4.17,xen-hypervisor-4.17-amd64,linux-image-amd64,nbd-client,busybox-static,cpio,openssh-server,openssh-client,netcat-openbsd,bridge-utils

log() { printf 'build-image: %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "build-image.sh: run as root: debootstrap needs it for its chroot" >&2
  exit 1
fi
mkdir -p "$cache"
if [ "${HERD_XEN_LAB_REBUILD:-0}" = 1 ]; then
  rm -rf "$cache/rootfs" "$cache/dom0.img" "$cache/image.stamp"
fi

# The stamp names the inputs: a changed unit or package list rebuilds the image.
stamp=$( (echo "$packages"; cat "$here/build-image.sh" "$here"/dom0/*) | sha256sum | cut -c1-16)
if [ -f "$cache/image.stamp" ] && [ "$(cat "$cache/image.stamp")" = "$stamp" ] \
  && [ -f "$cache/dom0.img" ] && [ -f "$cache/xen" ]; then
  log "cached image $cache/dom0.img is up to date"
  exit 0
fi

rootfs=$cache/rootfs
if [ ! -f "$rootfs/.herd-debootstrap-done" ]; then
  log "debootstrap bookworm into $rootfs (a few minutes)"
  rm -rf "$rootfs.tmp"
  debootstrap --variant=minbase --include="$packages" bookworm "$rootfs.tmp" "$mirror" \
    >"$cache/debootstrap.log" 2>&1 || {
    tail -20 "$cache/debootstrap.log" >&2
    exit 1
  }
  rm -rf "$rootfs"
  mv "$rootfs.tmp" "$rootfs"
  touch "$rootfs/.herd-debootstrap-done"
fi

in_root() { chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

# Packages added to the list after the tree was made.
missing=()
for p in ${packages//,/ }; do
  in_root dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  mount --bind /proc "$rootfs/proc"
  trap 'umount "$rootfs/proc" 2>/dev/null || true' EXIT
  in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    "${missing[@]}" >"$cache/apt.log" 2>&1 || {
    tail -20 "$cache/apt.log" >&2
    exit 1
  }
  umount "$rootfs/proc"
  trap - EXIT
fi

log "configuring dom0"
echo xen-lab >"$rootfs/etc/hostname"
# Each host makes its own machine id at first boot (the hosts share this image).
: >"$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >"$rootfs/etc/fstab"
printf 'nbd\n9p\n9pnet_virtio\n' >"$rootfs/etc/modules-load.d/herd-lab.conf"
printf 'options nbd nbds_max=16\n' >"$rootfs/etc/modprobe.d/herd-lab-nbd.conf"
in_root passwd -d root >/dev/null
# A root shell on the console, for looking around (the serial log shows it).
mkdir -p "$rootfs/etc/systemd/system/serial-getty@hvc0.service.d"
cat >"$rootfs/etc/systemd/system/serial-getty@hvc0.service.d/autologin.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --keep-baud 115200,38400,9600 %I $TERM
EOF
# Guests' memory comes from Xen's free pool, not from ballooning dom0 down (docs/xen.md).
sed -i 's/^#\?autoballoon=.*/autoballoon="off"/' "$rootfs/etc/xen/xl.conf"
grep -q '^autoballoon=' "$rootfs/etc/xen/xl.conf" || echo 'autoballoon="off"' >>"$rootfs/etc/xen/xl.conf"
# Nothing saves or restores domains at shutdown: the lab's domains are herd's.
in_root systemctl enable xen.service >/dev/null 2>&1 || true
in_root systemctl disable xendomains.service >/dev/null 2>&1 || true
in_root systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
  fstrim.timer getty@.service >/dev/null 2>&1 || true
# xenconsoled keeps each guest's console in /var/log/xen/console/guest-NAME.log.
sed -i '/^XENCONSOLED_ARGS=/d' "$rootfs/etc/default/xen"
echo 'XENCONSOLED_ARGS="--log=guest"' >>"$rootfs/etc/default/xen"
mkdir -p "$rootfs/var/log/xen/console"

# ssh between the host and the dom0s, and from dom0 to dom0 for `xl migrate` (its default
# transport is ssh). One key for the whole lab; host keys are not checked.
[ -f "$cache/lab_key" ] || ssh-keygen -q -t ed25519 -N '' -C herd-xen-lab -f "$cache/lab_key"
install -d -m 700 "$rootfs/root/.ssh"
install -m 600 "$cache/lab_key" "$rootfs/root/.ssh/id_ed25519"
install -m 644 "$cache/lab_key.pub" "$rootfs/root/.ssh/id_ed25519.pub"
install -m 600 "$cache/lab_key.pub" "$rootfs/root/.ssh/authorized_keys"
cat >"$rootfs/root/.ssh/config" <<'EOF'
Host *
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    BatchMode yes
    LogLevel ERROR
    Ciphers chacha20-poly1305@openssh.com,aes128-ctr
EOF
printf 'UseDNS no\n' >"$rootfs/etc/ssh/sshd_config.d/herd-lab.conf"

# The lab's own units: network and share (herd-lab-setup), then the agent.
install -m 755 "$here/dom0/herd-lab-setup" "$rootfs/usr/local/sbin/herd-lab-setup"
install -m 644 "$here/dom0/herd-lab-setup.service" "$rootfs/etc/systemd/system/"
install -m 644 "$here/dom0/herd-agent.service" "$rootfs/etc/systemd/system/"
in_root systemctl enable herd-lab-setup.service herd-agent.service >/dev/null 2>&1

# The lab guest: Debian's kernel (PV-capable) and a busybox initramfs whose init says hello on
# the console and powers off when Xen asks it to.
guest=$(mktemp -d)
mkdir -p "$guest"/{bin,sbin,etc,proc,sys,dev}
mknod -m 600 "$guest/dev/console" c 5 1
mknod -m 666 "$guest/dev/null" c 1 3
cp "$rootfs/bin/busybox" "$guest/bin/busybox"
for applet in sh mount echo sleep cat poweroff reboot halt init uname; do
  ln -s busybox "$guest/bin/$applet"
done
ln -s ../bin/busybox "$guest/sbin/init"
ln -s ../bin/busybox "$guest/sbin/poweroff"
cat >"$guest/etc/inittab" <<'EOF'
::sysinit:/bin/mount -t proc proc /proc
::sysinit:/bin/mount -t sysfs sys /sys
::sysinit:/bin/echo "herd-lab-guest: up on $(/bin/uname -r)"
::respawn:/bin/sleep 3600
::shutdown:/bin/echo "herd-lab-guest: powering off"
EOF
ln -s sbin/init "$guest/init"
mkdir -p "$rootfs/var/lib/herd-lab"
(cd "$guest" && find . | cpio -o -H newc --quiet | gzip -9) >"$rootfs/var/lib/herd-lab/guest-initrd.gz"
rm -rf "$guest"
kernel=$(cd "$rootfs/boot" && ls vmlinuz-*-amd64 | grep -v cloud | sort -V | tail -1)
cp "$rootfs/boot/$kernel" "$rootfs/var/lib/herd-lab/guest-vmlinuz"

log "extracting Xen and the dom0 kernel"
gunzip -c "$rootfs/boot/xen-4.17-amd64.gz" >"$cache/xen"
cp "$rootfs/boot/$kernel" "$cache/vmlinuz"
cp "$rootfs/boot/initrd.img-${kernel#vmlinuz-}" "$cache/initrd"

log "making the ext4 image"
rm -f "$cache/dom0.img"
truncate -s 3G "$cache/dom0.img"
mkfs.ext4 -q -F -L herd-dom0 -d "$rootfs" "$cache/dom0.img"
echo "$stamp" >"$cache/image.stamp"
log "done: $cache/dom0.img ($(du -sh "$cache/dom0.img" | cut -f1) used)"
