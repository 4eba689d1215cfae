//! CPU use computed from two `xl vcpu-list` samples: pure arithmetic on explicit timestamps.
//!
//! Xen reports the CPU seconds each vCPU has used since it started. The use over an interval is
//! the difference of two readings divided by the wall time between them. A vCPU that is new, or
//! whose reading went backwards (its domain id was reused), counts as idle for that interval.
//! The load of a physical CPU is the sum of the vCPUs that last ran on it: an approximation, as
//! a vCPU may have moved between CPUs within the interval (documented in `docs/xen.md`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::vcpu_list::VcpuRow;

/// A vCPU: (domain id, vCPU number).
pub type VcpuKey = (u32, u32);

/// The CPU seconds of every vCPU at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VcpuTimes {
    /// When the reading was taken, on any monotonic clock shared by the readings compared.
    pub at: Duration,
    pub seconds: BTreeMap<VcpuKey, f64>,
}

impl VcpuTimes {
    pub fn from_rows(at: Duration, rows: &[VcpuRow]) -> Self {
        Self {
            at,
            seconds: rows
                .iter()
                .map(|r| ((r.domid, r.vcpu), r.cpu_seconds))
                .collect(),
        }
    }
}

/// Use of each vCPU between two readings, in percent of one CPU (0–100).
pub fn vcpu_percent(previous: &VcpuTimes, now: &VcpuTimes) -> BTreeMap<VcpuKey, f64> {
    let elapsed = now.at.saturating_sub(previous.at).as_secs_f64();
    now.seconds
        .iter()
        .map(|(key, &seconds)| {
            let used = previous
                .seconds
                .get(key)
                .map_or(0.0, |&before| seconds - before);
            let percent = if elapsed > 0.0 && used > 0.0 {
                used / elapsed * 100.0
            } else {
                0.0
            };
            (*key, percent.clamp(0.0, 100.0))
        })
        .collect()
}

/// Load of each of `cpus` physical CPUs, in percent: the vCPUs that last ran on it, summed.
pub fn cpu_load(cpus: u32, rows: &[VcpuRow], percent: &BTreeMap<VcpuKey, f64>) -> Vec<f64> {
    let mut load = vec![0.0; cpus as usize];
    for row in rows {
        let Some(cpu) = row.cpu else { continue };
        if let (Some(slot), Some(p)) = (
            load.get_mut(cpu as usize),
            percent.get(&(row.domid, row.vcpu)),
        ) {
            *slot += p;
        }
    }
    load.iter_mut().for_each(|l| *l = l.clamp(0.0, 100.0));
    load
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xl::vcpu_list::CpuSet;

    fn row(domid: u32, vcpu: u32, cpu: Option<u32>, seconds: f64) -> VcpuRow {
        VcpuRow {
            name: format!("d{domid}"),
            domid,
            vcpu,
            cpu,
            running: false,
            blocked: true,
            online: cpu.is_some(),
            cpu_seconds: seconds,
            hard_affinity: CpuSet::All,
            soft_affinity: CpuSet::All,
        }
    }

    fn times(at_ms: u64, rows: &[VcpuRow]) -> VcpuTimes {
        VcpuTimes::from_rows(Duration::from_millis(at_ms), rows)
    }

    #[test]
    fn percent_is_cpu_seconds_over_wall_seconds() {
        let before = times(
            10_000,
            &[
                row(0, 0, Some(0), 100.0),
                row(7, 0, Some(1), 10.0),
                row(7, 1, Some(1), 5.0),
            ],
        );
        let after = times(
            12_000,
            &[
                row(0, 0, Some(0), 100.5),
                row(7, 0, Some(1), 12.0),
                row(7, 1, Some(1), 5.0),
            ],
        );
        let percent = vcpu_percent(&before, &after);
        assert!((percent[&(0, 0)] - 25.0).abs() < 1e-9);
        assert!((percent[&(7, 0)] - 100.0).abs() < 1e-9);
        assert_eq!(percent[&(7, 1)], 0.0);
        let load = cpu_load(
            4,
            &[
                row(0, 0, Some(0), 0.0),
                row(7, 0, Some(1), 0.0),
                row(7, 1, Some(1), 0.0),
            ],
            &percent,
        );
        assert_eq!(load.len(), 4);
        assert!((load[0] - 25.0).abs() < 1e-9);
        assert!((load[1] - 100.0).abs() < 1e-9);
        assert_eq!((load[2], load[3]), (0.0, 0.0));
    }

    #[test]
    fn new_reused_and_rounded_readings_stay_in_range() {
        let before = times(0, &[row(3, 0, Some(0), 50.0)]);
        let after = times(
            1_000,
            &[
                row(3, 0, Some(0), 1.0),
                row(4, 0, Some(0), 9.0),
                row(5, 0, Some(9), 0.0),
            ],
        );
        let percent = vcpu_percent(&before, &after);
        assert_eq!(percent[&(3, 0)], 0.0, "went backwards: a reused domain id");
        assert_eq!(percent[&(4, 0)], 0.0, "new since the last reading");
        let jitter = vcpu_percent(
            &times(0, &[row(1, 0, Some(0), 0.0)]),
            &times(100, &[row(1, 0, Some(0), 0.2)]),
        );
        assert_eq!(jitter[&(1, 0)], 100.0, "xl rounds to 0.1 s: clamp");
        let load = cpu_load(
            1,
            &[row(5, 0, Some(9), 0.0), row(6, 0, None, 0.0)],
            &percent,
        );
        assert_eq!(
            load,
            vec![0.0],
            "a CPU beyond nr_cpus or an offline vCPU is ignored"
        );
    }

    #[test]
    fn no_time_passed_means_no_use() {
        let same = times(5_000, &[row(1, 0, Some(0), 3.0)]);
        let later = times(5_000, &[row(1, 0, Some(0), 4.0)]);
        assert_eq!(vcpu_percent(&same, &later)[&(1, 0)], 0.0);
        let earlier = times(4_000, &[row(1, 0, Some(0), 4.0)]);
        assert_eq!(vcpu_percent(&same, &earlier)[&(1, 0)], 0.0);
    }
}
