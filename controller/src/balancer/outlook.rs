//! Outlook: each VM's demand predicted from its recent history, and a host's predicted peak
//! (pure). The `forecast` and `density` policies judge nodes by this instead of the current
//! sample alone.
//!
//! - **A VM's history** ([`DemandHistory`]): its vCPUs' demand (reference percent) at each of
//!   the last [`HISTORY_SAMPLES`] balancer samples, the current one included.
//! - **A VM's forecast** ([`VmForecast`]): per vCPU, the mean and the variance of that window.
//!   A VM with one sample is forecast at that sample with no variance.
//! - **A host's outlook** ([`Outlook`]): its background plus the sum of its vCPUs' means
//!   (each capped at one CPU), and the sum of their variances, in percent of one of its CPUs
//!   (a vCPU's deviation counts only up to what keeps its mean + 2σ within one CPU: it cannot
//!   use more).
//!   Its **predicted peak** is `(mean + PEAK_SIGMAS × √variance) / cpus`: the load it reaches
//!   with a probability of about 2% per sample when its VMs vary independently around their
//!   recent means. A host is **predicted overloaded** when that peak is above the threshold
//!   and it is contended by the same rule as `hot` ([`super::contention`]) on the predicted
//!   values; a target **fits** a VM when its predicted peak with the VM stays at or under the
//!   threshold.
//!
//! Summing variances (not peaks) is what makes a node of many light, independent VMs look as
//! safe as it is: eight VMs that each burst now and then rarely burst together.

use std::collections::VecDeque;

use super::contention;

/// Samples of history kept per VM (an hour at the backtest's 5-minute samples).
pub const HISTORY_SAMPLES: usize = 12;

/// Standard deviations above the mean that the predicted peak allows for.
pub const PEAK_SIGMAS: f64 = 2.0;

/// Standard deviations a node must stay under the threshold with to take VMs of a node being
/// emptied (`density`): consolidation is optional, so it keeps a wider margin than shedding,
/// which is what stops it from packing a node that soon has to shed again.
pub const DRAIN_SIGMAS: f64 = 3.0;

/// One VM's recent demand, newest last: per sample, each vCPU's demand in reference percent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DemandHistory {
    samples: VecDeque<Vec<f64>>,
}

impl DemandHistory {
    /// Adds the current sample; the oldest beyond [`HISTORY_SAMPLES`] is dropped, and a
    /// change in the number of vCPUs starts the history again.
    pub fn push(&mut self, reference: Vec<f64>) {
        if self
            .samples
            .back()
            .is_some_and(|last| last.len() != reference.len())
        {
            self.samples.clear();
        }
        if self.samples.len() == HISTORY_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(reference);
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Mean and variance of each vCPU over the window; `None` without samples.
    pub fn forecast(&self) -> Option<VmForecast> {
        let vcpus = self.samples.back()?.len();
        let count = self.samples.len() as f64;
        let mut mean = vec![0.0; vcpus];
        for sample in &self.samples {
            mean.iter_mut()
                .zip(sample)
                .for_each(|(m, d)| *m += d / count);
        }
        let mut variance = vec![0.0; vcpus];
        for sample in &self.samples {
            for ((v, d), m) in variance.iter_mut().zip(sample).zip(&mean) {
                *v += (d - m).powi(2) / count;
            }
        }
        Some(VmForecast { mean, variance })
    }
}

/// A VM's predicted demand, per vCPU, in reference percent (variance in its square).
#[derive(Clone, Debug, PartialEq)]
pub struct VmForecast {
    pub mean: Vec<f64>,
    pub variance: Vec<f64>,
}

impl VmForecast {
    /// A VM known by one sample only: that sample, no variance.
    pub fn current(reference: &[f64]) -> Self {
        Self {
            mean: reference.to_vec(),
            variance: vec![0.0; reference.len()],
        }
    }

    /// The sum of the means, reference percent.
    pub fn total_mean(&self) -> f64 {
        self.mean.iter().sum()
    }
}

/// A host's predicted demand, in percent of one of its CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Outlook {
    /// Background plus the vCPUs' means (each at most one CPU).
    pub mean: f64,
    /// The sum of the vCPUs' variances.
    pub variance: f64,
    /// vCPUs whose mean makes them busy.
    pub busy: u32,
    pub cpus: u32,
    /// Its CPUs' speed (reference percent per local percent).
    pub speed: f64,
}

impl Outlook {
    /// A host of `cpus` CPUs of `speed`, with `background` percent of its own work.
    pub fn empty(cpus: u32, speed: f64, background: f64) -> Self {
        Self {
            mean: background,
            variance: 0.0,
            busy: 0,
            cpus: cpus.max(1),
            speed: if speed > 0.0 { speed } else { 1.0 },
        }
    }

    /// This outlook with `vm` added (`sign` 1.0) or removed (`sign` −1.0).
    fn shifted(mut self, vm: &VmForecast, sign: f64) -> Self {
        for (mean, variance) in vm.mean.iter().zip(&vm.variance) {
            let local = (mean / self.speed).min(100.0);
            // A vCPU never uses more than one CPU: its spread counts only up to that.
            let room = ((100.0 - local) / PEAK_SIGMAS).max(0.0);
            let deviation = (variance.sqrt() / self.speed).min(room);
            self.mean += sign * local;
            self.variance += sign * deviation * deviation;
            if contention::is_busy(local) {
                self.busy = if sign > 0.0 {
                    self.busy + 1
                } else {
                    self.busy.saturating_sub(1)
                };
            }
        }
        self.mean = self.mean.max(0.0);
        self.variance = self.variance.max(0.0);
        self
    }

