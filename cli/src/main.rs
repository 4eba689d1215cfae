//! `herdctl`: the kubectl-like command line of herd.
//!
//! Exit codes: 0 success, 1 error, 2 usage error.

mod apply;
mod context;
mod get;
mod kinds;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use herd_store::Store;
use herd_store::txn::Precondition;

use crate::get::OutputFormat;
use crate::kinds::Kind;

#[derive(Parser)]
#[command(name = "herdctl", version, about = "Drive a herd of virtual machines")]
struct Cli {
    /// etcd endpoints, comma-separated (default: $HERD_ETCD_ENDPOINTS, the context file, or http://127.0.0.1:2379).
    #[arg(long, global = true)]
    etcd: Option<String>,
    /// Key prefix in etcd (default: $HERD_PREFIX, the context file, or /herd).
    #[arg(long, global = true)]
    prefix: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create or update objects from manifest files.
    Apply {
        /// A file, a directory, or - for standard input; may be repeated.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Also read the subdirectories of directories.
        #[arg(short = 'R', long)]
        recursive: bool,
        /// `client`: only validate; `server`: also plan against etcd; neither writes.
        #[arg(long, value_parser = ["none", "client", "server"], default_value = "none")]
        dry_run: String,
    },
    /// Show objects.
    Get {
        /// vms, nodes, migrations, volumes, clusterpolicies or events.
        kind: Kind,
        name: Option<String>,
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: OutputFormat,
    },
    /// Delete an object.
    Delete { kind: Kind, name: String },
}

/// An error to print and its exit code.
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(error: E) -> Self {
        Self(error.to_string())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

async fn connect(cli: &Cli) -> Result<Store, Failure> {
    let context = context::resolve(cli.etcd.as_deref(), cli.prefix.as_deref())?;
    let store = Store::connect(&context.endpoints, &context.prefix)
        .await
        .map_err(|e| {
            Failure(format!(
                "cannot reach etcd at {}: {e}",
                context.endpoints.join(",")
            ))
        })?;
    Ok(store)
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Apply {
            files,
            recursive,
            dry_run,
        } => {
            let files = apply::manifest_files(files, *recursive)?;
            let loaded = apply::load(&files).map_err(|errors| {
                let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
                Failure(format!("nothing was applied:\n  {}", lines.join("\n  ")))
            })?;
            let objects: Vec<_> = loaded.into_iter().map(|l| l.document.object).collect();
            if dry_run == "client" {
                for object in &objects {
                    println!(
                        "{}/{} valid (dry run)",
                        object.kind().to_lowercase(),
                        object.name()
                    );
                }
                return Ok(());
            }
            let store = connect(&cli).await?;
            let suffix = if dry_run == "server" {
                " (server dry run)"
            } else {
                ""
            };
            let results = apply::apply(&store, objects, dry_run == "server")
                .await
                .map_err(|e| {
                    if e.is_conflict() {
                        Failure(format!(
                            "{e}\nnothing of this batch was applied: re-run herdctl apply"
                        ))
                    } else {
                        Failure(e.to_string())
                    }
                })?;
            for (object, change) in results {
                println!(
                    "{}/{} {}{suffix}",
                    object.kind().to_lowercase(),
                    object.name(),
                    change.verb()
                );
            }
            Ok(())
        }
        Command::Get { kind, name, output } => {
            let store = connect(&cli).await?;
            print!(
                "{}",
                get::get(&store, *kind, name.as_deref(), *output).await?
            );
            Ok(())
        }
        Command::Delete { kind, name } => {
            let store = connect(&cli).await?;
            let outcome = delete(&store, *kind, name).await?;
            let verb = match outcome {
                herd_store::objects::DeleteOutcome::Deleted => "deleted",
                herd_store::objects::DeleteOutcome::Marked => {
                    "marked for deletion (finalizers pending)"
                }
            };
            println!("{kind}/{name} {verb}");
            Ok(())
        }
    }
}

async fn delete(
    store: &Store,
    kind: Kind,
    name: &str,
) -> Result<herd_store::objects::DeleteOutcome, herd_store::StoreError> {
    use herd_crds::*;
    let any = Precondition::None;
    match kind {
        Kind::VirtualMachine => store.delete::<VirtualMachine>(name, any).await,
        Kind::Node => store.delete::<Node>(name, any).await,
        Kind::Migration => store.delete::<Migration>(name, any).await,
        Kind::Volume => store.delete::<Volume>(name, any).await,
        Kind::ClusterPolicy => store.delete::<ClusterPolicy>(name, any).await,
        Kind::Event => store.delete::<Event>(name, any).await,
    }
}
