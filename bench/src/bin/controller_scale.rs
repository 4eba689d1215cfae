//! Controller scale benchmark: N VM specs against M hollow nodes, on a real etcd.
//!
//! Starts etcd (on free loopback ports), the real `herd-controller` process (found next to
//! this binary: build both with `cargo build --release -p herd-controller -p herd-bench`) and M
//! hollow nodes in this process (one shared lease, heartbeat every 2 s, one shared watch that
//! acknowledges assignments). Then:
//! 1. throughput: writes N VM specs as fast as it can and reports placements per second
//!    (from the first spec written to the last assignment seen) and the latencies;
//! 2. latency: writes VMs at an offered rate and reports p50/p99 from spec written to
//!    assignment seen and to acknowledgement seen;
//! 3. controller RSS with every VM placed, and etcd writes (revisions) per VM placed by the
//!    controller (total revisions less the specs, heartbeats and acknowledgements written here).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use herd_crds::{Object, Resource, VirtualMachine, VirtualMachineSpec};
use herd_store::{Store, WatchEvent};
use herd_tests::hollow::{HollowNode, start_fleet};
use herd_tests::stats::quantile_ms;
use herd_tests::{EtcdServer, unique_prefix};
use tokio::task::JoinSet;

#[derive(Parser)]
struct Flags {
    /// VMs written in the throughput phase.
    #[arg(long, default_value_t = 10_000)]
    vms: usize,
    /// Hollow nodes.
    #[arg(long, default_value_t = 1_000)]
    nodes: usize,
    /// Offered load of the latency phase, VMs per second.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// VMs written in the latency phase.
    #[arg(long, default_value_t = 1_000)]
    latency_vms: usize,
    /// Specs written concurrently in the throughput phase.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

/// When each VM's spec was written, its assignment seen and its acknowledgement seen.
#[derive(Default)]
struct Timeline {
    written: HashMap<String, Instant>,
    assigned: HashMap<String, Instant>,
    acked: HashMap<String, Instant>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let flags = Flags::parse();
    let etcd = EtcdServer::start()?;
    let prefix = unique_prefix();
    let store = Store::connect(&etcd.endpoints(), &prefix).await?;
    let mut fleet_tasks = JoinSet::new();
    let lease = store.grant_lease(Duration::from_secs(15)).await?;
    let fleet = (0..flags.nodes)
        .map(|i| HollowNode::new(&format!("node-{i:05}"), 64, 262_144))
        .collect();
    let stats = start_fleet(
        &store,
        fleet,
        Duration::from_secs(2),
        lease.id(),
        &mut fleet_tasks,
    );
    wait_for_count(
        &store,
        &store.keys().heartbeats(),
        flags.nodes,
        Duration::from_secs(120),
    )
    .await?;
    println!("{} hollow nodes heartbeating", flags.nodes);

    let timeline = Arc::new(Mutex::new(Timeline::default()));
    let mut watchers = JoinSet::new();
    watchers.spawn(record_assignments(store.clone(), timeline.clone()));
    watchers.spawn(record_acks(store.clone(), timeline.clone()));
    let mut controller = start_controller(&etcd, &prefix)?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Phase 1: throughput.
    let revision_before = store.current_revision().await?;
    let (heartbeats_before, acks_before) = (
        stats.heartbeats.load(Ordering::Relaxed),
        stats.acks.load(Ordering::Relaxed),
    );
    let started = Instant::now();
    write_burst(&store, &timeline, "tp", flags.vms, flags.concurrency).await?;
    let wrote_all = started.elapsed();
    wait_until(
        &timeline,
        flags.vms,
        |t| t.acked.len(),
        Duration::from_secs(600),
    )
    .await?;
    let revision_after = store.current_revision().await?;
    let own_writes = flags.vms as u64
        + (stats.heartbeats.load(Ordering::Relaxed) - heartbeats_before)
        + (stats.acks.load(Ordering::Relaxed) - acks_before);
    let controller_writes = (revision_after - revision_before) as u64
        - own_writes.min((revision_after - revision_before) as u64);
    let rss = rss_mib(controller.id())?;
    report_throughput(
        &timeline.lock().expect("timeline"),
        started,
        wrote_all,
        flags.vms,
    );
    println!(
        "etcd revisions written by the controller per VM placed: {:.2}",
        controller_writes as f64 / flags.vms as f64
    );
    println!("controller RSS with {} VMs: {rss:.1} MiB", flags.vms);

    // Phase 2: latency at an offered load.
    let mut timeline_now = Timeline::default();
    std::mem::swap(&mut *timeline.lock().expect("timeline"), &mut timeline_now);
    write_paced(&store, &timeline, "lat", flags.latency_vms, flags.rate).await?;
    wait_until(
        &timeline,
        flags.latency_vms,
        |t| t.acked.len(),
        Duration::from_secs(300),
    )
    .await?;
    report_latency(&timeline.lock().expect("timeline"), flags.rate);

    let _ = controller.kill();
    let _ = controller.wait();
    Ok(())
}

fn vm(name: &str) -> VirtualMachine {
    let spec = VirtualMachineSpec {
        memory_mib: 256,
        ..herd_crds::yaml::from_str::<VirtualMachineSpec>("memoryMiB: 256").expect("valid spec")
    };
    Object::new(name, spec)
}

/// Writes `count` VMs named `<tag>-<i>` with `concurrency` writes in flight.
async fn write_burst(
    store: &Store,
    timeline: &Arc<Mutex<Timeline>>,
    tag: &str,
    count: usize,
    concurrency: usize,
) -> Result<()> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = JoinSet::new();
    for _ in 0..concurrency {
        let (store, timeline, next, tag) = (
            store.clone(),
            timeline.clone(),
            next.clone(),
            tag.to_owned(),
        );
        writers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<(), anyhow::Error>(());
                }
                write_one(&store, &timeline, &format!("{tag}-{i:06}")).await?;
            }
        });
    }
    while let Some(result) = writers.join_next().await {
        result??;
    }
    Ok(())
}

