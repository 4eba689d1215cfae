//! A `qemu-nbd` export of an image, for tests and benchmarks that need shared disks.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Serves `image` (raw) as export `name` on a free port of 127.0.0.1, shared by several
/// clients and persistent; returns its `nbd://` URI. `qemu-nbd --fork` returns once it listens;
/// the caller kills it (its command line names the image).
pub fn serve_nbd(image: &Path, name: &str) -> Result<String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let status = Command::new("qemu-nbd")
        .args([
            "--fork",
            "--persistent",
            "--shared=16",
            "--format=raw",
            "--bind=127.0.0.1",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--export-name={name}"))
        .arg(image)
        .status()
        .context("cannot run qemu-nbd: install Debian's qemu-utils")?;
    if !status.success() {
        bail!("qemu-nbd failed: {status}");
    }
    Ok(format!("nbd://127.0.0.1:{port}/{name}"))
}
