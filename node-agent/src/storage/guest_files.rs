//! The configuration files herd writes into a guest image (pure: text in, text out).
//!
//! Two kinds:
//!
//! - **Shared** by every VM built from one base image: `/etc/fstab` (root and swap by label, the
//!   root filesystem grown to its volume at boot by `x-systemd.growfs`), `/etc/network/interfaces`
//!   (DHCP on the first NIC, `eth0`, with predictable interface names off), the sshd drop-in that
//!   names the one host key, and `/etc/resolv.conf` (filled by DHCP).
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

/// `/etc/fstab`: root and swap by label; the root grows to its volume at boot.
pub fn fstab() -> String {
    format!(
        "# Written by herd. The root filesystem grows to fill its volume at boot \
         (x-systemd.growfs);\n# the swap volume is optional (nofail).\n\
         LABEL={ROOT_LABEL}\t/\text4\terrors=remount-ro,x-systemd.growfs\t0\t1\n\
         LABEL={SWAP_LABEL}\tnone\tswap\tsw,nofail,x-systemd.device-timeout=10s\t0\t0\n"
    )
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
    format!("# Written by herd: each VM gets its own host key when its volume is made.\nHostKey /{SSH_HOST_KEY}\n")
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
        assert!(fstab.contains("LABEL=herd-root\t/\text4\terrors=remount-ro,x-systemd.growfs\t0\t1"));
        assert!(fstab.contains("LABEL=herd-swap\tnone\tswap\tsw,nofail"));
        assert!(interfaces().contains("allow-hotplug eth0\niface eth0 inet dhcp\n"));
        assert!(sshd_host_key_conf().contains("HostKey /etc/ssh/ssh_host_ed25519_key\n"));
    }
}
