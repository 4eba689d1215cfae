//! One sample's work, shared by both policies: the working copy of the cluster, the guards
//! applied to it, and the decision being written (pure).

use herd_crds::cluster_policy::{BalancerPolicy, MigrationLimits};

use super::decision::{Decision, LoadSummary, MoveReason, PlannedMove, Prediction};
use super::guards::{self, Refusal};
use super::observe::{PastMove, VmView};
use super::points::PointSample;
use super::projection::ClusterModel;
use super::state::BalancerState;

/// A target that passed every guard for a VM, with its projection.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Fit {
    pub host: usize,
    pub before: LoadSummary,
    pub after: LoadSummary,
}

/// The work of one sample.
pub(super) struct Round<'a, 's> {
    pub policy: &'a BalancerPolicy,
    pub limits: &'a MigrationLimits,
    pub state: &'s mut BalancerState,
    pub model: ClusterModel<'a>,
    pub now: f64,
    pub decision: Decision,
}

/// The details of a move that the model does not hold.
pub(super) struct MoveNote {
    pub reason: MoveReason,
    pub offers: Vec<String>,
    pub points_history: Vec<PointSample>,
    pub spread: (Option<f64>, Option<f64>),
    pub explanation: String,
}

impl<'a> Round<'a, '_> {
    pub fn cooldown(&self) -> f64 {
        f64::from(self.policy.cooldown_seconds)
    }

    /// Every move of `vm` known: the shell's history and the moves this balancer planned.
    pub fn history<'h>(&'h self, vm: &'h VmView) -> impl Iterator<Item = &'h PastMove> {
        vm.moves
            .iter()
            .chain(self.state.planned_moves(&vm.name).iter())
    }

    /// The VM guards: permission, running, not migrating, cooldown.
    pub fn check_vm(&self, vm: &VmView) -> Result<(), Refusal> {
        guards::check_vm(vm, self.model.is_moving(&vm.name))?;
        guards::check_cooldown(self.history(vm), self.cooldown(), self.now)
    }

    /// The stay guard (`forecast`, `density`) for a VM on `hosts[source]`.
    pub fn check_stay(&self, vm: &VmView, source: usize) -> Result<(), Refusal> {
        let now = self.model.hosts[source].cpu.summary(self.model.threshold);
        let saturated = now.load_percent >= 100.0 && now.demand_percent > 100.0;
        let stay = f64::from(self.policy.min_stay_seconds);
        guards::check_stay(self.history(vm), stay, self.now, saturated)
    }

    /// Room under the limits for one more migration leaving `hosts[source]`.
    pub fn check_limits(&self, source: usize) -> Result<(), Refusal> {
        let outbound = self.model.hosts[source].outbound;
        guards::check_limits(outbound, self.model.migrations, self.limits)
    }

    /// The target guards for `vm` (whose vCPUs want `demands`, reference percent) on
    /// `hosts[target]`: placement, acceptMigrations, ping-pong, projection.
    pub fn check_target(
        &self,
        vm: &VmView,
        demands: &[f64],
        target: usize,
    ) -> Result<Fit, Refusal> {
        let host = &self.model.hosts[target];
        guards::check_target(vm, host)?;
        guards::check_ping_pong(self.history(vm), host.name(), self.cooldown(), self.now)?;
        let threshold = self.model.threshold;
        let before = host.cpu.summary(threshold);
        let after = host.cpu.summary_with(demands, threshold);
        guards::check_projection(&before, &after)?;
        Ok(Fit {
            host: target,
            before,
            after,
        })
    }

    /// Plans the move of `model.vms[vm]` from `hosts[source]` to `fit.host`, applies it to
    /// the model and remembers it.
    pub fn plan(&mut self, vm: usize, source: usize, fit: Fit, note: MoveNote) {
        let view = self.model.vms[vm];
        let threshold = self.model.threshold;
        let from = &self.model.hosts[source];
        let predicted = Prediction {
            source_before: from.cpu.summary(threshold),
            source_after: from.cpu.summary_without(&view.name, threshold),
            target_before: fit.before,
            target_after: fit.after,
            spread_before: note.spread.0,
            spread_after: note.spread.1,
        };
        let from_name = from.name().to_owned();
        let to_name = self.model.hosts[fit.host].name().to_owned();
        self.state
            .remember(&view.name, &from_name, &to_name, self.now);
        self.model.apply_move(vm, source, fit.host);
        self.decision.moves.push(PlannedMove {
            vm: view.name.clone(),
            from: from_name,
            to: to_name,
            reason: note.reason,
            memory_mib: view.memory_mib(),
            predicted,
            offers: note.offers,
            points_history: note.points_history,
            explanation: note.explanation,
        });
    }
}
