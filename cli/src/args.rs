//! The command line, as clap parses it: every verb and its flags, already typed (kinds,
//! selectors, durations, conditions), so that commands receive values and not strings.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::duration::{parse_duration, parse_whole_seconds};
use crate::kinds::Kind;
use crate::selector::Selector;
use crate::wait_for::WaitFor;

#[derive(Parser)]
#[command(
    name = "herdctl",
    version,
    about = "Drive a herd of virtual machines",
    after_help = "Exit codes: 0 success, 1 error, 2 usage error (diff: 0 same, 1 different, 2 error)."
)]
pub struct Cli {
    /// etcd endpoints, comma-separated (default: $HERD_ETCD_ENDPOINTS, the context file, or http://127.0.0.1:2379).
    #[arg(long, global = true)]
    pub etcd: Option<String>,
    /// Key prefix in etcd (default: $HERD_PREFIX, the context file, or /herd).
    #[arg(long, global = true)]
    pub prefix: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create or update objects from manifest files.
    Apply(ApplyArgs),
    /// Show objects as a table, YAML, JSON or names; -w streams changes.
    Get(GetArgs),
    /// Show one object in detail: spec, status, conditions and recent events.
    Describe(RefsArgs),
    /// Delete objects and wait until they are gone.
    Delete(DeleteArgs),
    /// Show what apply would change (exit 0: nothing, 1: differences, 2: error).
    Diff(FilesArgs),
    /// Wait until an object has a condition, or is deleted.
    Wait(WaitArgs),
    /// Ask for a VM to run (runState Running).
    Start(VmArg),
    /// Ask for a VM to stop gracefully (runState Stopped).
    Stop(VmArg),
    /// Same as stop: the node agent shuts a Stopped VM down gracefully.
    Shutdown(VmArg),
    /// Ask for a VM to be paused (runState Paused).
    Pause(VmArg),
    /// Ask for a paused VM to run again (runState Running).
    Unpause(VmArg),
    /// Ask for a VM to be stopped at once, without a graceful shutdown.
    Destroy(VmArg),
    /// Live-migrate a VM to another node (creates a Migration).
    Migrate(MigrateArgs),
    /// Mark a node unschedulable: no new VMs are placed on it.
    Cordon(NodeArg),
    /// Mark a node schedulable again.
    Uncordon(NodeArg),
    /// Cordon a node and migrate every VM away from it.
    Drain(NodeArg),
    /// Change a node's settings.
    Node(NodeArgs),
    /// Balancer tools: replay CPU traces through the balancer (simulate).
    Balance(BalanceArgs),
    /// GitOps: the git repositories herd syncs (status, reconcile, suspend, resume, diff).
    Gitops(GitopsArgs),
    /// Print a shell completion script.
    Completion(CompletionArgs),
    /// Start a local lab: etcd, the controller and node agents on this machine.
    Up(UpArgs),
    /// Stop the local lab started by `herdctl up`.
    Down(DownArgs),
}

/// `herdctl up`.
#[derive(Args)]
pub struct UpArgs {
    /// How many nodes (named like the seed's hosts: ferby, gerby, herby, ...).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// qemu (real guests) or sim (simulated hosts); default qemu when QEMU is installed.
    #[arg(long, value_enum)]
    pub driver: Option<crate::lab::plan::LabDriver>,
    /// Run each agent in a network namespace of its own, joined by a bridge, so migrations
    /// cross a network link (QEMU driver; needs root).
    #[arg(long)]
    pub netns: bool,
    /// Where the lab keeps its data and logs (default $HERD_LAB or ~/.local/state/herd/lab).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// `herdctl down`.
#[derive(Args)]
pub struct DownArgs {
    /// Also remove the lab's data.
    #[arg(long)]
    pub purge: bool,
    /// The lab's directory (default $HERD_LAB or ~/.local/state/herd/lab).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// How `apply --dry-run` behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DryRun {
    /// Write for real.
    None,
    /// Only read and validate the files.
    Client,
    /// Also compare with etcd (created/configured/unchanged), without writing.
    Server,
}

#[derive(Args)]
pub struct FilesArgs {
    /// A file, a directory, or - for standard input; may be repeated.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Also read the subdirectories of directories.
    #[arg(short = 'R', long)]
    pub recursive: bool,
}

#[derive(Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub files: FilesArgs,
    #[arg(long, value_enum, default_value = "none")]
    pub dry_run: DryRun,
}

