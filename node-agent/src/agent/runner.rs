//! The agent loop.
//!
//! One pass: read this node's assignments (one range read, whose revision is the pass's
//! `observedRevision`), act on the hypervisor, sample it, publish the heartbeat on the lease,
//! and write the status of every VM whose state changed. A pass runs every heartbeat interval
//! (read from the Node spec at each pass, so it can be changed live) and at once when the
//! watch on this node's assignments reports a change. Graceful shutdowns run in the
//! background so one slow guest never holds up the others.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use herd_crds::assignment::Assignment;
use herd_crds::event::EventType;
use herd_crds::node::NodeSpec;
use herd_crds::{
    Node, Object, Resource, Validate, VirtualMachine, VirtualMachineSpec, VirtualMachineStatus,
};
use herd_store::codec::{decode_value, encode_value};
use herd_store::events::about;
use herd_store::txn::Precondition;
use herd_store::{EventRecorder, Lease, Store, StoreError};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::migration::MigrationTracker;
use super::plan::{DomainAction, plan_domains};
use super::report::{NodeFacts, heartbeat, materially_differs, vm_status};
use crate::hypervisor::{DomainInfo, Hypervisor, HypervisorError};

/// A VM's status is written again after this long even when nothing changed here.
const STATUS_REFRESH: Duration = Duration::from_secs(30);

/// How the agent runs.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub node: String,
    /// The address other nodes reach this one at (reported in the heartbeat).
    pub address: Option<String>,
    /// The heartbeat lease: the node is NotReady this long after the agent stops.
    pub lease_ttl: Duration,
    /// How long a guest has to power down before it is destroyed.
    pub shutdown_timeout: Duration,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hypervisor(#[from] HypervisorError),
    #[error("the heartbeat lease expired: etcd was unreachable for longer than {0:?}")]
    LeaseLost(Duration),
}

/// The agent's state between passes.
pub struct Agent<H: Hypervisor> {
    store: Store,
    hypervisor: Arc<H>,
    config: AgentConfig,
    recorder: EventRecorder,
    lease: Lease,
    /// VMs whose graceful shutdown is under way.
    stopping: Arc<Mutex<HashSet<String>>>,
    /// The status last written per VM and when, to write only changes.
    written: HashMap<String, (VirtualMachineStatus, std::time::Instant)>,
    /// Problems already reported, so each becomes one Event (key: VM and message).
    reported: HashSet<(String, String)>,
    migrations: MigrationTracker,
}

/// Registers the node and runs passes until the lease is lost.
pub async fn run<H: Hypervisor>(
    store: Store,
    hypervisor: H,
    config: AgentConfig,
) -> Result<(), AgentError> {
    register(&store, &config.node).await?;
    let lease = store.grant_lease(config.lease_ttl).await?;
    let recorder = EventRecorder::new(&store, &format!("herd-agent/{}", config.node));
    let mut agent = Agent {
        store,
        hypervisor: Arc::new(hypervisor),
        config,
        recorder,
        lease,
        stopping: Arc::new(Mutex::new(HashSet::new())),
        written: HashMap::new(),
        reported: HashSet::new(),
        migrations: MigrationTracker::default(),
    };
    let changed = Arc::new(Notify::new());
    let watch = tokio::spawn(watch_assignments(
        agent.store.clone(),
        agent.config.node.clone(),
        changed.clone(),
    ));
    let result = agent.serve(&changed).await;
    watch.abort();
    result
}

/// Creates this node's `Node` object unless it exists; never overwrites its spec.
async fn register(store: &Store, node: &str) -> Result<(), StoreError> {
    match store
        .create::<Node>(&Object::new(node, NodeSpec::default()))
        .await
    {
        Ok(_) => {
            info!(%node, "registered the node");
            Ok(())
        }
        Err(StoreError::AlreadyExists { .. }) => Ok(()),
        Err(error) => Err(error),
    }
}

/// Wakes the agent whenever this node's assignments change.
async fn watch_assignments(store: Store, node: String, changed: Arc<Notify>) {
    let Ok(prefix) = store.keys().node_assignments(&node) else {
        return;
    };
    let mut watcher = store.watch_prefix(&prefix, None);
    loop {
        watcher.next().await;
        changed.notify_one();
    }
}

