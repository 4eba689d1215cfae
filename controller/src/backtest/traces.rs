//! PlanetLab CPU traces: a folder with one file per VM, one integer CPU percentage (0–100) per
//! line, one line per sample (288 at 5-minute steps for the CloudSim days).
//!
//! A folder of traces is one day. A folder that holds folders (such as
//! `../shared/traces/planetlab/`, one folder per day) is a folder of days: [`day_folders`]
//! lists them, in name order, and the files beside them (a `README.md`) are ignored.
//!
//! Files are taken in name order; hidden files (starting with `.`) are skipped. Surrounding
//! spaces, a `\r` and blank lines at the very end are tolerated; anything else that is not an
//! integer from 0 to 100 is refused with the file and line, as the sim driver does.

use std::path::{Path, PathBuf};

use super::BacktestError;

/// One VM's CPU utilisation over time, percent, one sample per step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// The file name.
    pub name: String,
    pub samples: Vec<u8>,
}

impl Trace {
    /// Sample `index`, wrapping around at the end (the next day starts like this one).
    pub fn at(&self, index: usize) -> u8 {
        self.samples[index % self.samples.len()]
    }
}

/// Parses the text of one trace file; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Vec<u8>, BacktestError> {
    let line_error = |line: usize, problem: String| BacktestError::Line {
        path: path.to_path_buf(),
        line,
        problem,
    };
    let samples = text
        .trim_end()
        .lines()
        .enumerate()
        .map(|(index, line)| {
            let value = line.trim();
            if value.is_empty() {
                return Err(line_error(index + 1, "blank line".into()));
            }
            match value.parse::<u8>() {
                Ok(percent) if percent <= 100 => Ok(percent),
                Ok(percent) => Err(line_error(index + 1, format!("{percent} is above 100"))),
                Err(_) => Err(line_error(
                    index + 1,
                    format!("{value:?} is not an integer CPU percentage (0-100)"),
                )),
            }
        })
        .collect::<Result<Vec<u8>, _>>()?;
    if samples.is_empty() {
        return Err(BacktestError::EmptyTrace {
            path: path.to_path_buf(),
        });
    }
    Ok(samples)
}

/// The days under `root`: its folders (not hidden) in name order when it has any, else
/// `root` itself (one day of trace files).
pub fn day_folders(root: &Path) -> Result<Vec<PathBuf>, BacktestError> {
    let dir_error = |source| BacktestError::ReadDir {
        path: root.to_path_buf(),
        source,
    };
    let mut days = Vec::new();
    for entry in std::fs::read_dir(root).map_err(dir_error)? {
        let entry = entry.map_err(dir_error)?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.path().is_dir() {
            days.push(entry.path());
        }
    }
    days.sort();
    if days.is_empty() {
        days.push(root.to_path_buf());
    }
    Ok(days)
}

/// The trace files of `dir`, in name order, at most `limit` of them.
pub fn read_dir(dir: &Path, limit: Option<usize>) -> Result<Vec<Trace>, BacktestError> {
    let dir_error = |source| BacktestError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(dir_error)? {
        let entry = entry.map_err(dir_error)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.path().is_file() {
            files.push((name, entry.path()));
        }
    }
    files.sort();
    files.truncate(limit.unwrap_or(usize::MAX));
    if files.is_empty() {
        return Err(BacktestError::NoTraces {
            path: dir.to_path_buf(),
        });
    }
    files
        .into_iter()
        .map(|(name, path)| {
            let text =
                std::fs::read_to_string(&path).map_err(|source| BacktestError::ReadFile {
                    path: path.clone(),
                    source,
                })?;
            Ok(Trace {
                name,
                samples: parse(&text, &path)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_is_one_percentage_per_line() {
        let samples = parse("12\n 7\r\n100\n\n", Path::new("t")).unwrap();
        assert_eq!(samples, [12, 7, 100]);
        let trace = Trace {
            name: "t".into(),
            samples,
        };
        assert_eq!((trace.at(1), trace.at(4)), (7, 7), "wraps around");
    }

    #[test]
    fn bad_lines_are_refused_with_file_and_line() {
        let error = parse("1\n7.5\n", Path::new("/x/web")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "trace file /x/web, line 2: \"7.5\" is not an integer CPU percentage (0-100)"
        );
        assert!(parse("101", Path::new("t")).is_err());
        assert!(parse("1\n\n2", Path::new("t")).is_err());
        assert!(matches!(
            parse("  \n", Path::new("t")),
            Err(BacktestError::EmptyTrace { .. })
        ));
    }

    #[test]
    fn a_folder_is_read_in_name_order_skipping_hidden_files() {
        let dir = std::env::temp_dir().join(format!("herd-traces-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("b"), "20\n30\n").unwrap();
        std::fs::write(dir.join("a"), "10\n").unwrap();
        std::fs::write(dir.join(".hidden"), "junk").unwrap();
        let traces = read_dir(&dir, None).unwrap();
        let names: Vec<&str> = traces.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(read_dir(&dir, Some(1)).unwrap().len(), 1);
        assert_eq!(
            day_folders(&dir).unwrap(),
            std::slice::from_ref(&dir),
            "a flat folder is one day"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(
            read_dir(&dir, None),
            Err(BacktestError::ReadDir { .. })
        ));
        assert!(matches!(
            day_folders(&dir),
            Err(BacktestError::ReadDir { .. })
        ));
    }

    #[test]
    fn a_folder_of_folders_is_a_folder_of_days() {
        let root = std::env::temp_dir().join(format!("herd-days-{}", std::process::id()));
        for day in ["20110309", "20110306", ".git"] {
            std::fs::create_dir_all(root.join(day)).unwrap();
        }
        std::fs::write(root.join("README.md"), "# traces").unwrap();
        let days = day_folders(&root).unwrap();
        assert_eq!(days, [root.join("20110306"), root.join("20110309")]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
