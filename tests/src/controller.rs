//! The real `herd-controller` process for tests, killed (SIGKILL) when dropped.

use std::process::{Child, Command, Stdio};

use anyhow::Result;

use crate::binaries::binary;
use crate::etcd::EtcdServer;

/// A controller process, killed (SIGKILL) when dropped.
pub struct ControllerProcess(Child);

impl ControllerProcess {
    /// Starts a controller on `etcd` under `prefix` with a 3 s lease, serving HTTP on `listen`.
    pub fn start(etcd: &EtcdServer, prefix: &str, identity: &str, listen: &str) -> Result<Self> {
        Self::start_with(etcd, prefix, identity, listen, &[])
    }

    /// [`start`](Self::start) with more flags.
    pub fn start_with(
        etcd: &EtcdServer,
        prefix: &str,
        identity: &str,
        listen: &str,
        extra: &[&str],
    ) -> Result<Self> {
        let child = Command::new(binary("herd-controller")?)
            .args(["--etcd", &etcd.endpoint(), "--prefix", prefix])
            .args([
                "--identity",
                identity,
                "--lease-ttl",
                "3",
                "--listen",
                listen,
            ])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("HERD_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .spawn()?;
        Ok(Self(child))
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free loopback address (`127.0.0.1:PORT`) for a server to listen on.
pub fn free_listen() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_or(0, |address| address.port());
    format!("127.0.0.1:{port}")
}
