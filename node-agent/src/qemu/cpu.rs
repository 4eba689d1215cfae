//! CPU and memory accounting from `/proc`: per-vCPU-thread use and placement, per-host-CPU load,
//! and free memory.
//!
//! The parsers are pure functions over the text of `/proc/<pid>/task/<tid>/stat`, `/proc/stat`
//! and `/proc/meminfo`; the samplers keep the previous reading and turn deltas into percentages.
//! Use of a vCPU is the `utime + stime` of the QEMU thread that runs it (with KVM, guest time is
//! part of `utime`), in percent of one CPU over the time between two samples. Its **wait** is
//! the run-queue delay of that thread (`/proc/<pid>/task/<tid>/schedstat`, second field, in
//! nanoseconds): time it was runnable but another task had the CPU — what a busy vCPU wanted
//! and did not get. Kernels without schedstats leave it unmeasured (0).

use std::collections::HashMap;
use std::time::Instant;

use crate::hypervisor::VcpuPlacement;

/// Why a `/proc` file could not be read as expected.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("Unexpected content in {file}: {message}")]
pub struct ProcParseError {
    pub file: &'static str,
    pub message: String,
}

fn error(file: &'static str, message: impl Into<String>) -> ProcParseError {
    ProcParseError {
        file,
        message: message.into(),
    }
}

/// What the agent reads from one `/proc/<pid>/task/<tid>/stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadStat {
    /// `utime + stime`, in clock ticks.
    pub cpu_ticks: u64,
    /// Field 39, `processor`: the CPU the thread last ran on.
    pub processor: Option<u32>,
}

/// Parses a task `stat` line. The command name (field 2) may hold spaces and parentheses
/// (`(CPU 0/KVM)`), so fields are counted from the last `)`.
pub fn parse_thread_stat(text: &str) -> Result<ThreadStat, ProcParseError> {
    const FILE: &str = "/proc/<pid>/task/<tid>/stat";
    let (_, rest) = text
        .rsplit_once(')')
        .ok_or_else(|| error(FILE, "no command name"))?;
    // `rest` starts at field 3 (state), so field N is `fields[N - 3]`.
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let number = |n: usize| -> Result<u64, ProcParseError> {
        let field = fields
            .get(n - 3)
            .ok_or_else(|| error(FILE, format!("no field {n}")))?;
        field
            .parse()
            .map_err(|_| error(FILE, format!("field {n} is {field:?}, not a number")))
    };
    let cpu_ticks = number(14)?.saturating_add(number(15)?);
    let processor = number(39).ok().and_then(|p| u32::try_from(p).ok());
    Ok(ThreadStat {
        cpu_ticks,
        processor,
    })
}

/// The run-queue delay of a thread, in nanoseconds, from its `schedstat` line
/// (`<on-cpu ns> <waiting ns> <timeslices>`).
pub fn parse_schedstat(text: &str) -> Result<u64, ProcParseError> {
    const FILE: &str = "/proc/<pid>/task/<tid>/schedstat";
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    let [_, waiting, _] = fields.as_slice() else {
        return Err(error(FILE, format!("{} fields, not 3", fields.len())));
    };
    waiting
        .parse()
        .map_err(|_| error(FILE, format!("waiting time {waiting:?} is not a number")))
}

/// Cumulative time of one CPU from `/proc/stat`, in clock ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub busy: u64,
    pub total: u64,
}

