//! Load models: how busy each vCPU of a simulated domain wants to be, as a function of time.
//!
//! A domain's model is chosen by tokens in its kernel command line (`spec.boot.cmdline`),
//! which the simulator reads and no real guest ever sees:
//!
//! | token                                  | model                                              |
//! | -------------------------------------- | -------------------------------------------------- |
//! | (none)                                 | idle: a slow wave between 0% and 1%                |
//! | `herd.sim.load=constant:80`            | every vCPU demands 80% of one CPU                  |
//! | `herd.sim.load=step:10,90,60`          | 10% until the guest has run 60 s, then 90%         |
//! | `herd.sim.load=trace:/abs/path/file`   | replays a PlanetLab trace ([`super::trace`])       |
//! | `herd.sim.step=2`                      | seconds per trace sample (default 300, as recorded) |
//!
//! Percentages may have decimals and must be within 0–100; times are seconds, with decimals.
//! A trace is replayed one sample per step, each held for the whole step, and wraps around at
//! its end (a PlanetLab trace is one day, so the replay starts the same day again).
//! `herd.sim.step` only matters to a trace and is ignored otherwise. Other tokens of the
//! command line are left alone; an unknown `herd.sim.*` key, a repeated key or a bad value is
//! refused, so a typo never silently leaves a domain idle.
//!
//! Everything here is pure: [`parse_cmdline`] gives a [`LoadSpec`], [`LoadSpec::resolve`] turns
//! it into a [`LoadModel`] with a trace loader supplied by the caller, and
//! [`LoadModel::demand`] takes `t`, the seconds the guest has run.

use std::f64::consts::TAU;
use std::path::{Path, PathBuf};

use super::trace::{Trace, TraceError};

/// The key of the load model token.
pub const LOAD_KEY: &str = "herd.sim.load";
/// The key of the trace step token.
pub const STEP_KEY: &str = "herd.sim.step";
/// Seconds per trace sample unless `herd.sim.step` says otherwise: PlanetLab's 5 minutes.
pub const DEFAULT_TRACE_STEP_SECS: f64 = 300.0;
/// Period of the idle wave, in seconds.
pub const IDLE_PERIOD_SECS: f64 = 60.0;
/// Peak of the idle wave, in percent.
pub const IDLE_PEAK_PERCENT: f64 = 1.0;

/// What the command line asks for, before any trace file is read.
#[derive(Clone, Debug, PartialEq)]
pub enum LoadSpec {
    Idle,
    Constant {
        percent: f64,
    },
    Step {
        before: f64,
        after: f64,
        at_secs: f64,
    },
    Trace {
        path: PathBuf,
        step_secs: f64,
    },
}

/// How busy each vCPU of a domain wants to be over time.
#[derive(Clone, Debug, PartialEq)]
pub enum LoadModel {
    /// A slow wave between 0% and [`IDLE_PEAK_PERCENT`], like an idle guest's housekeeping.
    Idle,
    Constant {
        percent: f64,
    },
    /// `before` until the guest has run `at_secs` seconds, `after` from then on.
    Step {
        before: f64,
        after: f64,
        at_secs: f64,
    },
    /// One sample of `trace` per `step_secs`, wrapping around at the end.
    Trace {
        trace: Trace,
        step_secs: f64,
    },
}

/// Why the `herd.sim.*` tokens of a command line cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadSpecError {
    #[error("kernel command line token {token:?}: {reason}")]
    Token { token: String, reason: String },
    #[error(transparent)]
    Trace(#[from] TraceError),
}

impl LoadModel {
    /// Demand of each vCPU at `t` seconds of guest time, in percent of one CPU (0–100).
    ///
    /// A negative or non-finite `t` counts as 0; a huge one is fine.
    pub fn demand(&self, t: f64) -> f64 {
        let t = if t.is_finite() && t > 0.0 { t } else { 0.0 };
        let percent = match self {
            Self::Idle => IDLE_PEAK_PERCENT * 0.5 * (1.0 - (t * TAU / IDLE_PERIOD_SECS).cos()),
            Self::Constant { percent } => *percent,
            Self::Step {
                before,
                after,
                at_secs,
            } => {
                if t < *at_secs {
                    *before
                } else {
                    *after
                }
            }
            Self::Trace { trace, step_secs } => {
                // `as` saturates, so a very long run cannot overflow.
                f64::from(trace.sample_wrapping((t / step_secs).floor() as usize))
            }
        };
        percent.clamp(0.0, 100.0)
    }
}

impl LoadSpec {
    /// The model this spec describes; `load_trace` reads (or finds cached) a trace file.
    pub fn resolve(
        self,
        load_trace: impl FnOnce(&Path) -> Result<Trace, TraceError>,
    ) -> Result<LoadModel, LoadSpecError> {
        Ok(match self {
            Self::Idle => LoadModel::Idle,
            Self::Constant { percent } => LoadModel::Constant { percent },
            Self::Step {
                before,
                after,
                at_secs,
            } => LoadModel::Step {
                before,
                after,
                at_secs,
            },
            Self::Trace { path, step_secs } => LoadModel::Trace {
                trace: load_trace(&path)?,
                step_secs,
            },
        })
    }
}

