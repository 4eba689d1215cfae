//! Finding the workspace's own binaries from a test of another package.
//!
//! Cargo gives a test the path of its own package's binaries only (`CARGO_BIN_EXE_*`). Others
//! are looked up next to the test or benchmark executable (`target/<profile>/`); `cargo test --workspace`
//! and `cargo nextest run --workspace` build them all first.

use std::path::PathBuf;

use anyhow::{Result, bail};

/// The path of workspace binary `name` (such as `herd-controller`) of the running profile.
pub fn binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // A test runs from target/<profile>/deps/, a benchmark binary from target/<profile>/.
    let Some(mut profile_dir) = exe.parent() else {
        bail!("cannot locate the target directory from {}", exe.display());
    };
    if profile_dir.ends_with("deps") {
        profile_dir = profile_dir.parent().unwrap_or(profile_dir);
    }
    let path = profile_dir.join(name);
    if !path.exists() {
        bail!(
            "{} is not built: run `cargo build -p {name}` (or test with --workspace)",
            path.display()
        );
    }
    Ok(path)
}