/// The `cpuN` lines of `/proc/stat`, in file order (online CPUs only).
pub fn parse_proc_stat(text: &str) -> Result<Vec<CpuTimes>, ProcParseError> {
    const FILE: &str = "/proc/stat";
    let mut cpus = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(label) = fields.next() else { continue };
        let is_cpu = label
            .strip_prefix("cpu")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !is_cpu {
            continue;
        }
        let values: Vec<u64> = fields
            .take(8)
            .map(|f| {
                f.parse()
                    .map_err(|_| error(FILE, format!("{label}: {f:?} is not a number")))
            })
            .collect::<Result<_, _>>()?;
        if values.len() < 4 {
            return Err(error(FILE, format!("{label} has {} fields", values.len())));
        }
        // user nice system idle iowait irq softirq steal: idle time is idle + iowait.
        let total = values.iter().fold(0u64, |sum, v| sum.saturating_add(*v));
        let idle = values[3].saturating_add(values.get(4).copied().unwrap_or(0));
        cpus.push(CpuTimes {
            busy: total.saturating_sub(idle),
            total,
        });
    }
    if cpus.is_empty() {
        return Err(error(FILE, "no cpuN lines"));
    }
    Ok(cpus)
}

/// Load of each CPU between two readings, in percent. A CPU missing from `before` (first
/// sample, or a CPU that came online) is measured since boot.
pub fn cpu_load(before: &[CpuTimes], now: &[CpuTimes]) -> Vec<f64> {
    now.iter()
        .enumerate()
        .map(|(index, now)| {
            let before = before.get(index).copied().unwrap_or_default();
            let total = now.total.saturating_sub(before.total);
            let busy = now.busy.saturating_sub(before.busy);
            if total == 0 {
                0.0
            } else {
                (100.0 * busy as f64 / total as f64).clamp(0.0, 100.0)
            }
        })
        .collect()
}

/// Memory of the host from `/proc/meminfo`, in KiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemInfo {
    pub total_kib: u64,
    /// `MemAvailable`: what can be given to new guests without swapping.
    pub available_kib: u64,
}

pub fn parse_meminfo(text: &str) -> Result<MemInfo, ProcParseError> {
    const FILE: &str = "/proc/meminfo";
    let field = |name: &str| -> Result<u64, ProcParseError> {
        let line = text
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .ok_or_else(|| error(FILE, format!("no {name}")))?;
        let value = line.split_ascii_whitespace().next().unwrap_or("");
        value
            .parse()
            .map_err(|_| error(FILE, format!("{name} is {value:?}")))
    };
    Ok(MemInfo {
        total_kib: field("MemTotal")?,
        available_kib: field("MemAvailable")?,
    })
}

/// One vCPU thread as read at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuReading {
    pub vcpu: u32,
    pub thread_id: u32,
    pub stat: ThreadStat,
    /// Run-queue delay so far, in nanoseconds, when the kernel reports it.
    pub wait_ns: Option<u64>,
}

/// A thread's counters at the previous sample.
#[derive(Clone, Copy, Debug)]
struct Previous {
    ticks: u64,
    wait_ns: Option<u64>,
}

/// Turns successive readings of a domain's vCPU threads into [`VcpuPlacement`]s.
#[derive(Debug)]
pub struct VcpuSampler {
    ticks_per_second: u64,
    previous: Option<(Instant, HashMap<u32, Previous>)>,
}

impl VcpuSampler {
    pub fn new(ticks_per_second: u64) -> Self {
        Self {
            ticks_per_second: ticks_per_second.max(1),
            previous: None,
        }
    }

    /// Use since the previous call (0 % on the first call, which only sets the baseline).
    pub fn sample(&mut self, at: Instant, readings: &[VcpuReading]) -> Vec<VcpuPlacement> {
        let placements = readings
            .iter()
            .map(|reading| VcpuPlacement {
                vcpu: reading.vcpu,
                cpu: reading.stat.processor,
                percent: self.percent(at, reading),
                wait_percent: self.wait_percent(at, reading),
            })
            .collect();
        let counters = readings
            .iter()
            .map(|r| {
                let previous = Previous {
                    ticks: r.stat.cpu_ticks,
                    wait_ns: r.wait_ns,
                };
                (r.thread_id, previous)
            })
            .collect();
        self.previous = Some((at, counters));
        placements
    }

    /// The previous counters of this thread and the seconds since, if there are any.
    fn since(&self, at: Instant, reading: &VcpuReading) -> Option<(Previous, f64)> {
        let (before, counters) = self.previous.as_ref()?;
        let previous = *counters.get(&reading.thread_id)?;
        let seconds = at.saturating_duration_since(*before).as_secs_f64();
        (seconds > 0.0).then_some((previous, seconds))
    }

