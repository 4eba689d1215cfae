//! The VM verbs: `start`, `stop`, `shutdown`, `pause`, `unpause`, `destroy` (each a change of
//! `spec.runState`, written with a compare-and-swap and retried on conflict) and `migrate`
//! (which creates a `Migration`).
//!
//! `shutdown` is `stop`: for a Stopped VM the node agent shuts the guest down gracefully.
//! `destroy` is `stop` with the annotation `herd.dev/stop-mode: destroy`, which asks the
//! agent to pull the plug instead; `start` and `stop` remove that annotation again.

use herd_crds::migration::{MigrationReason, MigrationSpec};
use herd_crds::names::MAX_NAME_LEN;
use herd_crds::{Migration, Node, Object, RunState, VirtualMachine};
use herd_store::{Store, StoreError};

use crate::args::{MigrateArgs, VmArg};
use crate::commands::Target;
use crate::edit::{Edited, edit};
use crate::failure::{Failure, object_ref};
use crate::output::line;

/// The annotation that says how a Stopped VM is to be stopped.
pub const STOP_MODE: &str = "herd.dev/stop-mode";
/// Its value for `destroy`: stop at once, without a graceful shutdown.
pub const STOP_MODE_DESTROY: &str = "destroy";

/// A change of a VM's run state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmVerb {
    Start,
    Stop,
    Shutdown,
    Pause,
    Unpause,
    Destroy,
}

impl VmVerb {
    /// What is printed once the request is recorded.
    pub fn past(self) -> &'static str {
        match self {
            Self::Start => "started",
            Self::Stop => "stopped",
            Self::Shutdown => "shut down",
            Self::Pause => "paused",
            Self::Unpause => "unpaused",
            Self::Destroy => "destroyed",
        }
    }
}

/// Applies `verb` to the VM's spec (pure). Pausing or unpausing a Stopped VM is refused:
/// start it first.
pub fn request(verb: VmVerb, vm: &mut VirtualMachine) -> Result<(), String> {
    let annotations = &mut vm.metadata.annotations;
    let run_state = match verb {
        VmVerb::Start | VmVerb::Stop | VmVerb::Shutdown => {
            annotations.remove(STOP_MODE);
            if verb == VmVerb::Start {
                RunState::Running
            } else {
                RunState::Stopped
            }
        }
        VmVerb::Destroy => {
            annotations.insert(STOP_MODE.into(), STOP_MODE_DESTROY.into());
            RunState::Stopped
        }
        VmVerb::Pause | VmVerb::Unpause if vm.spec.run_state == RunState::Stopped => {
            return Err(format!(
                "is stopped; start it first (herdctl start {})",
                vm.metadata.name
            ));
        }
        VmVerb::Pause => RunState::Paused,
        VmVerb::Unpause => RunState::Running,
    };
    vm.spec.run_state = run_state;
    Ok(())
}

pub async fn run_state(target: &Target, verb: VmVerb, args: VmArg) -> Result<(), Failure> {
    let store = target.connect().await?;
    let (vm, edited) = edit::<VirtualMachine, _>(&store, &args.vm, |vm| request(verb, vm)).await?;
    let what = object_ref("VirtualMachine", &args.vm);
    match edited {
        Edited::Changed => line(format!("{what} {}", verb.past())),
        Edited::Unchanged => line(format!(
            "{what} unchanged (runState already {:?})",
            vm.spec.run_state
        )),
    }
}

