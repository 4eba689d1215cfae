//! `herdctl up` and `herdctl down`: a local lab on this machine.
//!
//! `up` starts, as separate processes, a single-member etcd (data under the lab directory), the
//! controller, and the node agents (one per node with QEMU, one for all nodes with the
//! simulator); waits until every node reports; writes the context file so `herdctl` needs no
//! flags; and says what to try next. Running `up` again while the lab runs only reports it.
//! `down` stops everything the lab started — by the pids it recorded, plus the QEMU guests
//! (daemonized on purpose so they survive their agent) whose command line names the lab
//! directory — and `--purge` removes the lab's data.
//!
//! With `--netns` (QEMU driver, root only) every agent runs in a network namespace of its own,
//! joined to this machine by a bridge ([`network`]): migrations then cross a real link between
//! hosts instead of loopback. `down` removes the namespaces and the bridge.

pub mod network;
pub mod plan;
pub mod state;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use herd_store::Store;

use crate::context::{Context, context_path};
use crate::failure::Failure;
use network::LabNetwork;
use plan::{LabDriver, LabProcess, Ports};
use state::{LabState, is_alive};

/// How `up` was asked to run.
pub struct UpOptions {
    pub dir: PathBuf,
    pub nodes: usize,
    pub driver: Option<LabDriver>,
    /// Each agent in its own network namespace.
    pub netns: bool,
}

/// The lab directory: `$HERD_LAB`, else `~/.local/state/herd/lab`.
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HERD_LAB") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".local/state/herd/lab")
}

pub async fn up(options: UpOptions) -> Result<(), Failure> {
    if let Some(state) = LabState::load(&options.dir)?
        && state.processes.iter().any(|(_, pid)| is_alive(*pid))
    {
        println!(
            "The lab in {} is already running ({} nodes, {:?} driver): nothing to do.",
            options.dir.display(),
            state.nodes.len(),
            state.driver
        );
        println!("Stop it with `herdctl down`.");
        return Ok(());
    }
    let nodes = plan::node_names(options.nodes)?;
    let (driver, why) =
        plan::choose_driver(options.driver, find_on_path("qemu-system-x86_64").is_some());
    if options.netns {
        check_netns(driver)?;
    }
    println!(
        "Starting a lab of {} nodes with the {driver:?} driver ({why}) in {}",
        nodes.len(),
        options.dir.display()
    );
    for folder in ["logs", "nodes"] {
        std::fs::create_dir_all(options.dir.join(folder))
            .map_err(|e| Failure::new(format!("{}: {e}", options.dir.display())))?;
    }
    let ports = Ports {
        etcd_client: free_port()?,
        etcd_peer: free_port()?,
        metrics: free_port()?,
    };
    let mut lab = LabState {
        driver,
        nodes: nodes.clone(),
        ports: ports.clone(),
        processes: Vec::new(),
        network: options.netns.then(|| network::plan(&options.dir, &nodes)),
    };
    let result = start_all(&options.dir, &mut lab).await;
    lab.save(&options.dir)?;
    if let Err(failure) = result {
        stop(&options.dir, &lab);
        return Err(failure);
    }
    write_context(&ports)?;
    print_next_steps(&options.dir, &lab);
    Ok(())
}

/// `--netns` needs the QEMU driver (the simulator runs every node in one process), root, and
/// iproute2's `ip`.
fn check_netns(driver: LabDriver) -> Result<(), Failure> {
    if driver != LabDriver::Qemu {
        return Err(Failure::new(
            "--netns needs --driver qemu: the simulator runs every node in one process, so there \
             is no agent to put in a namespace",
        ));
    }
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Failure::new(
            "--netns creates network namespaces and a bridge, which needs root: run it as root, \
             or without --netns to run the lab on loopback ports",
        ));
    }
    if find_on_path("ip").is_none() {
        return Err(Failure::new(
            "--netns needs the ip command: apt-get install iproute2",
        ));
    }
    Ok(())
}

