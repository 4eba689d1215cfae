//! Tiny guests for tests: raw disk images whose first sector is a hand-assembled x86 boot sector.
//!
//! The BIOS (SeaBIOS) loads sector 0 of the boot disk at physical `0x7c00` and jumps there in
//! 16-bit real mode. Each guest first sets `DS = 0`, so `[0x500]` below means physical address
//! `0x500` (free conventional memory just above the BIOS data area), and writes
//! [`BOOTED_MAGIC`] at [`BOOTED_ADDRESS`] so a test can tell "booted" from "still in the BIOS"
//! over QMP (`xp /1wx 0x504`). Then:
//!
//! - [`TestGuest::Spin`] disables interrupts and jumps to itself forever: 100 % of a vCPU.
//! - [`TestGuest::Idle`] enables interrupts and halts in a loop: the vCPU sleeps between timer
//!   ticks, ~0 % CPU.
//! - [`TestGuest::Counter`] zeroes the 32-bit word at [`COUNTER_ADDRESS`] and increments it
//!   forever, with a 65 535-iteration delay loop between increments so it does not wrap during
//!   a test. A live-migrated counter guest shows a value at least as high as on the source just
//!   before, where a restarted one would start again from 0.
//!
//! Images are padded to 1 MiB: SeaBIOS derives a CHS geometry from the size and cannot boot a
//! 512-byte disk (0 cylinders). None of these guests reacts to ACPI, so `system_powerdown` is
//! ignored, as a hung guest would.

use std::io;
use std::path::{Path, PathBuf};

use herd_crds::assignment::{DiskSource, DomainDisk, DomainSpec};
use herd_crds::virtual_machine::Boot;

/// Where every guest writes [`BOOTED_MAGIC`] once it runs its own code.
pub const BOOTED_ADDRESS: u64 = 0x504;
/// `0x600DB007`, "good boot".
pub const BOOTED_MAGIC: u32 = 0x600D_B007;
/// Where the counter guest keeps its counter.
pub const COUNTER_ADDRESS: u64 = 0x500;
/// Size of every image.
pub const IMAGE_SIZE: u64 = 1 << 20;
/// Name of the boot disk in [`domain_spec`].
pub const BOOT_DISK: &str = "boot";

/// `xor ax, ax` (31 C0); `mov ds, ax` (8E D8): data segment 0.
const SET_DS_ZERO: [u8; 4] = [0x31, 0xC0, 0x8E, 0xD8];

/// `mov dword [0x504], 0x600DB007`: operand-size prefix 66, opcode C7 /0 with ModRM 06
/// (a 16-bit absolute address follows), address 04 05, immediate 07 B0 0D 60 (little-endian).
const MARK_BOOTED: [u8; 9] = [0x66, 0xC7, 0x06, 0x04, 0x05, 0x07, 0xB0, 0x0D, 0x60];

/// `mov dword [0x500], 0`: as above with address 00 05 and immediate 0.
const ZERO_COUNTER: [u8; 9] = [0x66, 0xC7, 0x06, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00];

/// `cli` (FA); `jmp $` (EB FE: a short jump of -2, to itself).
const SPIN: [u8; 3] = [0xFA, 0xEB, 0xFE];

/// `sti` (FB); `hlt` (F4); `jmp` back to the `hlt` (EB FD: -3 from the end of the jump).
const IDLE: [u8; 4] = [0xFB, 0xF4, 0xEB, 0xFD];

/// `cli` (FA), then the loop:
/// `inc dword [0x500]` (66 FF 06 00 05: FF /0 with ModRM 06, address 0x500);
/// `mov cx, 0xFFFF` (B9 FF FF);
/// `loop $` (E2 FE: decrement CX, jump to itself while CX is not 0);
/// `jmp` back to the `inc` (EB F4: -12 = the 5 + 3 + 2 + 2 bytes of the loop).
const COUNT: [u8; 13] = [
    0xFA, 0x66, 0xFF, 0x06, 0x00, 0x05, 0xB9, 0xFF, 0xFF, 0xE2, 0xFE, 0xEB, 0xF4,
];

/// Keeps rewriting the 576 KiB from `0x10000` to `0x9FFFF` with a changing 16-bit pattern, so
/// a live migration always finds dirty memory (and never converges under a tight bandwidth):
/// ```text
///        cli                  FA
///        cld                  FC
///        xor  bx, bx          31 DB
/// again: inc  bx              43         ; the next pattern
///        mov  dx, 0x1000      BA 00 10   ; first segment
/// seg:   mov  es, dx          8E C2
///        xor  di, di          31 FF
///        mov  ax, bx          89 D8
///        mov  cx, 0x8000      B9 00 80   ; 32 Ki words = 64 KiB
///        rep  stosw           F3 AB
///        add  dx, 0x1000      81 C2 00 10
///        cmp  dx, 0xA000      81 FA 00 A0
///        jb   seg             72 EB      ; 8 - 29 = -21
///        jmp  again           EB E5      ; 4 - 31 = -27
/// ```
const DIRTY: [u8; 31] = [
    0xFA, 0xFC, 0x31, 0xDB, 0x43, 0xBA, 0x00, 0x10, 0x8E, 0xC2, 0x31, 0xFF, 0x89, 0xD8, 0xB9, 0x00,
    0x80, 0xF3, 0xAB, 0x81, 0xC2, 0x00, 0x10, 0x81, 0xFA, 0x00, 0xA0, 0x72, 0xEB, 0xEB, 0xE5,
];