/// The load spec of a kernel command line (`None` or no `herd.sim.*` token: idle).
pub fn parse_cmdline(cmdline: Option<&str>) -> Result<LoadSpec, LoadSpecError> {
    let mut load: Option<(&str, &str)> = None;
    let mut step: Option<(&str, &str)> = None;
    for token in cmdline.unwrap_or_default().split_whitespace() {
        if !token.starts_with("herd.sim.") {
            continue;
        }
        let (key, value) = token
            .split_once('=')
            .ok_or_else(|| bad(token, "expected KEY=VALUE"))?;
        let slot = match key {
            LOAD_KEY => &mut load,
            STEP_KEY => &mut step,
            _ => {
                let reason = format!("unknown key; the simulator knows {LOAD_KEY} and {STEP_KEY}");
                return Err(bad(token, &reason));
            }
        };
        if slot.replace((token, value)).is_some() {
            return Err(bad(token, "given twice; keep one"));
        }
    }
    let step_secs = match step {
        Some((token, value)) => parse_step(token, value)?,
        None => DEFAULT_TRACE_STEP_SECS,
    };
    match load {
        Some((token, value)) => parse_model(token, value, step_secs),
        None => Ok(LoadSpec::Idle),
    }
}

/// `constant:P`, `step:B,A,T` or `trace:/PATH`.
fn parse_model(token: &str, value: &str, step_secs: f64) -> Result<LoadSpec, LoadSpecError> {
    const EXPECTED: &str = "expected constant:PERCENT, step:BEFORE,AFTER,AT_SECONDS \
                            or trace:/ABSOLUTE/PATH";
    let (kind, argument) = value.split_once(':').ok_or_else(|| bad(token, EXPECTED))?;
    match kind {
        "constant" => Ok(LoadSpec::Constant {
            percent: parse_percent(token, argument)?,
        }),
        "step" => parse_step_model(token, argument),
        "trace" => {
            let path = PathBuf::from(argument);
            if !path.is_absolute() {
                return Err(bad(token, "the trace must be an absolute path"));
            }
            Ok(LoadSpec::Trace { path, step_secs })
        }
        _ => Err(bad(token, EXPECTED)),
    }
}

/// `BEFORE,AFTER,AT_SECONDS`.
fn parse_step_model(token: &str, argument: &str) -> Result<LoadSpec, LoadSpecError> {
    let parts: Vec<&str> = argument.split(',').collect();
    let [before, after, at] = parts[..] else {
        return Err(bad(token, "expected step:BEFORE,AFTER,AT_SECONDS"));
    };
    let at_secs = parse_number(at)
        .filter(|secs| *secs >= 0.0)
        .ok_or_else(|| {
            bad(
                token,
                "the switch time must be a number of seconds, 0 or more",
            )
        })?;
    Ok(LoadSpec::Step {
        before: parse_percent(token, before)?,
        after: parse_percent(token, after)?,
        at_secs,
    })
}

fn parse_step(token: &str, value: &str) -> Result<f64, LoadSpecError> {
    parse_number(value)
        .filter(|secs| *secs > 0.0)
        .ok_or_else(|| bad(token, "the step must be a number of seconds above 0"))
}

fn parse_percent(token: &str, text: &str) -> Result<f64, LoadSpecError> {
    parse_number(text)
        .filter(|percent| (0.0..=100.0).contains(percent))
        .ok_or_else(|| {
            let reason = format!("{text:?} is not a CPU percentage from 0 to 100");
            bad(token, &reason)
        })
}

/// A finite decimal number (Rust also parses `inf` and `NaN`, which are refused here).
fn parse_number(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|n| n.is_finite())
}