impl<H: Hypervisor> Agent<H> {
    async fn serve(&mut self, changed: &Notify) -> Result<(), AgentError> {
        loop {
            if self.lease.is_lost() {
                return Err(AgentError::LeaseLost(self.lease.ttl()));
            }
            let spec = self.node_spec().await;
            if let Err(error) = self.pass(&spec).await {
                warn!(node = %self.config.node, %error, "pass failed; retrying at the next interval");
            }
            // While a migration runs here, follow it closely.
            let interval = if self.migrations.busy() {
                Duration::from_millis(200)
            } else {
                self.interval(&spec)
            };
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = changed.notified() => {}
            }
        }
    }

    /// The Node spec, or the defaults when it cannot be read.
    async fn node_spec(&self) -> NodeSpec {
        match self.store.get::<Node>(&self.config.node).await {
            Ok(Some(node)) => node.spec,
            Ok(None) => NodeSpec::default(),
            Err(error) => {
                warn!(%error, "cannot read the Node spec; using defaults");
                NodeSpec::default()
            }
        }
    }

    /// The heartbeat interval, kept under half the lease so one late beat loses nothing.
    fn interval(&self, spec: &NodeSpec) -> Duration {
        let wanted = Duration::from_secs(u64::from(spec.heartbeat_interval_seconds.max(1)));
        let limit = self.lease.ttl() / 2;
        if wanted > limit {
            warn!(
                ?wanted,
                ?limit,
                "heartbeat interval exceeds half the lease TTL; using the limit"
            );
        }
        wanted.min(limit)
    }

    async fn pass(&mut self, spec: &NodeSpec) -> Result<(), AgentError> {
        let (assignments, revision) = self.read_assignments().await?;
        let domains = self.hypervisor.list().await?;
        for action in plan_domains(&assignments, &domains) {
            self.act(action).await;
        }
        for (vm, reason, message) in self
            .migrations
            .step(self.hypervisor.as_ref(), &assignments, &domains)
            .await
        {
            self.report(&vm, reason, &message).await;
        }
        let host = self.hypervisor.host_info().await?;
        let sample = self.hypervisor.sample().await?;
        let facts = NodeFacts {
            address: self.config.address.clone(),
            driver: self.hypervisor.driver(),
            accepts_migrations: spec.accept_migrations,
            cpus: spec.capacity.as_ref().and_then(|c| c.cpus),
            memory_mib: spec.capacity.as_ref().and_then(|c| c.memory_mib),
        };
        let mut status = heartbeat(&host, &sample, &facts, revision, Utc::now());
        self.migrations.annotate(&mut status);
        let value = encode_value(&status).map_err(|message| StoreError::Encode {
            kind: "heartbeat".into(),
            name: self.config.node.clone(),
            message,
        })?;
        let key = self.store.keys().heartbeat(&self.config.node)?;
        self.store
            .transaction()
            .put_raw(key, value, Some(self.lease.id()), Precondition::None)
            .commit()
            .await?;
        self.write_statuses(&assignments, &sample.domains).await;
        Ok(())
    }

    /// This node's valid assignments by VM name, and the revision read at. An assignment that
    /// does not decode or validate is reported once as an Event and left alone.
    async fn read_assignments(
        &mut self,
    ) -> Result<(BTreeMap<String, Assignment>, i64), AgentError> {
        let prefix = self.store.keys().node_assignments(&self.config.node)?;
        let (entries, revision) = self.store.list_raw(&prefix, None).await?;
        let mut assignments = BTreeMap::new();
        for (key, value, _) in entries {
            let Some(vm) = key.strip_prefix(&prefix).map(str::to_owned) else {
                continue;
            };
            match decode_value::<Assignment>(&key, &value) {
                Ok(assignment) => match assignment.validate().first() {
                    None if assignment.domain.name == vm => {
                        assignments.insert(vm, assignment);
                    }
                    None => {
                        self.report(
                            &vm,
                            "InvalidAssignment",
                            &format!(
                                "{key}: domain.name {:?} does not match the key",
                                assignment.domain.name
                            ),
                        )
                        .await
                    }
                    Some(problem) => {
                        self.report(&vm, "InvalidAssignment", &format!("{key}: {problem}"))
                            .await
                    }
                },
                Err(error) => {
                    self.report(&vm, "InvalidAssignment", &error.to_string())
                        .await
                }
            }
        }
        Ok((assignments, revision))
    }

    async fn act(&mut self, action: DomainAction) {
        let hypervisor = self.hypervisor.clone();
        let (vm, result) = match action {
            DomainAction::Create { spec, paused } => {
                let name = spec.name.clone();
                info!(vm = %name, paused, "creating the domain");
                (name, hypervisor.create(&spec, paused).await.map(|_| ()))
            }
            DomainAction::Pause(name) => (name.clone(), hypervisor.pause(&name).await),
            DomainAction::Unpause(name) => (name.clone(), hypervisor.unpause(&name).await),
            DomainAction::Destroy(name) => {
                info!(vm = %name, "destroying the domain");
                (name.clone(), hypervisor.destroy(&name).await)
            }
            DomainAction::Shutdown(name) => {
                self.shutdown_in_background(name);
                return;
            }
        };
        if let Err(error) = result {
            self.report(&vm, "DomainOperationFailed", &error.to_string())
                .await;
        }
    }

    fn shutdown_in_background(&self, name: String) {
        if !self
            .stopping
            .lock()
            .expect("stopping lock")
            .insert(name.clone())
        {
            return; // already under way
        }
        let (hypervisor, stopping, timeout) = (
            self.hypervisor.clone(),
            self.stopping.clone(),
            self.config.shutdown_timeout,
        );
        tokio::spawn(async move {
            info!(vm = %name, ?timeout, "shutting the guest down");
            if let Err(error) = hypervisor.shutdown(&name, timeout).await {
                warn!(vm = %name, %error, "graceful shutdown failed");
            }
            stopping.lock().expect("stopping lock").remove(&name);
        });
    }

    /// Writes the status of each assigned VM whose state changed (CAS; retried next pass).
    async fn write_statuses(
        &mut self,
        assignments: &BTreeMap<String, Assignment>,
        domains: &[DomainInfo],
    ) {
        let now = Utc::now();
        for (vm, assignment) in assignments {
            let domain = domains.iter().find(|d| &d.name == vm);
            // Rewritten at least every STATUS_REFRESH, in case another writer changed it.
            let last = self
                .written
                .get(vm)
                .filter(|(_, at)| at.elapsed() < STATUS_REFRESH)
                .map(|(s, _)| s);
            let candidate = vm_status(
                &last.cloned().unwrap_or_default(),
                &self.config.node,
                assignment,
                domain,
                now,
            );
            if last.is_some_and(|last| !materially_differs(last, &candidate)) {
                continue;
            }
            match self.write_status(vm, assignment, domain).await {
                Ok(written) => {
                    self.written
                        .insert(vm.clone(), (written, std::time::Instant::now()));
                }
                Err(error) => warn!(%vm, %error, "cannot write the VM status; retrying next pass"),
            }
        }
        self.written.retain(|vm, _| assignments.contains_key(vm));
    }

    async fn write_status(
        &self,
        vm: &str,
        assignment: &Assignment,
        domain: Option<&DomainInfo>,
    ) -> Result<VirtualMachineStatus, StoreError> {
        let current = self.store.get_status::<VirtualMachineSpec>(vm).await?;
        let (base, precondition) = match current {
            Some(versioned) => (versioned.value, Precondition::Revision(versioned.revision)),
            None => (VirtualMachineStatus::default(), Precondition::Absent),
        };
        if base
            .node_name
            .as_deref()
            .is_some_and(|node| node != self.config.node)
        {
            // The controller moved the VM (a live migration switched it to another node): what
            // this node still sees of it is the left-over source, not the VM's state.
            return Ok(base);
        }
        let status = vm_status(&base, &self.config.node, assignment, domain, Utc::now());
        self.store
            .put_status::<VirtualMachineSpec>(vm, &status, precondition)
            .await?;
        Ok(status)
    }

    /// Records a Warning Event about `vm` once per distinct message.
    async fn report(&mut self, vm: &str, reason: &str, message: &str) {
        warn!(%vm, %reason, %message, "problem");
        if !self.reported.insert((vm.to_owned(), message.to_owned())) {
            return;
        }
        let name = if herd_crds::names::is_dns_label(vm) {
            vm
        } else {
            "invalid-name"
        };
        if let Err(error) = self
            .recorder
            .record(
                about(VirtualMachine::KIND, name),
                EventType::Warning,
                reason,
                message,
            )
            .await
        {
            warn!(%error, "cannot record the event");
        }
    }
}
