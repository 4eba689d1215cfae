//! Balancer backtest benchmark: replays each day of PlanetLab traces through the production
//! balancer (`herd_controller::balancer::balance`) on simulated hosts — no balancing, `seed`,
//! `score`, `forecast` and `density` — and the published LR-MMT baseline re-implemented in the
//! harness, side by side: SLA-violation time, migrations, VMs moved twice within an hour and
//! energy (linear model). Prints the table and wall times.
//!
//! The setup is Beloglazov & Buyya's CloudSim one (`BacktestConfig::cloudsim`): 800 hosts, half
//! with 2 × 1860 and half with 2 × 2660 MIPS, VMs of 2500/2000/1000/500 MIPS in turn, placed by
//! the controller's scheduler. Nothing real is measured but the wall time of the replay.
//!
//! `cargo build --release -p herd-bench && target/release/balance-replay`; `herdctl balance
//! simulate` runs the same replay (`herd_controller::backtest`) for one policy file.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use herd_controller::backtest::traces::day_folders;
use herd_controller::backtest::{BacktestConfig, InitialPlacement, Sampling, run_backtest};

#[derive(Parser)]
struct Flags {
    /// A folder of days, each a folder of trace files (one per VM), or one such folder.
    #[arg(long, default_value = "../shared/traces/planetlab")]
    traces: PathBuf,
    /// Simulated hosts.
    #[arg(long, default_value_t = 800)]
    hosts: usize,
    /// Memory of each host, MiB (CloudSim's is 4096).
    #[arg(long, default_value_t = 4096)]
    host_memory_mib: u64,
    /// vCPUs per physical CPU the scheduler and every run allow (herd's default is 4; CloudSim
    /// limits VMs per host by memory and CPU only, which 16 leaves to them here).
    #[arg(long, default_value_t = 4.0)]
    cpu_overcommit: f64,
    /// Start packed as CloudSim's consolidation experiments do (power-aware best fit at the
    /// first sample) instead of spread by the scheduler.
    #[arg(long)]
    packed: bool,
    /// Sample at the policy's interval (2 s) instead of once per 5-minute trace step.
    #[arg(long)]
    policy_interval: bool,
}

fn main() -> Result<()> {
    let flags = Flags::parse();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("balance-replay: {cores} cores available, one used (the replay is sequential)");
    for day in day_folders(&flags.traces)? {
        let mut config = BacktestConfig::cloudsim(&day);
        config.hosts = flags.hosts;
        for shape in &mut config.host_shapes {
            shape.memory_mib = flags.host_memory_mib;
        }
        config.policy.scheduling.cpu_overcommit_ratio = flags.cpu_overcommit;
        if flags.packed {
            config.placement = InitialPlacement::Packed;
        }
        if flags.policy_interval {
            config.sampling = Sampling::Policy;
        }
        let started = Instant::now();
        let report = run_backtest(&config)?;
        println!("\n{report}");
        println!(
            "whole day, every run: {:.2} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
