//! The `xl` driver: herd's [`Hypervisor`](crate::hypervisor::Hypervisor) on Xen, through Xen's
//! own toolstack command `xl` (the successor of the seed's `xm`).
//!
//! It renders an `xl.cfg` per domain ([`config`]), runs `xl create`, `pause`, `unpause`,
//! `shutdown`, `destroy` and `migrate` through one command runner ([`runner`]), attaches NBD
//! disks with `nbd-client` ([`nbd`]), and reads `xl list`, `xl list -l`, `xl vcpu-list` and
//! `xl info` with pure parsers ([`list`], [`list_long`], [`vcpu_list`], [`info`]). `xentop -b`
//! has a parser too ([`xentop`]), for an optional cross-check (`XlDriver::xentop`).
//!
//! The driver runs for real in the Xen lab (`tests/xen-lab/`): Xen 4.17 hosts booted as QEMU
//! guests, where herd creates, pauses, migrates and destroys a PV guest. Its parsers are tested
//! against output captured there (`tests/fixtures/xl/real/`) and against output written in the
//! 4.17 formats (`tests/fixtures/xl/`); `tests/xl_contract.rs` drives it with a fake `xl`
//! script. See `docs/xen.md`.

pub mod commands;
pub mod config;
pub mod cpu;
pub mod driver;
pub mod info;
pub mod list;
pub mod list_long;
pub mod migration;
pub mod nbd;
pub mod observe;
pub mod parse;
pub mod probe;
pub mod runner;
pub mod settings;
pub mod vcpu_list;
pub mod xentop;

#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod real_fixture_tests;

pub use config::{ConfigError, GuestType, LifecycleAction, RenderOptions};
pub use driver::XlDriver;
pub use runner::{CommandLine, CommandOutput, RunError, Runner};
pub use settings::XlSettings;
