//! The configuration files herd writes into a guest image (pure: text in, text out).
//!
//! Two kinds:
//!
//! - **Shared** by every VM built from one base image: `/etc/fstab` (the root by label, grown to
//!   its volume at boot by `x-systemd.growfs`), a systemd swap unit for the volume labelled
//!   `herd-swap`, a unit that reports the end of boot on the console, `/etc/network/interfaces` (DHCP on the first NIC, `eth0`, with predictable
//!   interface names off), the sshd drop-in that names the one host key, and `/etc/resolv.conf`
//!   (filled by DHCP).
//! - **Per VM**, written into fixed-size *slots*: `/etc/hostname`, `/etc/hosts`,
//!   `/etc/machine-id` and the SSH host key pair. The base image holds a placeholder of each
//!   slot's exact size; a clone overwrites the placeholder's data block in place (see `patch.rs`),
//!   which needs no mount and leaves the filesystem's metadata untouched. Text files are padded to
//!   their slot with `#` comment lines, which hostname(5) and hosts(5) ignore.

use serde::{Deserialize, Serialize};

/// Label of a root filesystem herd built.
pub const ROOT_LABEL: &str = "herd-root";
/// Label of a swap volume herd formatted.
pub const SWAP_LABEL: &str = "herd-swap";
/// The filesystem block size herd builds with; a slot must fit one block.
pub const BLOCK_SIZE: u64 = 4096;
/// Comment of every SSH host key (a fixed comment keeps the key files' sizes fixed).
pub const SSH_KEY_COMMENT: &str = "root@herd-guest";
/// Where the per-VM host key lives in the guest.
pub const SSH_HOST_KEY: &str = "etc/ssh/ssh_host_ed25519_key";

/// A fixed-size per-VM file: its path relative to the guest's root, size and mode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub path: String,
    pub size: u64,
    pub mode: u32,
}

impl Slot {
    pub fn new(path: &str, size: u64, mode: u32) -> Self {
        Self {
            path: path.to_owned(),
            size,
            mode,
        }
    }
}

/// The text slots every image has.
pub fn text_slots() -> Vec<Slot> {
    vec![
        Slot::new("etc/hostname", 512, 0o644),
        Slot::new("etc/hosts", 1024, 0o644),
        Slot::new("etc/machine-id", 33, 0o444),
    ]
}

/// The SSH host key slots, sized after a key `ssh-keygen` made with [`SSH_KEY_COMMENT`].
pub fn ssh_slots(private_size: u64, public_size: u64) -> Vec<Slot> {
    vec![
        Slot::new(SSH_HOST_KEY, private_size, 0o600),
        Slot::new(&format!("{SSH_HOST_KEY}.pub"), public_size, 0o644),
    ]
}

/// What a slot holds in the base image: recognisable text (never zeros, which `mkfs.ext4 -d`
/// would store as a hole with no block to overwrite), exactly `slot.size` bytes.
pub fn placeholder(slot: &Slot) -> Vec<u8> {
    let mut text = format!("#herd placeholder for /{}#", slot.path).into_bytes();
    text.resize(slot.size as usize - 1, b'#');
    text.push(b'\n');
    text
}

/// `content` padded with `#` comment lines to exactly `size` bytes, or `None` if it is longer.
pub fn pad(content: &str, size: u64) -> Option<Vec<u8>> {
    let size = usize::try_from(size).ok()?;
    let mut out = content.as_bytes().to_vec();
    if out.len() > size {
        return None;
    }
    let note = b"# herd keeps this file at a fixed size so each VM's copy is written in place.\n";
    if size - out.len() > note.len() {
        out.extend_from_slice(note);
    }
    while out.len() < size {
        let room = size - out.len();
        if room == 1 {
            out.push(b'\n');
        } else {
            let line = room.min(64);
            out.extend(std::iter::repeat_n(b'#', line - 1));
            out.push(b'\n');
        }
    }
    Some(out)
}

/// `/etc/hostname`.
pub fn hostname_file(hostname: &str) -> String {
    format!("{hostname}\n")
}

/// `/etc/hosts`, Debian style: the host name on `127.0.1.1` (full name, then short name).
pub fn hosts_file(hostname: &str) -> String {
    let short = hostname.split('.').next().unwrap_or(hostname);
    let names = if short == hostname {
        hostname.to_owned()
    } else {
        format!("{hostname} {short}")
    };
    format!(
        "127.0.0.1\tlocalhost\n127.0.1.1\t{names}\n\n\
         ::1\t\tlocalhost ip6-localhost ip6-loopback\nff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n"
    )
}

/// `/etc/machine-id` from 16 random bytes (32 hex digits; all zeros is not a valid id).
pub fn machine_id(random: [u8; 16]) -> String {
    let mut random = random;
    if random.iter().all(|b| *b == 0) {
        random[15] = 1;
    }
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}\n")
}

/// `/etc/fstab`: the root by label, grown to its volume at boot.
pub fn fstab() -> String {
    format!(
        "# Written by herd. The root filesystem grows to fill its volume at boot \
         (x-systemd.growfs).\n# Swap is not here: {SWAP_UNIT} turns on a swap volume when one is attached.\n\
         LABEL={ROOT_LABEL}\t/\text4\terrors=remount-ro,x-systemd.growfs\t0\t1\n"
    )
}

/// The systemd swap unit for the volume labelled [`SWAP_LABEL`] (its name is its path, escaped).
pub const SWAP_UNIT: &str = "dev-disk-by\\x2dlabel-herd\\x2dswap.swap";

