//! The verbs of herdctl, one module per group. Each takes its typed arguments (see
//! [`crate::args`]) and the [`Target`] to connect to, and prints what it did.

pub mod apply;
pub mod balance;
pub mod completion;
pub mod delete;
pub mod describe;
pub mod diff;
pub mod get;
pub mod gitops;
pub mod node;
pub mod vm;
pub mod wait;
mod watch;

use herd_store::Store;

use crate::apply::{Loaded, load, manifest_files};
use crate::args::FilesArgs;
use crate::failure::Failure;

/// Where to connect: the global flags, resolved only by commands that need etcd.
pub struct Target {
    pub etcd: Option<String>,
    pub prefix: Option<String>,
}

impl Target {
    pub async fn connect(&self) -> Result<Store, Failure> {
        crate::context::connect(self.etcd.as_deref(), self.prefix.as_deref()).await
    }
}

/// Reads and validates every manifest named by `-f`; on any problem, fails with all of them
/// under the heading `refused` (such as "nothing was applied").
pub fn read_manifests(files: &FilesArgs, refused: &str) -> Result<Vec<Loaded>, Failure> {
    let paths = manifest_files(&files.files, files.recursive)?;
    load(&paths).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        Failure::new(format!("{refused}:\n  {}", lines.join("\n  ")))
    })
}
