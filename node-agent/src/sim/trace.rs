//! PlanetLab CPU traces: one file per VM, one integer CPU percentage (0–100) per line.
//!
//! The traces distributed with CloudSim (and kept in `../shared/traces/planetlab/<day>/`) hold
//! 288 lines, one sample every 5 minutes for 24 hours. Any length of at least one sample is
//! accepted, so that shortened or synthetic traces work too. Surrounding spaces and a `\r`
//! (files edited on Windows) are tolerated, as are blank lines at the very end; anything else
//! that is not an integer from 0 to 100 is refused with the file and the line number.
//!
//! [`Trace::parse`] is pure; [`Trace::read`] reads the file first.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest trace file read, in bytes: a day at one sample per second is well under this.
pub const MAX_TRACE_BYTES: u64 = 4 * 1024 * 1024;

/// The CPU utilisation of one VM over time, in percent of one CPU, one sample per step.
///
/// Cheap to clone: the samples are shared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    source: PathBuf,
    samples: Arc<[u8]>,
}

/// Why a trace file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read trace file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "trace file {} is larger than {MAX_TRACE_BYTES} bytes; is it really a CPU trace?",
        path.display()
    )]
    TooLarge { path: PathBuf },
    #[error(
        "trace file {} holds no samples; it needs one integer CPU percentage (0-100) per line",
        path.display()
    )]
    Empty { path: PathBuf },
    #[error("trace file {}, line {line}: {problem}", path.display())]
    Line {
        path: PathBuf,
        /// Counted from 1, as editors do.
        line: usize,
        problem: LineProblem,
    },
}

/// What is wrong with one line of a trace file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineProblem {
    Blank,
    NotAnInteger(String),
    AboveHundred(u64),
}

impl fmt::Display for LineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Blank => write!(f, "blank line; expected an integer CPU percentage (0-100)"),
            Self::NotAnInteger(text) => {
                write!(f, "{text:?} is not an integer CPU percentage (0-100)")
            }
            Self::AboveHundred(value) => {
                write!(f, "CPU percentage {value} is above 100")
            }
        }
    }
}

impl Trace {
    /// Parses the text of a trace file; `source` names it in errors.
    pub fn parse(text: &str, source: &Path) -> Result<Self, TraceError> {
        let samples = text
            .trim_end()
            .lines()
            .enumerate()
            .map(|(index, line)| {
                parse_line(line).map_err(|problem| TraceError::Line {
                    path: source.to_path_buf(),
                    line: index + 1,
                    problem,
                })
            })
            .collect::<Result<Vec<u8>, _>>()?;
        if samples.is_empty() {
            return Err(TraceError::Empty {
                path: source.to_path_buf(),
            });
        }
        Ok(Self {
            source: source.to_path_buf(),
            samples: samples.into(),
        })
    }

    /// Reads and parses the trace file at `path`.
    pub fn read(path: &Path) -> Result<Self, TraceError> {
        let read_error = |source| TraceError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let mut bytes = Vec::new();
        file.take(MAX_TRACE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if bytes.len() as u64 > MAX_TRACE_BYTES {
            return Err(TraceError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        let text = String::from_utf8_lossy(&bytes);
        Self::parse(&text, path)
    }

    /// The file this trace was read from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The samples, in percent (0–100), oldest first. Never empty.
    pub fn samples(&self) -> &[u8] {
        &self.samples
    }

    /// The sample at position `index`, wrapping around at the end.
    pub fn sample_wrapping(&self, index: usize) -> u8 {
        // Never empty (checked by `parse`), so the remainder is a valid index.
        self.samples
            .get(index % self.samples.len().max(1))
            .copied()
            .unwrap_or(0)
    }
}

/// One line: an integer from 0 to 100, with surrounding spaces allowed.
fn parse_line(line: &str) -> Result<u8, LineProblem> {
    let text = line.trim();
    if text.is_empty() {
        return Err(LineProblem::Blank);
    }
    let value: u64 = text
        .parse()
        .map_err(|_| LineProblem::NotAnInteger(text.chars().take(40).collect()))?;
    u8::try_from(value)
        .ok()
        .filter(|percent| *percent <= 100)
        .ok_or(LineProblem::AboveHundred(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Trace, TraceError> {
        Trace::parse(text, Path::new("/traces/vm-1"))
    }

    #[test]
    fn integers_one_per_line_are_samples() {
        let trace = parse("22\n25\r\n 0 \n100\n\n").unwrap();
        assert_eq!(trace.samples(), [22, 25, 0, 100]);
        assert_eq!(trace.source(), Path::new("/traces/vm-1"));
    }

    #[test]
    fn samples_wrap_around_at_the_end() {
        let trace = parse("1\n2\n3\n").unwrap();
        assert_eq!(trace.sample_wrapping(2), 3);
        assert_eq!(trace.sample_wrapping(3), 1);
        assert_eq!(
            trace.sample_wrapping(usize::MAX),
            trace.samples()[usize::MAX % 3]
        );
    }

    #[test]
    fn bad_lines_are_named_by_file_and_line() {
        let cases = [
            ("1\n2.5\n", 2, "\"2.5\" is not an integer"),
            ("1\n-3\n", 2, "\"-3\" is not an integer"),
            ("150\n", 1, "CPU percentage 150 is above 100"),
            ("99999999999999999999999\n", 1, "is not an integer"),
            ("1\n\n2\n", 2, "blank line"),
            ("1\nidle\n", 2, "\"idle\" is not an integer"),
        ];
        for (text, line, expected) in cases {
            let error = parse(text).unwrap_err();
            let message = error.to_string();
            assert!(
                matches!(error, TraceError::Line { line: l, .. } if l == line),
                "{text:?}: {message}"
            );
            assert!(
                message.starts_with("trace file /traces/vm-1, line "),
                "{message}"
            );
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn an_empty_file_is_refused() {
        for text in ["", "\n\n", "  \n"] {
            let error = parse(text).unwrap_err();
            assert!(matches!(error, TraceError::Empty { .. }), "{error}");
            assert!(error.to_string().contains("/traces/vm-1 holds no samples"));
        }
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let error = Trace::read(Path::new("/nonexistent/herd-trace")).unwrap_err();
        assert!(matches!(error, TraceError::Read { .. }));
        assert!(
            error.to_string().contains("/nonexistent/herd-trace"),
            "{error}"
        );
    }
}