    pub fn with(self, vm: &VmForecast) -> Self {
        self.shifted(vm, 1.0)
    }

    pub fn without(self, vm: &VmForecast) -> Self {
        self.shifted(vm, -1.0)
    }

    /// Predicted mean load, percent of the host (uncapped).
    pub fn mean_percent(&self) -> f64 {
        self.mean / f64::from(self.cpus)
    }

    /// Predicted peak load, percent of the host (uncapped).
    pub fn peak_percent(&self) -> f64 {
        self.peak_with(PEAK_SIGMAS)
    }

    /// The mean plus `sigmas` standard deviations, percent of the host (uncapped).
    pub fn peak_with(&self, sigmas: f64) -> f64 {
        (self.mean + sigmas * self.variance.sqrt()) / f64::from(self.cpus)
    }

    /// The peak is above the threshold with contention, as `hot` is judged now.
    pub fn overloaded(&self, threshold: f64) -> bool {
        let peak = self.peak_percent();
        peak > threshold && contention::is_contended(self.busy, self.cpus, peak)
    }

    /// The peak stays at or under the threshold.
    pub fn fits(&self, threshold: f64) -> bool {
        self.peak_percent() <= threshold
    }

    /// The mean plus [`DRAIN_SIGMAS`] standard deviations stays at or under the threshold.
    pub fn fits_lastingly(&self, threshold: f64) -> bool {
        self.peak_with(DRAIN_SIGMAS) <= threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(samples: &[f64]) -> DemandHistory {
        let mut history = DemandHistory::default();
        for s in samples {
            history.push(vec![*s]);
        }
        history
    }

    #[test]
    fn the_window_keeps_the_last_samples() {
        let mut long = DemandHistory::default();
        for i in 0..20 {
            long.push(vec![f64::from(i)]);
        }
        assert_eq!(long.len(), HISTORY_SAMPLES);
        let forecast = long.forecast().unwrap();
        // 8..=19: mean 13.5.
        assert_eq!(forecast.mean, [13.5]);
        long.push(vec![1.0, 2.0]);
        assert_eq!(long.len(), 1, "a new vCPU count starts again");
    }

    #[test]
    fn a_steady_vm_has_no_variance_and_a_bursty_one_has() {
        let steady = history(&[40.0, 40.0, 40.0, 40.0]).forecast().unwrap();
        assert_eq!((steady.mean[0], steady.variance[0]), (40.0, 0.0));
        let bursty = history(&[0.0, 80.0, 0.0, 80.0]).forecast().unwrap();
        assert_eq!((bursty.mean[0], bursty.variance[0]), (40.0, 1600.0));
        assert!(DemandHistory::default().forecast().is_none());
    }

    #[test]
    fn a_host_of_bursty_vms_is_predicted_overloaded_before_its_mean_is() {
        let bursty = history(&[0.0, 80.0, 0.0, 80.0]).forecast().unwrap();
        let steady = history(&[40.0; 4]).forecast().unwrap();
        let host = |vm: &VmForecast| (0..4).fold(Outlook::empty(2, 1.0, 0.0), |o, _| o.with(vm));
        let calm = host(&steady);
        let risky = host(&bursty);
        assert_eq!(calm.mean_percent(), risky.mean_percent());
        assert_eq!(calm.peak_percent(), 80.0);
        assert!(!calm.overloaded(80.0) && calm.fits(80.0));
        // Each VM's deviation (40) counts up to what keeps it within one CPU: (100 − 40) / 2
        // = 30. 160% + 2 × √(4 × 900) = 280% of one CPU: 140% of two, above capacity.
        assert_eq!(risky.peak_percent(), 140.0);
        assert!(risky.overloaded(80.0) && !risky.fits(80.0));
        // Two bursty VMs left: (80 + 2 × √1800) / 2 = 82.4%, (80 + 3 × √1800) / 2 = 103.6%.
        let two = risky.without(&bursty).without(&bursty);
        assert!((two.peak_percent() - (80.0 + 2.0 * 1800_f64.sqrt()) / 2.0).abs() < 1e-9);
        assert!(!two.fits_lastingly(80.0));
        assert!(calm.fits_lastingly(80.0), "no variance: the same peak");
    }

    #[test]
    fn one_busy_vm_per_cpu_is_not_overloaded_at_full_load() {
        let full = VmForecast::current(&[100.0]);
        let host = Outlook::empty(1, 1.0, 0.0).with(&full);
        assert_eq!(host.peak_percent(), 100.0);
        assert!(!host.overloaded(80.0), "no contention");
        assert!(host.with(&full).overloaded(80.0));
        assert!(!host.fits(80.0));
        // A spinning guest whose measured demand wobbles around 100%: still one CPU at most.
        let wobbly = VmForecast {
            mean: vec![100.0],
            variance: vec![400.0],
        };
        let alone = Outlook::empty(1, 1.0, 0.0).with(&wobbly);
        assert_eq!(alone.peak_percent(), 100.0);
        assert!(!alone.overloaded(80.0));
    }

    #[test]
    fn demand_is_counted_in_the_hosts_cpus() {
        let vm = VmForecast::current(&[100.0]);
        let fast = Outlook::empty(2, 2.0, 10.0).with(&vm);
        assert_eq!(fast.mean_percent(), 30.0, "(10 + 50) / 2");
        assert_eq!(fast.busy, 1);
    }
}
