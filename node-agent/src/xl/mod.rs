//! The `xl` driver: herd's [`Hypervisor`](crate::hypervisor::Hypervisor) on Xen, through Xen's
//! own toolstack command `xl` (the successor of the seed's `xm`).
//!
//! It renders an `xl.cfg` per domain ([`config`]), runs `xl create`, `pause`, `unpause`,
//! `shutdown`, `destroy` and `migrate` through one command runner ([`runner`]), attaches NBD
//! disks with `nbd-client` ([`nbd`]), and reads `xl list`, `xl list -l`, `xl vcpu-list` and
//! `xl info` with pure parsers ([`list`], [`list_long`], [`vcpu_list`], [`info`]). `xentop -b`
//! has a parser too ([`xentop`]), for an optional cross-check (`XlDriver::xentop`).
//!
//! Xen cannot run on the machines herd is developed on. This driver is built for real and
//! tested against output written in the Xen 4.17 formats (`tests/fixtures/xl/`) and a fake `xl`
//! script (`tests/xl_contract.rs`), not against a live Xen host: see `docs/xen.md`.

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

pub use config::{ConfigError, GuestType, LifecycleAction, RenderOptions};
pub use driver::XlDriver;
pub use runner::{CommandLine, CommandOutput, RunError, Runner};
pub use settings::XlSettings;