fn bad(token: &str, reason: &str) -> LoadSpecError {
    LoadSpecError::Token {
        token: token.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cmdline: &str) -> LoadSpec {
        parse_cmdline(Some(cmdline)).unwrap()
    }

    fn refusal(cmdline: &str) -> String {
        parse_cmdline(Some(cmdline)).unwrap_err().to_string()
    }

    fn trace(samples: &str) -> Trace {
        Trace::parse(samples, Path::new("/t")).unwrap()
    }

    #[test]
    fn no_token_means_idle() {
        assert_eq!(parse_cmdline(None).unwrap(), LoadSpec::Idle);
        assert_eq!(spec("console=ttyS0 quiet"), LoadSpec::Idle);
    }

    #[test]
    fn models_are_read_among_other_tokens() {
        assert_eq!(
            spec("console=ttyS0 herd.sim.load=constant:80 quiet"),
            LoadSpec::Constant { percent: 80.0 }
        );
        assert_eq!(
            spec("herd.sim.load=step:10,90,60"),
            LoadSpec::Step {
                before: 10.0,
                after: 90.0,
                at_secs: 60.0
            }
        );
        assert_eq!(
            spec("herd.sim.step=2 herd.sim.load=trace:/traces/vm-1"),
            LoadSpec::Trace {
                path: "/traces/vm-1".into(),
                step_secs: 2.0
            }
        );
        assert_eq!(
            spec("herd.sim.load=trace:/traces/vm-1"),
            LoadSpec::Trace {
                path: "/traces/vm-1".into(),
                step_secs: DEFAULT_TRACE_STEP_SECS
            }
        );
        assert_eq!(
            spec("herd.sim.load=constant:12.5 herd.sim.step=7"),
            LoadSpec::Constant { percent: 12.5 }
        );
    }

    #[test]
    fn bad_tokens_are_refused_by_name() {
        let cases = [
            ("herd.sim.lod=constant:5", "unknown key"),
            ("herd.sim.load", "expected KEY=VALUE"),
            (
                "herd.sim.load=constant:5 herd.sim.load=constant:6",
                "given twice",
            ),
            (
                "herd.sim.load=constant:120",
                "not a CPU percentage from 0 to 100",
            ),
            ("herd.sim.load=constant:-1", "not a CPU percentage"),
            ("herd.sim.load=constant:NaN", "not a CPU percentage"),
            ("herd.sim.load=constant", "expected constant:PERCENT"),
            ("herd.sim.load=burst:5", "expected constant:PERCENT"),
            (
                "herd.sim.load=step:10,90",
                "expected step:BEFORE,AFTER,AT_SECONDS",
            ),
            ("herd.sim.load=step:10,90,-5", "switch time"),
            ("herd.sim.load=trace:traces/vm-1", "absolute path"),
            ("herd.sim.step=0", "above 0"),
            ("herd.sim.step=inf", "above 0"),
        ];
        for (cmdline, expected) in cases {
            let message = refusal(cmdline);
            assert!(message.contains(expected), "{cmdline}: {message}");
            assert!(
                message.starts_with("kernel command line token \"herd.sim."),
                "{message}"
            );
        }
    }

    #[test]
    fn constant_and_step_follow_the_guest_clock() {
        let constant = LoadModel::Constant { percent: 80.0 };
        assert_eq!(constant.demand(0.0), 80.0);
        assert_eq!(constant.demand(1e12), 80.0);
        let step = LoadModel::Step {
            before: 10.0,
            after: 90.0,
            at_secs: 60.0,
        };
        assert_eq!(step.demand(0.0), 10.0);
        assert_eq!(step.demand(59.9), 10.0);
        assert_eq!(step.demand(60.0), 90.0);
        assert_eq!(step.demand(f64::NAN), 10.0);
        assert_eq!(step.demand(-5.0), 10.0);
    }

    #[test]
    fn idle_stays_between_zero_and_one_percent() {
        let samples: Vec<f64> = (0..600)
            .map(|t| LoadModel::Idle.demand(f64::from(t) / 10.0))
            .collect();
        assert!(
            samples
                .iter()
                .all(|d| (0.0..=IDLE_PEAK_PERCENT).contains(d))
        );
        assert_eq!(samples[0], 0.0);
        assert!((LoadModel::Idle.demand(IDLE_PERIOD_SECS / 2.0) - IDLE_PEAK_PERCENT).abs() < 1e-9);
    }

    #[test]
    fn a_trace_holds_each_sample_for_a_step_and_wraps_around() {
        let model = LoadModel::Trace {
            trace: trace("10\n20\n30\n"),
            step_secs: 2.0,
        };
        let demands: Vec<f64> = [0.0, 1.9, 2.0, 4.5, 5.9, 6.0, 8.0, 1e300]
            .iter()
            .map(|t| model.demand(*t))
            .collect();
        // usize::MAX % 3 == 0, so a saturated index lands on the first sample.
        assert_eq!(demands, [10.0, 10.0, 20.0, 30.0, 30.0, 10.0, 20.0, 10.0]);
    }

    #[test]
    fn resolving_a_trace_uses_the_loader() {
        let spec = spec("herd.sim.step=1 herd.sim.load=trace:/t");
        let model = spec
            .clone()
            .resolve(|path| Trace::parse("5\n", path))
            .unwrap();
        assert_eq!(model.demand(0.0), 5.0);
        let error = spec
            .resolve(|path| Trace::parse("x\n", path))
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "trace file /t, line 1: \"x\" is not an integer CPU percentage (0-100)"
        );
        assert_eq!(
            LoadSpec::Idle.resolve(|_| unreachable!()).unwrap(),
            LoadModel::Idle
        );
    }
}