    fn percent(&self, at: Instant, reading: &VcpuReading) -> f64 {
        let Some((previous, seconds)) = self.since(at, reading) else {
            return 0.0;
        };
        let used = reading.stat.cpu_ticks.saturating_sub(previous.ticks) as f64
            / self.ticks_per_second as f64;
        (100.0 * used / seconds).max(0.0)
    }

    /// Run-queue delay since the previous sample, in percent of the time between them (at most
    /// 100: a thread cannot wait longer than the time that passed).
    fn wait_percent(&self, at: Instant, reading: &VcpuReading) -> f64 {
        let Some((previous, seconds)) = self.since(at, reading) else {
            return 0.0;
        };
        let (Some(now), Some(before)) = (reading.wait_ns, previous.wait_ns) else {
            return 0.0;
        };
        let waited = now.saturating_sub(before) as f64 / 1e9;
        (100.0 * waited / seconds).clamp(0.0, 100.0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    // Captured from a QEMU 7.2 vCPU thread under KVM (`debug-threads=on` names it `CPU 0/KVM`).
    const VCPU_STAT: &str = "19343 (CPU 0/KVM) R 1 19338 19338 0 -1 138412225 48 0 0 0 0 6 0 0 20 0 7 0 104549 483901440 7132 18446744073709551615 94369527545856 94369533406293 140723710692928 0 0 0 2147219511 3674112 16963 0 0 0 -1 1 0 0 0 0 0 94369536518392 94369541722544 94370409381888 140723710699539 140723710700045 140723710700045 140723710701532 0\n";
    const PROC_STAT: &str = "cpu  52714 0 11708 152960 736 0 93 22 0 0\ncpu0 22546 0 4855 81511 192 0 14 9 0 0\ncpu1 30168 0 6852 71448 544 0 78 13 0 0\nintr 593115 0 0 0\nctxt 1234\n";
    const MEMINFO: &str = "MemTotal:       24684100 kB\nMemFree:        21470392 kB\nMemAvailable:   23829248 kB\nBuffers:           10440 kB\n";

    #[test]
    fn vcpu_thread_stat_gives_ticks_and_processor() {
        let stat = parse_thread_stat(VCPU_STAT).unwrap();
        assert_eq!(
            stat,
            ThreadStat {
                cpu_ticks: 6,
                processor: Some(1)
            }
        );
        // Fields 3..=39 after a command name with spaces and parentheses.
        let fields: Vec<String> = (3..=39)
            .map(|n| match n {
                3 => "R".to_string(),
                14 => "100".to_string(),
                15 => "50".to_string(),
                39 => "3".to_string(),
                _ => "0".to_string(),
            })
            .collect();
        let tricky = format!("7 (a) b) c) {}", fields.join(" "));
        assert_eq!(
            parse_thread_stat(&tricky).unwrap(),
            ThreadStat {
                cpu_ticks: 150,
                processor: Some(3)
            }
        );
    }

    #[test]
    fn garbage_stat_is_an_error() {
        assert!(parse_thread_stat("").is_err());
        assert!(parse_thread_stat("1 (x) R 1 2").is_err());
        assert!(parse_thread_stat("1 (x) R 1 1 1 0 -1 0 0 0 0 0 x y").is_err());
        // An old kernel without field 39 still gives the ticks.
        let short = "1 (x) R 1 1 1 0 -1 0 0 0 0 0 10 20";
        assert_eq!(
            parse_thread_stat(short).unwrap(),
            ThreadStat {
                cpu_ticks: 30,
                processor: None
            }
        );
    }

    #[test]
    fn host_cpu_load_comes_from_proc_stat_deltas() {
        let before = parse_proc_stat(PROC_STAT).unwrap();
        assert_eq!(before.len(), 2);
        assert_eq!(
            before[0],
            CpuTimes {
                busy: 22546 + 4855 + 14 + 9,
                total: 22546 + 4855 + 81511 + 192 + 14 + 9
            }
        );
        let now = [
            CpuTimes {
                busy: before[0].busy + 50,
                total: before[0].total + 100,
            },
            CpuTimes {
                busy: before[1].busy,
                total: before[1].total + 100,
            },
        ];
        assert_eq!(cpu_load(&before, &now), [50.0, 0.0]);
        assert_eq!(cpu_load(&before, &before), [0.0, 0.0]);
        assert!(parse_proc_stat("intr 1 2\n").is_err());
        assert!(parse_proc_stat("cpu0 1 x 3 4\n").is_err());
    }

    #[test]
    fn meminfo_gives_total_and_available() {
        let mem = parse_meminfo(MEMINFO).unwrap();
        assert_eq!(
            mem,
            MemInfo {
                total_kib: 24684100,
                available_kib: 23829248
            }
        );
        assert!(parse_meminfo("MemTotal: 1 kB\n").is_err());
        assert!(parse_meminfo("MemTotal: x kB\nMemAvailable: 1 kB\n").is_err());
    }

    #[test]
    fn the_sampler_turns_tick_deltas_into_percent() {
        let mut sampler = VcpuSampler::new(100);
        let start = Instant::now();
        let reading = |ticks, cpu| VcpuReading {
            vcpu: 0,
            thread_id: 42,
            stat: ThreadStat {
                cpu_ticks: ticks,
                processor: Some(cpu),
            },
            wait_ns: None,
        };
        let first = sampler.sample(start, &[reading(1000, 0)]);
        assert_eq!(
            first,
            [VcpuPlacement {
                vcpu: 0,
                cpu: Some(0),
                percent: 0.0,
                wait_percent: 0.0
            }]
        );
        let second = sampler.sample(start + Duration::from_secs(2), &[reading(1150, 1)]);
        assert_eq!(second[0].cpu, Some(1));
        assert!((second[0].percent - 75.0).abs() < 1e-9, "{second:?}");
        // A thread id never seen before (vCPU hot-plug) starts from 0 %.
        let other = VcpuReading {
            thread_id: 43,
            ..reading(5000, 0)
        };
        assert_eq!(
            sampler.sample(start + Duration::from_secs(3), &[other])[0].percent,
            0.0
        );
    }

    // Captured on this machine (`cat /proc/$$/schedstat` of a shell): on-CPU ns, waiting ns,
    // timeslices.
    const SCHEDSTAT: &str = "155414751 940430617 600\n";

    #[test]
    fn schedstat_gives_the_run_queue_delay() {
        assert_eq!(parse_schedstat(SCHEDSTAT).unwrap(), 940_430_617);
        assert!(parse_schedstat("1 2\n").is_err());
        assert!(parse_schedstat("1 x 3\n").is_err());
    }

    #[test]
    fn the_sampler_turns_run_queue_delay_into_wait_percent() {
        let mut sampler = VcpuSampler::new(100);
        let start = Instant::now();
        let reading = |ticks, wait_ns| VcpuReading {
            vcpu: 0,
            thread_id: 7,
            stat: ThreadStat {
                cpu_ticks: ticks,
                processor: Some(0),
            },
            wait_ns,
        };
        sampler.sample(start, &[reading(0, Some(1_000_000_000))]);
        // Over 2 s: ran 1 s (50 %), waited 1 s (50 %): it wanted the whole CPU.
        let second = sampler.sample(
            start + Duration::from_secs(2),
            &[reading(100, Some(2_000_000_000))],
        );
        assert!((second[0].percent - 50.0).abs() < 1e-9, "{second:?}");
        assert!((second[0].wait_percent - 50.0).abs() < 1e-9, "{second:?}");
        // Unmeasured (no schedstat) reads as no wait.
        let third = sampler.sample(start + Duration::from_secs(4), &[reading(200, None)]);
        assert_eq!(third[0].wait_percent, 0.0);
    }
}