/// How `get` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Wide,
    Yaml,
    Json,
    Name,
}

#[derive(Args)]
pub struct GetArgs {
    /// vms, nodes, migrations, volumes, clusterpolicies or events.
    pub kind: Kind,
    pub name: Option<String>,
    /// Only objects whose labels match, such as app=web,tier!=db,env or "env in (a,b)".
    #[arg(short = 'l', long = "selector")]
    pub selector: Option<Selector>,
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: OutputFormat,
    /// After listing, print every change until interrupted (Ctrl-C).
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// With -w, start each row with ADDED, MODIFIED or DELETED.
    #[arg(long, requires = "watch")]
    pub output_watch_events: bool,
}

#[derive(Args)]
pub struct RefsArgs {
    /// KIND NAME or KIND/NAME, such as vm small-1 or vm/small-1.
    #[arg(required = true, num_args = 1..)]
    pub objects: Vec<String>,
}

#[derive(Args)]
pub struct DeleteArgs {
    /// KIND NAME or KIND/NAME; or give -f.
    #[arg(required_unless_present = "files", conflicts_with = "files")]
    pub objects: Vec<String>,
    /// Delete the objects of these manifests (files, directories, or -).
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    /// Also read the subdirectories of directories given with -f.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Wait until the objects are really gone (for a VM: its domain stopped and removed).
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", require_equals = true)]
    pub wait: bool,
    /// How long to wait, such as 90s or 5m.
    #[arg(long, value_parser = parse_duration, default_value = "2m")]
    pub timeout: Duration,
    /// Succeed for objects that do not exist.
    #[arg(long)]
    pub ignore_not_found: bool,
}

#[derive(Args)]
pub struct WaitArgs {
    /// KIND/NAME or KIND NAME, such as vm/small-1.
    #[arg(required = true, num_args = 1..)]
    pub objects: Vec<String>,
    /// condition=NAME, condition=NAME=False, or delete.
    #[arg(long = "for", value_parser = WaitFor::parse)]
    pub condition: WaitFor,
    /// Give up after this long, such as 60s or 5m.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub timeout: Duration,
}

#[derive(Args)]
pub struct VmArg {
    /// The VM's name.
    pub vm: String,
}

#[derive(Args)]
pub struct MigrateArgs {
    /// The VM's name.
    pub vm: String,
    /// Target node; the controller chooses one when absent.
    #[arg(long)]
    pub to: Option<String>,
}

#[derive(Args)]
pub struct NodeArg {
    /// The node's name.
    pub node: String,
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("settings").required(true).multiple(true))]
pub struct NodeArgs {
    /// The node's name.
    pub node: String,
    /// May VMs be live-migrated onto this node (true or false).
    #[arg(long, action = ArgAction::Set, group = "settings")]
    pub accept_migrations: Option<bool>,
    /// How often the agent sends its heartbeat, in whole seconds, such as 5s or 1m.
    #[arg(long, value_parser = parse_whole_seconds, group = "settings")]
    pub heartbeat_interval: Option<u32>,
}

/// `herdctl gitops`.
#[derive(Args)]
pub struct GitopsArgs {
    #[command(subcommand)]
    pub command: GitopsCommand,
}

#[derive(Subcommand)]
pub enum GitopsCommand {
    /// Show every GitRepository (or one, in detail): commit, conditions, inventory, last runs.
    Status(GitopsStatusArgs),
    /// Sync a repository now and wait for the run's result.
    Reconcile(GitopsReconcileArgs),
    /// Stop syncing a repository (nothing is fetched or written).
    Suspend(GitopsName),
    /// Sync a suspended repository again.
    Resume(GitopsName),
    /// Fetch the repository and show what a sync would change (exit 0: nothing, 1: changes, 2: error).
    Diff(GitopsName),
}

/// A GitRepository named on the command line.
#[derive(Args)]
pub struct GitopsName {
    /// The GitRepository's name.
    pub name: String,
}

