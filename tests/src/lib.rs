//! Test harness shared by herd's integration and end-to-end tests.
//!
//! [`EtcdServer`] runs a real etcd (`/usr/bin/etcd` from Debian's `etcd-server`, or `etcd`
//! on `PATH`) on free loopback ports with a temporary data directory, and stops it when
//! dropped. [`unique_prefix`] gives every test its own key prefix.

pub mod etcd;

pub use etcd::{EtcdServer, etcdctl, unique_prefix};