/// `/etc/systemd/system/<SWAP_UNIT>`. It is wanted by the device (a symlink in
/// `<device unit>.wants/`), so swap goes on when the disk shows up, and a VM without a swap
/// volume waits for nothing — unlike an fstab line, which would hold the boot for the device
/// timeout.
pub fn swap_unit() -> String {
    format!(
        "# Written by herd: swap on the volume labelled {SWAP_LABEL}, when it is attached.\n\
         [Unit]\nDescription=herd swap volume\n\n[Swap]\nWhat=/dev/disk/by-label/{SWAP_LABEL}\n"
    )
}

/// Where the symlink that makes the swap device want [`SWAP_UNIT`] goes.
pub fn swap_unit_wants_link() -> String {
    let device = SWAP_UNIT.replace(".swap", ".device");
    format!("etc/systemd/system/{device}.wants/{SWAP_UNIT}")
}

/// The unit that reports on the console that the guest finished booting.
pub const BOOT_DONE_UNIT: &str = "herd-boot-done.service";

/// `/etc/systemd/system/herd-boot-done.service`: once `multi-user.target` is reached, prints
/// `herd: <hostname> reached multi-user.target` on the console. systemd stops printing its own
/// status there once a getty starts on it, which under a slow CPU can be before the target is
/// reached, so this is what an operator (or a test) reading the serial log can rely on.
pub fn boot_done_unit() -> String {
    "# Written by herd: says on the console that the guest finished booting.\n\
     [Unit]\nDescription=Report the end of boot on the console\nAfter=multi-user.target\n\n\
     [Service]\nType=oneshot\nExecStart=/bin/echo \"herd: %H reached multi-user.target\"\n\
     StandardOutput=tty\nTTYPath=/dev/console\n\n\
     [Install]\nWantedBy=multi-user.target\n"
        .to_owned()
}

/// `/etc/network/interfaces`: DHCP on the first NIC (`eth0` once predictable names are off).
pub fn interfaces() -> String {
    "# Written by herd: DHCP on the first NIC. Interfaces keep the kernel's names (eth0 is the\n\
     # first NIC): /etc/systemd/network/99-default.link is masked.\n\
     source /etc/network/interfaces.d/*\n\n\
     auto lo\niface lo inet loopback\n\n\
     allow-hotplug eth0\niface eth0 inet dhcp\n"
        .to_owned()
}

/// `/etc/ssh/sshd_config.d/herd.conf`: the per-VM ed25519 key is the only host key.
pub fn sshd_host_key_conf() -> String {
    format!(
        "# Written by herd: each VM gets its own host key when its volume is made.\nHostKey /{SSH_HOST_KEY}\n"
    )
}

/// `/etc/resolv.conf` of the image (debootstrap leaves the build host's).
pub fn resolv_conf() -> String {
    "# Filled in by the DHCP client at boot.\n".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_reaches_the_exact_size_with_comments() {
        for size in [9, 10, 11, 80, 512, 1024] {
            let padded = pad("small-1\n", size).unwrap();
            assert_eq!(padded.len() as u64, size);
            let text = String::from_utf8(padded).unwrap();
            assert!(text.starts_with("small-1\n"));
            assert!(
                text.lines()
                    .skip(1)
                    .all(|line| line.is_empty() || line.starts_with('#')),
                "{text:?}"
            );
        }
        assert_eq!(pad("small-1\n", 7), None);
        assert_eq!(pad("small-1\n", 8).unwrap(), b"small-1\n");
    }

    #[test]
    fn placeholders_fill_their_slot_and_are_never_zero() {
        for slot in text_slots().into_iter().chain(ssh_slots(399, 97)) {
            let data = placeholder(&slot);
            assert_eq!(data.len() as u64, slot.size);
            assert!(data.iter().all(|b| *b != 0));
            assert!(slot.size <= BLOCK_SIZE, "a slot fits one block");
        }
    }

    #[test]
    fn hosts_names_the_vm_on_127_0_1_1() {
        let hosts = hosts_file("small-1");
        assert!(hosts.contains("127.0.1.1\tsmall-1\n"), "{hosts}");
        assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(hosts_file("web-1.example.org").contains("127.0.1.1\tweb-1.example.org web-1\n"));
        assert!(hosts.len() < 1024);
    }

    #[test]
    fn machine_ids_are_32_hex_digits() {
        let id = machine_id([0xab; 16]);
        assert_eq!(id, format!("{}\n", "ab".repeat(16)));
        assert_eq!(machine_id([0; 16]).len(), 33);
        assert_ne!(machine_id([0; 16]), format!("{}\n", "0".repeat(32)));
    }

    #[test]
    fn fstab_and_network_name_what_the_builder_makes() {
        let fstab = fstab();
        assert!(
            fstab.contains("LABEL=herd-root\t/\text4\terrors=remount-ro,x-systemd.growfs\t0\t1")
        );
        assert!(!fstab.contains("swap\t"), "{fstab}");
        assert_eq!(SWAP_UNIT, r"dev-disk-by\x2dlabel-herd\x2dswap.swap");
        assert!(swap_unit().contains("What=/dev/disk/by-label/herd-swap\n"));
        assert_eq!(
            swap_unit_wants_link(),
            r"etc/systemd/system/dev-disk-by\x2dlabel-herd\x2dswap.device.wants/dev-disk-by\x2dlabel-herd\x2dswap.swap"
        );
        assert!(interfaces().contains("allow-hotplug eth0\niface eth0 inet dhcp\n"));
        assert!(
            boot_done_unit()
                .contains("ExecStart=/bin/echo \"herd: %H reached multi-user.target\"\n")
        );
        assert!(sshd_host_key_conf().contains("HostKey /etc/ssh/ssh_host_ed25519_key\n"));
    }
}
