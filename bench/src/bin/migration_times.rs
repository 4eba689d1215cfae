//! Live-migration benchmark: total time and downtime of QEMU live migrations through herd's
//! qemu driver, for an idle guest and for one dirtying memory, median of N each.
//!
//! Two `QemuDriver`s on 127.0.0.1 (two "nodes" with their own state dirs) pass a guest back and
//! forth: the target prepares an incoming domain, the source migrates with the VM's default
//! limits (300 ms downtime, no bandwidth cap), and the figures are QEMU's own `query-migrate`
//! `total-time` and `downtime`. The disk is a boot image exported by `qemu-nbd` (shared, as
//! herd requires). Run: `cargo build --release -p herd-bench && target/release/migration-times`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use herd_agent::hypervisor::{Hypervisor, MigrationParams, MigrationProgress};
use herd_agent::qemu::{QemuConfig, QemuDriver};
use herd_agent::test_guests::{TestGuest, domain_spec};
use herd_crds::assignment::DiskSource;
use herd_tests::serve_nbd;

#[derive(Parser)]
struct Flags {
    /// Migrations per guest.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 256)]
    memory_mib: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let flags = Flags::parse();
    let work = tempfile::tempdir()?;
    let result = run(&flags, work.path()).await;
    let _ = Command::new("pkill")
        .args(["-9", "-f", &work.path().display().to_string()])
        .status();
    result
}

async fn run(flags: &Flags, dir: &Path) -> Result<()> {
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let a = QemuDriver::new(QemuConfig::new(dir.join("a"), localhost)).await?;
    let b = QemuDriver::new(QemuConfig::new(dir.join("b"), localhost)).await?;
    println!("accelerator: {}", a.accel().description());
    for guest in [TestGuest::Idle, TestGuest::Dirty] {
        let images = dir.join(guest.name());
        std::fs::create_dir_all(&images)?;
        let image = guest.write_image(&images)?;
        let uri = serve_nbd(&image, guest.name())?;
        let mut spec = domain_spec(
            guest.name(),
            &format!("bench-{}", guest.name()),
            DiskSource::Nbd(uri),
        );
        spec.memory_mib = flags.memory_mib;
        a.create(&spec, false).await?;
        tokio::time::sleep(Duration::from_secs(8)).await; // past the BIOS, into the guest's loop
        let (mut totals, mut downtimes) = (Vec::new(), Vec::new());
        for run in 0..flags.runs {
            let (source, target) = if run.is_multiple_of(2) {
                (&a, &b)
            } else {
                (&b, &a)
            };
            let (total, downtime) = migrate(source, target, &spec).await?;
            totals.push(total);
            downtimes.push(downtime);
            source.destroy(&spec.name).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let (source, _) = if flags.runs.is_multiple_of(2) {
            (&a, &b)
        } else {
            (&b, &a)
        };
        source.destroy(&spec.name).await?;
        println!(
            "{} guest, {} MiB, {} migrations: total median {:.0} ms (min {:.0}, max {:.0}); downtime median {:.0} ms (min {:.0}, max {:.0})",
            guest.name(),
            flags.memory_mib,
            flags.runs,
            median(&mut totals),
            min(&totals),
            max(&totals),
            median(&mut downtimes),
            min(&downtimes),
            max(&downtimes)
        );
    }
    Ok(())
}

/// One migration of `spec` from `source` to `target`: (total ms, downtime ms) as QEMU reports.
async fn migrate(
    source: &QemuDriver,
    target: &QemuDriver,
    spec: &herd_crds::assignment::DomainSpec,
) -> Result<(f64, f64)> {
    let endpoint = target.prepare_incoming(spec).await?;
    let params = MigrationParams {
        max_downtime: Duration::from_millis(300),
        bandwidth: None,
    };
    source.migrate_out(&spec.name, &endpoint, &params).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match source.migration_progress(&spec.name).await? {
            MigrationProgress::Active { .. } => {}
            MigrationProgress::Completed {
                total, downtime, ..
            } => {
                wait_running(target, &spec.name).await?;
                return Ok((
                    total.as_secs_f64() * 1000.0,
                    downtime.as_secs_f64() * 1000.0,
                ));
            }
            other => bail!("migration ended with {other:?}"),
        }
        if Instant::now() > deadline {
            bail!("migration did not complete in 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the target's copy runs (the source reports completion a moment before).
async fn wait_running(target: &QemuDriver, name: &str) -> Result<()> {
    for _ in 0..500 {
        let domains = target.list().await?;
        if domains
            .iter()
            .any(|d| d.name == name && d.state == herd_agent::hypervisor::DomainState::Running)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let states: Vec<_> = target
        .list()
        .await?
        .into_iter()
        .map(|d| (d.name, d.state))
        .collect();
    bail!(
        "the target never ran: {states:?} / {:?}",
        target.qemu_status(name).await
    )
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if !n.is_multiple_of(2) {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}
