//! The `qemu` driver: one daemonized `qemu-system-x86_64` per VM, controlled over QMP.
//!
//! | module          | concept                                                          |
//! | --------------- | ---------------------------------------------------------------- |
//! | [`driver`]      | [`QemuDriver`], the [`crate::hypervisor::Hypervisor`] impl        |
//! | `domains`       | finding, adopting, starting and ending QEMU processes            |
//! | `domain`        | one running QEMU: pid, QMP connection, CPU use                   |
//! | [`run_dir`]     | `<state_dir>/<vm>/`: pid file, QMP socket, serial log, metadata  |
//! | [`command_line`]| the argv, as a pure function                                     |
//! | [`qmp`]         | QMP commands, replies and events as typed values                 |
//! | [`qmp_client`]  | one QMP connection: replies by id, events, size limits           |
//! | [`process`]     | daemonizing, recognising and killing QEMU via `/proc`            |
//! | [`cpu`]         | `/proc` parsing: vCPU thread use and placement, host load, memory |
//! | [`accel`]       | KVM or TCG detection                                              |
//! | [`migration`]   | endpoints, parameters and progress of live migration             |
//!
//! Requirements on the host: `qemu-system-x86` (and `qemu-utils` for NBD exports); for
//! bridged networks, the bridge must exist and be allowed in `/etc/qemu/bridge.conf`.

pub mod accel;
pub mod command_line;
pub mod cpu;
mod domain;
mod domains;
pub mod driver;
pub mod migration;
pub mod process;
pub mod qmp;
pub mod qmp_client;
pub mod run_dir;

pub use accel::{Accel, AccelChoice};
pub use driver::{QemuConfig, QemuDriver};
pub use qmp::RunStatus;