/// The test guests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestGuest {
    Spin,
    Idle,
    Counter,
    /// Dirties 576 KiB of memory continuously (for migration timeouts and benchmarks).
    Dirty,
}

impl TestGuest {
    pub fn name(self) -> &'static str {
        match self {
            Self::Spin => "spin",
            Self::Idle => "idle",
            Self::Counter => "counter",
            Self::Dirty => "dirty",
        }
    }

    /// The guest's machine code, as loaded at `0x7c00`.
    pub fn code(self) -> Vec<u8> {
        match self {
            Self::Spin => [&SET_DS_ZERO[..], &MARK_BOOTED, &SPIN].concat(),
            Self::Idle => [&SET_DS_ZERO[..], &MARK_BOOTED, &IDLE].concat(),
            Self::Counter => [&SET_DS_ZERO[..], &ZERO_COUNTER, &MARK_BOOTED, &COUNT].concat(),
            Self::Dirty => [&SET_DS_ZERO[..], &MARK_BOOTED, &DIRTY].concat(),
        }
    }

    /// The 512-byte boot sector: the code, zeros, and the `55 AA` signature the BIOS checks.
    pub fn boot_sector(self) -> [u8; 512] {
        let mut sector = [0u8; 512];
        let code = self.code();
        sector[..code.len()].copy_from_slice(&code);
        sector[510] = 0x55;
        sector[511] = 0xAA;
        sector
    }

    /// Writes `<dir>/<name>.img` (the boot sector padded to [`IMAGE_SIZE`]) and returns its path.
    pub fn write_image(self, dir: &Path) -> io::Result<PathBuf> {
        let path = dir.join(format!("{}.img", self.name()));
        let mut image = vec![0u8; IMAGE_SIZE as usize];
        image[..512].copy_from_slice(&self.boot_sector());
        std::fs::write(&path, image)?;
        Ok(path)
    }
}

/// A one-vCPU, 32 MiB domain booting from `disk` (read-only: the guests never write it).
pub fn domain_spec(name: &str, uid: &str, disk: DiskSource) -> DomainSpec {
    DomainSpec {
        name: name.to_string(),
        uid: uid.to_string(),
        vcpus: 1,
        memory_mib: 32,
        boot: Boot {
            disk: Some(BOOT_DISK.to_string()),
            ..Boot::default()
        },
        disks: vec![DomainDisk {
            name: BOOT_DISK.to_string(),
            source: disk,
            target: None,
            read_only: true,
        }],
        networks: Vec::new(),
        migration: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use herd_crds::Validate;

    use super::*;

    const ALL: [TestGuest; 3] = [TestGuest::Spin, TestGuest::Idle, TestGuest::Counter];

    #[test]
    fn boot_sectors_carry_the_signature_and_fit() {
        for guest in ALL {
            let sector = guest.boot_sector();
            assert_eq!(&sector[510..], [0x55, 0xAA], "{guest:?}");
            // The code stays clear of the partition table at 446.
            assert!(guest.code().len() < 446);
            assert_eq!(&sector[..4], SET_DS_ZERO);
        }
    }

    #[test]
    fn the_magic_is_stored_little_endian() {
        assert_eq!(
            u32::from_le_bytes([
                MARK_BOOTED[5],
                MARK_BOOTED[6],
                MARK_BOOTED[7],
                MARK_BOOTED[8]
            ]),
            BOOTED_MAGIC
        );
        assert_eq!(
            u16::from_le_bytes([MARK_BOOTED[3], MARK_BOOTED[4]]) as u64,
            BOOTED_ADDRESS
        );
        assert_eq!(
            u16::from_le_bytes([COUNT[4], COUNT[5]]) as u64,
            COUNTER_ADDRESS
        );
    }

    #[test]
    fn backward_jumps_land_where_the_comments_say() {
        // A short jump's target is the address after it plus the signed offset.
        let target =
            |code: &[u8], at: usize| (at as isize + 2 + code[at + 1] as i8 as isize) as usize;
        let spin = TestGuest::Spin.code();
        assert_eq!(target(&spin, spin.len() - 2), spin.len() - 2);
        let idle = TestGuest::Idle.code();
        assert_eq!(
            idle[target(&idle, idle.len() - 2)],
            0xF4,
            "jumps back to hlt"
        );
        let counter = TestGuest::Counter.code();
        let inc = counter.len() - 12;
        assert_eq!(&counter[inc..inc + 3], [0x66, 0xFF, 0x06]);
        assert_eq!(
            target(&counter, counter.len() - 2),
            inc,
            "jumps back to inc"
        );
        assert_eq!(
            target(&counter, counter.len() - 4),
            counter.len() - 4,
            "loop $"
        );
    }

    #[test]
    fn images_are_padded_and_specs_validate() {
        let dir = tempfile::tempdir().unwrap();
        let path = TestGuest::Counter.write_image(dir.path()).unwrap();
        let image = std::fs::read(&path).unwrap();
        assert_eq!(image.len() as u64, IMAGE_SIZE);
        assert_eq!(&image[..512], TestGuest::Counter.boot_sector());
        let spec = domain_spec(
            "counter-1",
            "u-1",
            DiskSource::Path(path.display().to_string()),
        );
        assert!(spec.validate().is_empty(), "{:?}", spec.validate());
    }
}