/// Writes `count` VMs at `rate` per second.
async fn write_paced(
    store: &Store,
    timeline: &Arc<Mutex<Timeline>>,
    tag: &str,
    count: usize,
    rate: u64,
) -> Result<()> {
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
    let mut writers = JoinSet::new();
    for i in 0..count {
        ticker.tick().await;
        let (store, timeline, name) = (store.clone(), timeline.clone(), format!("{tag}-{i:06}"));
        writers.spawn(async move { write_one(&store, &timeline, &name).await });
    }
    while let Some(result) = writers.join_next().await {
        result??;
    }
    Ok(())
}

async fn write_one(store: &Store, timeline: &Arc<Mutex<Timeline>>, name: &str) -> Result<()> {
    store.create(&vm(name)).await?;
    timeline
        .lock()
        .expect("timeline")
        .written
        .insert(name.to_owned(), Instant::now());
    Ok(())
}

async fn record_assignments(store: Store, timeline: Arc<Mutex<Timeline>>) {
    let prefix = store.keys().assignments();
    let mut watcher = store.watch_prefix(
        &prefix,
        Some(store.current_revision().await.unwrap_or(0) + 1),
    );
    loop {
        if let WatchEvent::Put(entry) = watcher.next().await
            && let Some((_, vm)) = entry
                .key
                .strip_prefix(&prefix)
                .and_then(|r| r.split_once('/'))
        {
            timeline
                .lock()
                .expect("timeline")
                .assigned
                .entry(vm.to_owned())
                .or_insert_with(Instant::now);
        }
    }
}

async fn record_acks(store: Store, timeline: Arc<Mutex<Timeline>>) {
    let prefix = store.keys().statuses(<VirtualMachine as Resource>::PLURAL);
    let mut watcher = store.watch_prefix(
        &prefix,
        Some(store.current_revision().await.unwrap_or(0) + 1),
    );
    loop {
        if let WatchEvent::Put(entry) = watcher.next().await
            && let Some(vm) = entry.key.strip_prefix(&prefix)
            && String::from_utf8_lossy(&entry.value).contains("state: Running")
        {
            timeline
                .lock()
                .expect("timeline")
                .acked
                .entry(vm.to_owned())
                .or_insert_with(Instant::now);
        }
    }
}

async fn wait_for_count(store: &Store, prefix: &str, count: usize, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while store.list_raw(prefix, None).await?.0.len() < count {
        if Instant::now() > deadline {
            bail!("fewer than {count} keys under {prefix} after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

async fn wait_until(
    timeline: &Arc<Mutex<Timeline>>,
    count: usize,
    measure: fn(&Timeline) -> usize,
    limit: Duration,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let seen = measure(&timeline.lock().expect("timeline"));
        if seen >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {seen} of {count} after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn start_controller(etcd: &EtcdServer, prefix: &str) -> Result<Child> {
    let path = controller_binary()?;
    Command::new(&path)
        .args([
            "--etcd",
            &etcd.endpoint(),
            "--prefix",
            prefix,
            "--listen",
            "",
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", path.display()))
}

fn controller_binary() -> Result<PathBuf> {
    let here = std::env::current_exe()?;
    let path = here.with_file_name("herd-controller");
    if !path.exists() {
        bail!(
            "{} not found: build it with cargo build --release -p herd-controller",
            path.display()
        );
    }
    Ok(path)
}

fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")?;
    Ok(kib / 1024.0)
}

fn latencies(timeline: &Timeline, to: &HashMap<String, Instant>) -> Vec<Duration> {
    timeline
        .written
        .iter()
        .filter_map(|(name, written)| Some(to.get(name)?.saturating_duration_since(*written)))
        .collect()
}

fn report_throughput(timeline: &Timeline, started: Instant, wrote_all: Duration, count: usize) {
    let last_assigned = timeline.assigned.values().max().copied().unwrap_or(started);
    let placing = last_assigned.duration_since(started);
    println!(
        "throughput: {count} VMs written in {:.2} s ({:.0} specs/s)",
        wrote_all.as_secs_f64(),
        count as f64 / wrote_all.as_secs_f64()
    );
    println!(
        "throughput: all {count} assigned {:.2} s after the first write: {:.0} placements/s end to end",
        placing.as_secs_f64(),
        count as f64 / placing.as_secs_f64()
    );
    let mut assigned = latencies(timeline, &timeline.assigned);
    let mut acked = latencies(timeline, &timeline.acked);
    println!(
        "throughput: spec->assignment p50 {:.1} ms p99 {:.1} ms; spec->ack p50 {:.1} ms p99 {:.1} ms",
        quantile_ms(&mut assigned, 0.5),
        quantile_ms(&mut assigned, 0.99),
        quantile_ms(&mut acked, 0.5),
        quantile_ms(&mut acked, 0.99)
    );
}

fn report_latency(timeline: &Timeline, rate: u64) {
    let mut assigned = latencies(timeline, &timeline.assigned);
    let mut acked = latencies(timeline, &timeline.acked);
    println!(
        "latency at {rate} VMs/s offered: spec->assignment p50 {:.1} ms p99 {:.1} ms; spec->ack p50 {:.1} ms p99 {:.1} ms ({} VMs)",
        quantile_ms(&mut assigned, 0.5),
        quantile_ms(&mut assigned, 0.99),
        quantile_ms(&mut acked, 0.5),
        quantile_ms(&mut acked, 0.99),
        acked.len()
    );
}
