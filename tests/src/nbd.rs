//! A `qemu-nbd` export of an image, for tests and benchmarks that need shared disks.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Serves `image` (raw) as export `name` on a free port of 127.0.0.1, shared by several
/// clients and persistent; returns its `nbd://` URI. `qemu-nbd --fork` returns once it listens;
/// the caller kills it (its command line names the image).
pub fn serve_nbd(image: &Path, name: &str) -> Result<String> {
    serve_nbd_on(image, name, IpAddr::from([127, 0, 0, 1]))
}

/// [`serve_nbd`] on `address` (a local address: a lab bridge's, for clients in namespaces).
pub fn serve_nbd_on(image: &Path, name: &str, address: IpAddr) -> Result<String> {
    let port = std::net::TcpListener::bind((address, 0))?
        .local_addr()?
        .port();
    let status = Command::new("qemu-nbd")
        .args(["--fork", "--persistent", "--shared=16", "--format=raw"])
        .arg(format!("--bind={address}"))
        .arg(format!("--port={port}"))
        .arg(format!("--export-name={name}"))
        .arg(image)
        .status()
        .context("cannot run qemu-nbd: install Debian's qemu-utils")?;
    if !status.success() {
        bail!("qemu-nbd failed: {status}");
    }
    Ok(format!("nbd://{address}:{port}/{name}"))
}
