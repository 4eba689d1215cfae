//! The controller's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a reconcile: its outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// Every metric the controller exports.
#[derive(Clone)]
pub struct Metrics {
    pub reconciles: Family<ResultLabel, Counter>,
    pub reconcile_seconds: Histogram,
    pub queue_depth: Gauge,
    pub placements: Counter,
    pub unschedulable: Counter,
    pub errors: Counter,
    pub is_leader: Gauge,
}

impl Metrics {
    /// New metrics, registered in `registry` with the `herd_controller` prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            reconciles: Family::default(),
            reconcile_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            queue_depth: Gauge::default(),
            placements: Counter::default(),
            unschedulable: Counter::default(),
            errors: Counter::default(),
            is_leader: Gauge::default(),
        };
        let registry = registry.sub_registry_with_prefix("herd_controller");
        registry.register(
            "reconciles",
            "VM reconciles by result",
            metrics.reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one VM reconcile",
            metrics.reconcile_seconds.clone(),
        );
        registry.register(
            "queue_depth",
            "Keys waiting in the work queue",
            metrics.queue_depth.clone(),
        );
        registry.register(
            "placements",
            "VMs placed on a node",
            metrics.placements.clone(),
        );
        registry.register(
            "unschedulable",
            "Scheduling attempts that found no node",
            metrics.unschedulable.clone(),
        );
        registry.register(
            "errors",
            "Reconciles that failed and were retried",
            metrics.errors.clone(),
        );
        registry.register(
            "leader",
            "1 while this controller is the leader",
            metrics.is_leader.clone(),
        );
        metrics
    }
}
