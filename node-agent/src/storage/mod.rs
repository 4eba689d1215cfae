//! The storage role of `herd-agent` (`--storage`), the seed's configuration agent: it makes the
//! disks VMs run from and exports them so that every node can open them.
//!
//! For each `Volume` object it creates the volume in a [`backend`] (`file`: raw or qcow2 images
//! with `qemu-img`; `lvm`: logical volumes), builds a Debian system into it when asked
//! ([`image`]: debootstrap once per suite and package set, then a copy-on-write clone per VM made
//! that VM's by [`patch`]ing a few fixed-size files) or copies one from the host's [`library`],
//! formats swap, and exports it over NBD with
//! one `qemu-nbd` per volume ([`export`]). The status carries the endpoint
//! (`nbd://host:port/name`) the controller puts in the VM's assignment.
//!
//! Layers, as elsewhere in herd: [`reconcile`] is pure (spec + observed → steps; outcome →
//! status); [`engine`] carries steps out on this host; [`runner`] is the loop that reads Volumes
//! from etcd, claims them with the `herd.dev/storage` finalizer, and writes their status with
//! compare-and-swap. See `docs/storage.md` for operators.

pub mod backend;
pub mod engine;
pub mod error;
pub mod export;
pub mod file;
pub mod guest_files;
pub mod image;
pub mod library;
pub mod lvm;
pub mod mirror;
pub mod patch;
pub mod reconcile;
pub mod runner;
pub mod staging;

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

pub use engine::StorageEngine;
pub use error::StorageError;
pub use runner::{CLAIM_ANNOTATION, FINALIZER, run};

/// How the storage role runs.
#[derive(Clone, Debug)]
pub struct StorageSettings {
    /// This node's name: volumes are claimed in its name.
    pub node: String,
    /// Where volumes, base images and export records live (default `/var/lib/herd/storage`).
    pub dir: PathBuf,
    /// The LVM volume group of the `lvm` backend; without one, `lvm` volumes fail.
    pub volume_group: Option<String>,
    /// The address exports listen on and endpoints name (never `0.0.0.0`).
    pub nbd_address: IpAddr,
    pub nbd_ports: RangeInclusive<u16>,
    /// debootstrap's mirror; default: the host's apt configuration.
    pub debian_mirror: Option<String>,
    /// Every volume is looked at this often even without a watch event.
    pub resync: Duration,
    /// How many volumes are worked on at once.
    pub parallel: usize,
}

impl StorageSettings {
    /// Settings with the defaults for everything but the node, the directory and the address.
    pub fn new(node: impl Into<String>, dir: impl Into<PathBuf>, nbd_address: IpAddr) -> Self {
        Self {
            node: node.into(),
            dir: dir.into(),
            volume_group: None,
            nbd_address,
            nbd_ports: export::DEFAULT_PORTS,
            debian_mirror: None,
            resync: Duration::from_secs(10),
            parallel: 4,
        }
    }
}
