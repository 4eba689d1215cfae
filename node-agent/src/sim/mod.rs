//! The `sim` driver: simulated hosts with modelled domains and CPU load, many in one process,
//! for scale tests and balancing experiments. Nothing runs: no guest, no QEMU, no Xen. A
//! simulated host always says so (`driver() == "sim"`, and its `host_info` description starts
//! with "simulated host"), so its numbers are never mistaken for a real machine's.
//!
//! ```
//! use herd_agent::sim::SimFabric;
//!
//! let fabric = SimFabric::new();
//! let ferby = fabric.host("ferby", 2, 4096).unwrap();
//! let gerby = fabric.host("gerby", 4, 8192).unwrap();
//! assert_eq!(ferby.host_name(), "ferby");
//! # let _ = gerby;
//! ```
//!
//! # Choosing a domain's load
//!
//! The `DomainSpec` carries no annotations, so the model is read from tokens of the kernel
//! command line (`spec.boot.cmdline`), which no real guest sees in a simulation:
//!
//! | token                                  | each vCPU demands                                   |
//! | -------------------------------------- | --------------------------------------------------- |
//! | (no `herd.sim.*` token)                | idle: a slow wave between 0% and 1% (60 s period)   |
//! | `herd.sim.load=constant:80`            | 80% of one CPU                                      |
//! | `herd.sim.load=step:10,90,60`          | 10% until the guest has run 60 s, then 90%          |
//! | `herd.sim.load=trace:/abs/path/file`   | a PlanetLab trace, one sample per step, wrapping    |
//! | `herd.sim.step=2`                      | (trace only) seconds per sample; default 300        |
//!
//! Time is the guest's: the seconds the domain has run, which stop while it is paused and
//! move with it in a live migration. See [`load`] for the details and `docs/sim.md` for the
//! whole model.
//!
//! | module          | concept                                                           |
//! | --------------- | ----------------------------------------------------------------- |
//! | [`load`]        | load models and the command-line convention (pure)               |
//! | [`trace`]       | PlanetLab trace files (pure parsing, clear errors)               |
//! | [`cpu`]         | vCPU placement and contention (pure)                             |
//! | [`domain`]      | one domain: state, guest clock, outgoing migration (pure)        |
//! | [`host`]        | [`HostModel`]: one host's domains and CPU accounting (pure)      |
//! | [`fabric`]      | [`FabricModel`]: all hosts, live migration between them (pure)   |
//! | [`driver`]      | [`SimFabric`] and [`SimDriver`], the `Hypervisor` impl and clock |

pub mod cpu;
pub mod domain;
pub mod driver;
pub mod fabric;
pub mod host;
pub mod load;
pub mod trace;

pub use driver::{SimDriver, SimFabric};
pub use fabric::{FabricModel, SimConfig};
pub use host::{DomainLoad, HostLoad, HostModel, SimError};
pub use load::{LoadModel, LoadSpec, LoadSpecError};
pub use trace::{Trace, TraceError};