pub async fn migrate(target: &Target, args: MigrateArgs) -> Result<(), Failure> {
    let store = target.connect().await?;
    let vm = store
        .get_with_status::<herd_crds::VirtualMachineSpec>(&args.vm)
        .await?
        .ok_or_else(|| Failure::new(format!("virtualmachine {:?} not found", args.vm)))?;
    let node = vm.status.as_ref().and_then(|s| s.node_name.clone());
    let Some(node) = node else {
        return Err(Failure::new(format!(
            "virtualmachine/{} is not placed on any node yet; there is nothing to migrate",
            args.vm
        )));
    };
    if let Some(to) = &args.to {
        if *to == node {
            return Err(Failure::new(format!(
                "virtualmachine/{} already runs on {to}",
                args.vm
            )));
        }
        if store.get::<Node>(to).await?.is_none() {
            return Err(Failure::new(format!(
                "node {to:?} not found; herdctl get nodes lists them"
            )));
        }
    }
    let name = create_migration(&store, &args.vm, args.to.clone(), MigrationReason::Manual).await?;
    line(format!("migration/{name} created"))
}

/// Creates a Migration of `vm` named `<vm>-<5 random characters>`; returns its name.
pub async fn create_migration(
    store: &Store,
    vm: &str,
    target_node: Option<String>,
    reason: MigrationReason,
) -> Result<String, Failure> {
    let spec = MigrationSpec {
        vm: vm.to_owned(),
        target_node,
        reason,
    };
    for _ in 0..3 {
        let suffix: String = uuid::Uuid::new_v4().simple().to_string()[..5].to_owned();
        let name = migration_name(vm, &suffix);
        let migration: Migration = Object::new(name.clone(), spec.clone());
        match store.create(&migration).await {
            Ok(_) => return Ok(name),
            Err(StoreError::AlreadyExists { .. }) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(Failure::new(format!(
        "could not find a free name for a migration of {vm}; try again"
    )))
}

/// `<vm>-<suffix>`, the VM's part shortened so that the name stays a valid object name.
pub fn migration_name(vm: &str, suffix: &str) -> String {
    let room = MAX_NAME_LEN - suffix.len() - 1;
    let stem = vm[..vm.len().min(room)].trim_end_matches('-');
    format!("{stem}-{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_crds::names::is_dns_label;

    fn vm(run_state: RunState) -> VirtualMachine {
        let mut vm: VirtualMachine = Object::new(
            "small-1",
            herd_crds::yaml::from_str("memoryMiB: 512").unwrap(),
        );
        vm.spec.run_state = run_state;
        vm
    }

    #[test]
    fn each_verb_sets_the_run_state() {
        let cases = [
            (VmVerb::Start, RunState::Stopped, RunState::Running),
            (VmVerb::Stop, RunState::Running, RunState::Stopped),
            (VmVerb::Shutdown, RunState::Paused, RunState::Stopped),
            (VmVerb::Pause, RunState::Running, RunState::Paused),
            (VmVerb::Unpause, RunState::Paused, RunState::Running),
            (VmVerb::Destroy, RunState::Running, RunState::Stopped),
        ];
        for (verb, from, to) in cases {
            let mut machine = vm(from);
            request(verb, &mut machine).unwrap();
            assert_eq!(machine.spec.run_state, to, "{verb:?}");
        }
    }

    #[test]
    fn destroy_is_a_stop_with_an_annotation_that_start_removes() {
        let mut machine = vm(RunState::Running);
        request(VmVerb::Destroy, &mut machine).unwrap();
        assert_eq!(machine.metadata.annotations[STOP_MODE], "destroy");
        request(VmVerb::Start, &mut machine).unwrap();
        assert!(machine.metadata.annotations.is_empty());
    }

    #[test]
    fn a_stopped_vm_is_neither_paused_nor_unpaused() {
        for verb in [VmVerb::Pause, VmVerb::Unpause] {
            let error = request(verb, &mut vm(RunState::Stopped)).unwrap_err();
            assert!(error.contains("start it first"), "{error}");
        }
    }

    #[test]
    fn migration_names_stay_valid_names() {
        assert_eq!(migration_name("small-1", "a1b2c"), "small-1-a1b2c");
        let long = format!("{}-x", "a".repeat(56));
        let name = migration_name(&long, "a1b2c");
        assert!(is_dns_label(&name) && name.len() <= MAX_NAME_LEN, "{name}");
        assert_eq!(name, format!("{}-a1b2c", "a".repeat(56)));
    }
}