/// `herdctl gitops status`.
#[derive(Args)]
pub struct GitopsStatusArgs {
    /// One repository, shown in detail; all of them as a table when left out.
    pub name: Option<String>,
}

/// `herdctl gitops reconcile`.
#[derive(Args)]
pub struct GitopsReconcileArgs {
    /// The GitRepository's name.
    pub name: String,
    /// How long to wait for the run (such as 30s or 2m); 0 to ask and not wait.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `herdctl balance`.
#[derive(Args)]
pub struct BalanceArgs {
    #[command(subcommand)]
    pub command: BalanceCommand,
}

#[derive(Subcommand)]
pub enum BalanceCommand {
    /// Replay CPU traces through the controller's balancer on simulated hosts (offline) and
    /// compare no balancing, the seed policy and the score policy.
    Simulate(SimulateArgs),
}

/// A policy replayed by `balance simulate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SimulateRun {
    /// The balancer counts points but moves nothing.
    None,
    Seed,
    Score,
    Forecast,
    Density,
    /// The published LR-MMT baseline (not herd's balancer).
    LrMmt,
}

/// `balance simulate --placement`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SimulatePlacement {
    Scheduler,
    Packed,
}

/// How `balance simulate` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SimulateOutput {
    Table,
    Json,
}

/// `herdctl balance simulate`.
#[derive(Args)]
pub struct SimulateArgs {
    /// A folder of PlanetLab traces (one file per VM, one CPU % per line), or a folder of such
    /// folders, one per day, each replayed in turn.
    #[arg(long)]
    pub traces: PathBuf,
    /// A ClusterPolicy manifest whose knobs every run uses (default: the default policy);
    /// its balancer.enabled and balancer.policy are set by each run.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Simulated hosts (CloudSim's: half 2 x 1860, half 2 x 2660 MIPS, 4 GiB each).
    #[arg(long, default_value_t = 800)]
    pub hosts: usize,
    /// Memory of each simulated host, MiB (CloudSim's is 4096; it caps VMs per host).
    #[arg(long, default_value_t = 4096)]
    pub host_memory_mib: u64,
    /// How VMs are placed before the replay: by the scheduler (spread), or packed as CloudSim
    /// starts its consolidation experiments.
    #[arg(long, value_enum, default_value = "scheduler")]
    pub placement: SimulatePlacement,
    /// Replay at most this many VMs per day (traces in name order).
    #[arg(long)]
    pub max_vms: Option<usize>,
    /// Replay at most the first N days of a folder of days.
    #[arg(long)]
    pub days: Option<usize>,
    /// The policies to replay, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "none,seed,score"
    )]
    pub runs: Vec<SimulateRun>,
    /// Sample at the policy's sampleIntervalSeconds instead of once per trace step.
    #[arg(long)]
    pub policy_interval: bool,
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: SimulateOutput,
}

#[derive(Args)]
pub struct CompletionArgs {
    pub shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn typed_flags_are_parsed_or_refused_as_usage_errors() {
        let cli =
            Cli::try_parse_from(["herdctl", "get", "vms", "-l", "app=web", "-o", "wide", "-w"]);
        let Ok(Cli {
            command: Command::Get(get),
            ..
        }) = cli
        else {
            panic!("get did not parse");
        };
        assert_eq!(get.selector.unwrap().to_string(), "app=web");
        assert!(get.watch);
        let bad = Cli::try_parse_from(["herdctl", "get", "vms", "-l", "a=b,"]);
        assert_eq!(bad.err().map(|e| e.exit_code()), Some(2));
        let bad = Cli::try_parse_from(["herdctl", "node", "ferby", "--heartbeat-interval=1500ms"]);
        assert!(
            bad.err()
                .unwrap()
                .to_string()
                .contains("whole number of seconds")
        );
        let none = Cli::try_parse_from(["herdctl", "node", "ferby"]);
        assert!(none.is_err(), "node needs at least one setting");
        let Ok(Cli {
            command: Command::Delete(delete),
            ..
        }) = Cli::try_parse_from(["herdctl", "delete", "vm", "a", "--wait=false"])
        else {
            panic!("delete did not parse");
        };
        assert!(!delete.wait);
    }
}