/// Builds the lab network, removing first what a lab of the same name left behind.
fn build_network(network: &LabNetwork) -> Result<(), Failure> {
    remove_network(network);
    for command in network.setup_commands() {
        let output = Command::new("ip")
            .args(&command)
            .output()
            .map_err(|e| Failure::new(format!("cannot run ip: {e}")))?;
        if !output.status.success() {
            return Err(Failure::new(format!(
                "ip {} failed: {}",
                command.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
    }
    Ok(())
}

/// Removes the lab network; parts already gone are skipped.
fn remove_network(network: &LabNetwork) {
    for command in network.teardown_commands() {
        let _ = Command::new("ip")
            .args(&command)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

async fn start_all(dir: &Path, lab: &mut LabState) -> Result<(), Failure> {
    let etcd = find_on_path("etcd")
        .ok_or_else(|| Failure::new("etcd is not installed: apt-get install etcd-server"))?;
    if let Some(network) = &lab.network {
        build_network(network)?;
        println!(
            "Built the lab network: bridge {} ({}/24); each node in its own namespace",
            network.bridge, network.host_address
        );
    }
    spawn(
        dir,
        &plan::etcd(&etcd, dir, &lab.ports, lab.network.as_ref()),
        lab,
    )?;
    let store = wait_for_etcd(&lab.ports.endpoint()).await?;
    spawn(
        dir,
        &plan::controller(&sibling("herd-controller")?, &lab.ports),
        lab,
    )?;
    if lab.driver == LabDriver::Qemu {
        fill_library(dir)?;
    }
    for agent in plan::agents(
        &sibling("herd-agent")?,
        dir,
        &lab.ports,
        lab.driver,
        &lab.nodes,
        lab.network.as_ref(),
    ) {
        spawn(dir, &agent, lab)?;
    }
    wait_for_nodes(&store, &lab.nodes).await
}

/// Puts the test guests (`spin.img`, `idle.img`, `counter.img`: 1 MiB raw boot disks) in the
/// storage host's library, so a Volume can start as one (`image.library.name: spin.img`).
fn fill_library(dir: &Path) -> Result<(), Failure> {
    let writer = sibling("herd-test-guest")?;
    let library = plan::library_dir(dir);
    for guest in ["spin", "idle", "counter"] {
        let output = Command::new(&writer)
            .arg(guest)
            .arg(&library)
            .output()
            .map_err(|e| Failure::new(format!("cannot run {}: {e}", writer.display())))?;
        if !output.status.success() {
            return Err(Failure::new(format!(
                "herd-test-guest {guest} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
    }
    println!(
        "Storage host: ferby; its library {} holds the test guests spin.img, idle.img, counter.img.",
        library.display()
    );
    Ok(())
}

/// Starts `process` in its own process group (so it outlives this command), logging to
/// `<lab>/logs/<name>.log`, and records its pid.
fn spawn(dir: &Path, process: &LabProcess, lab: &mut LabState) -> Result<(), Failure> {
    use std::os::unix::process::CommandExt;
    let log_path = dir.join("logs").join(format!("{}.log", process.name));
    let log = std::fs::File::create(&log_path)
        .map_err(|e| Failure::new(format!("{}: {e}", log_path.display())))?;
    let err = log.try_clone().map_err(|e| Failure::new(e.to_string()))?;
    let child = Command::new(&process.program)
        .args(&process.args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| Failure::new(format!("cannot start {}: {e}", process.program.display())))?;
    lab.processes.push((process.name.clone(), child.id()));
    Ok(())
}

async fn wait_for_etcd(endpoint: &str) -> Result<Store, Failure> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(store) = Store::connect(&[endpoint.to_owned()], "/herd").await
            && store.current_revision().await.is_ok()
        {
            return Ok(store);
        }
        if Instant::now() > deadline {
            return Err(Failure::new(
                "etcd did not start within 30 s; see its log in the lab's logs/ folder",
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_nodes(store: &Store, nodes: &[String]) -> Result<(), Failure> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (beats, _) = store.list_raw(&store.keys().heartbeats(), None).await?;
        let reporting = nodes
            .iter()
            .filter(|n| {
                beats
                    .iter()
                    .any(|(key, _, _)| key.ends_with(&format!("/{n}")))
            })
            .count();
        if reporting == nodes.len() {
            println!("All {} nodes are ready.", nodes.len());
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Failure::new(format!(
                "only {reporting} of {} nodes reported within 90 s; see the agents' logs",
                nodes.len()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn write_context(ports: &Ports) -> Result<(), Failure> {
    let Some(path) = context_path() else {
        return Ok(());
    };
    let context = Context {
        endpoints: vec![ports.endpoint()],
        prefix: "/herd".into(),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Failure::new(format!("{}: {e}", parent.display())))?;
    }
    let text = herd_crds::yaml::to_string(&context).map_err(|e| Failure::new(e.to_string()))?;
    std::fs::write(&path, text).map_err(|e| Failure::new(format!("{}: {e}", path.display())))?;
    println!(
        "Wrote the context to {}: herdctl now talks to this lab without flags.",
        path.display()
    );
    Ok(())
}

fn print_next_steps(dir: &Path, lab: &LabState) {
    if let Some(network) = &lab.network {
        println!("Nodes and their addresses (each only inside its namespace):");
        for link in &network.links {
            println!(
                "  {:<8} {:<15} ip netns exec {}",
                link.node, link.address, link.namespace
            );
        }
    }
    println!(
        "\nNext:\n  herdctl get nodes\n  herdctl apply -f manifests/examples/seed-demo/\n  herdctl get vms -w\n  herdctl get events -w\n  \
         herdctl down            # stop the lab ({} processes; logs in {})",
        lab.processes.len(),
        dir.join("logs").display()
    );
}

/// `herdctl down [--purge]`.
pub fn down(dir: &Path, purge: bool) -> Result<(), Failure> {
    match LabState::load(dir)? {
        Some(lab) => {
            stop(dir, &lab);
            println!(
                "Stopped the lab in {} ({} processes).",
                dir.display(),
                lab.processes.len()
            );
        }
        None => println!("No lab recorded in {}.", dir.display()),
    }
    if purge && dir.exists() {
        std::fs::remove_dir_all(dir)
            .map_err(|e| Failure::new(format!("{}: {e}", dir.display())))?;
        println!("Removed {}.", dir.display());
    }
    Ok(())
}

/// Stops the recorded processes (TERM, then KILL after 5 s), the lab's QEMU guests and its
/// NBD servers (both daemonized, so that they outlive an agent restart).
fn stop(dir: &Path, lab: &LabState) {
    let pids: Vec<u32> = lab
        .processes
        .iter()
        .rev()
        .map(|(_, pid)| *pid)
        .filter(|pid| is_alive(*pid))
        .collect();
    for pid in &pids {
        signal(*pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|pid| is_alive(*pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    for pid in pids.iter().filter(|pid| is_alive(**pid)) {
        signal(*pid, libc::SIGKILL);
    }
    for pid in processes_mentioning(&dir.join("nodes"))
        .into_iter()
        .chain(processes_mentioning(&plan::storage_dir(dir)))
    {
        signal(pid, libc::SIGKILL);
    }
    if let Some(network) = &lab.network {
        remove_network(network);
    }
}

fn signal(pid: u32, signal: i32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    // SAFETY: kill(2) with a pid this lab recorded; no memory is shared.
    unsafe { libc::kill(pid, signal) };
}

/// Live processes whose command line names `path` (the guests of the lab's nodes).
pub fn processes_mentioning(path: &Path) -> Vec<u32> {
    let needle = path.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            entry
                .file_name()
                .to_str()?
                .parse::<u32>()
                .ok()
                .map(|pid| (pid, entry.path()))
        })
        .filter(|(pid, path)| {
            let cmdline = std::fs::read(path.join("cmdline")).unwrap_or_default();
            is_alive(*pid) && String::from_utf8_lossy(&cmdline).contains(&needle)
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// A binary installed next to herdctl (`target/release/` or `/usr/bin/`).
fn sibling(name: &str) -> Result<PathBuf, Failure> {
    let exe = std::env::current_exe().map_err(|e| Failure::new(e.to_string()))?;
    let path = exe.with_file_name(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(Failure::new(format!(
            "{} not found next to herdctl: build it (cargo build --release -p {})",
            path.display(),
            package_of(name)
        )))
    }
}

fn package_of(binary: &str) -> &str {
    if binary == "herd-controller" {
        "herd-controller"
    } else {
        "herd-agent"
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> Result<u16, Failure> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Failure::new(e.to_string()))?;
    Ok(listener
        .local_addr()
        .map_err(|e| Failure::new(e.to_string()))?
        .port())
}
