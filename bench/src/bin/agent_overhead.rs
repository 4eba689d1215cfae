//! Agent overhead benchmark: CPU use of `herd-agent` (qemu driver) running N idle guests with
//! a 2 s heartbeat, on a real etcd.
//!
//! Starts etcd, writes N assignments of the idle test guest for one node directly (as the
//! controller would; the controller is not what is measured), starts the release `herd-agent`
//! next to this binary, waits until every VM reports Running, lets the guests settle, then
//! reads the agent's utime+stime from /proc over a window and reports it as % of one core,
//! once per window (median of the windows). Build: `cargo build --release -p herd-agent -p herd-bench`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use herd_agent::test_guests::TestGuest;
use herd_crds::assignment::{Assignment, DiskSource};
use herd_crds::virtual_machine::VmState;
use herd_crds::{RunState, VirtualMachineSpec};
use herd_store::Store;
use herd_store::txn::Precondition;
use herd_tests::{EtcdServer, unique_prefix};

#[derive(Parser)]
struct Flags {
    #[arg(long, default_value_t = 20)]
    vms: usize,
    /// Seconds per measurement window.
    #[arg(long, default_value_t = 30)]
    window: u64,
    #[arg(long, default_value_t = 3)]
    windows: usize,
}

#[tokio::main]
async fn main() -> Result<()> {
    let flags = Flags::parse();
    let etcd = EtcdServer::start()?;
    let prefix = unique_prefix();
    let store = Store::connect(&etcd.endpoints(), &prefix).await?;
    let work = tempfile::tempdir()?;
    let image = TestGuest::Idle.write_image(work.path())?;
    for i in 0..flags.vms {
        let name = format!("idle-{i:02}");
        let mut domain = herd_agent::test_guests::domain_spec(
            &name,
            &format!("uid-{i}"),
            DiskSource::Path(image.display().to_string()),
        );
        domain.memory_mib = 32;
        let assignment = Assignment {
            generation: 1,
            run_state: RunState::Running,
            domain,
            migration: None,
        };
        let value = herd_store::codec::encode_value(&assignment).map_err(anyhow::Error::msg)?;
        store
            .transaction()
            .put_raw(
                store.keys().assignment("bench", &name)?,
                value,
                None,
                Precondition::Absent,
            )
            .commit()
            .await?;
    }
    let mut agent = start_agent(&etcd, &prefix, work.path())?;
    let result = measure(&store, &flags, agent.id()).await;
    let _ = agent.kill();
    let _ = agent.wait();
    let _ = Command::new("pkill")
        .args(["-9", "-f", &work.path().display().to_string()])
        .status();
    result
}

async fn measure(store: &Store, flags: &Flags, pid: u32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let mut running = 0;
        for i in 0..flags.vms {
            let status = store
                .get_status::<VirtualMachineSpec>(&format!("idle-{i:02}"))
                .await?;
            running += usize::from(status.is_some_and(|s| s.value.state == VmState::Running));
        }
        if running == flags.vms {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {running} of {} VMs running after 300 s", flags.vms);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!("{} idle guests running; settling 20 s", flags.vms);
    tokio::time::sleep(Duration::from_secs(20)).await;
    let mut percents = Vec::new();
    for _ in 0..flags.windows {
        let (cpu_before, at_before) = (cpu_seconds(pid)?, Instant::now());
        tokio::time::sleep(Duration::from_secs(flags.window)).await;
        let percent = 100.0 * (cpu_seconds(pid)? - cpu_before) / at_before.elapsed().as_secs_f64();
        println!(
            "agent CPU over {} s: {percent:.2}% of one core",
            flags.window
        );
        percents.push(percent);
    }
    percents.sort_by(f64::total_cmp);
    println!(
        "median agent CPU with {} idle VMs at a 2 s heartbeat: {:.2}% of one core",
        flags.vms,
        percents[percents.len() / 2]
    );
    println!("agent RSS: {:.1} MiB", rss_mib(pid)?);
    Ok(())
}

fn start_agent(etcd: &EtcdServer, prefix: &str, state: &std::path::Path) -> Result<Child> {
    let path = std::env::current_exe()?.with_file_name("herd-agent");
    if !path.exists() {
        bail!(
            "{} not found: cargo build --release -p herd-agent",
            path.display()
        );
    }
    Command::new(&path)
        .args([
            "--node",
            "bench",
            "--etcd",
            &etcd.endpoint(),
            "--prefix",
            prefix,
            "--driver",
            "qemu",
        ])
        .arg("--state-dir")
        .arg(state.join("qemu"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", path.display()))
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .context("stat format")?
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0) // USER_HZ is 100 on Linux x86_64
}

fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("VmRSS")?;
    Ok(kib / 1024.0)
}
