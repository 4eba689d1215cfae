//! Parser for `xl list`: one row per domain with its id, memory, vCPUs, state and CPU time.
//!
//! Xen 4.17 prints (`tools/xl/xl_info.c`, `list_domains`):
//!
//! ```text
//! printf("Name                                        ID   Mem VCPUs\tState\tTime(s)");
//! printf("%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f", name, domid, mem_mib, vcpus,
//!        r, b, p, s, shutdown-reason letter from "-rscwS", d, cpu_seconds);
//! ```
//!
//! Rows are read from the right (the name is everything before the last five columns), so a
//! name with spaces — which herd never creates, but another tool might — still parses.

use crate::hypervisor::DomainState;

use super::parse::{self, ParseError, bounded_u32, bounded_u64, seconds};

const WHAT: &str = "xl list";

/// One row of `xl list`.
#[derive(Clone, Debug, PartialEq)]
pub struct ListedDomain {
    pub name: String,
    pub domid: u32,
    /// Current memory (plus outstanding claims), in MiB.
    pub memory_mib: u64,
    /// Online vCPUs.
    pub vcpus: u32,
    pub flags: StateFlags,
    /// CPU time used since the domain started, in seconds.
    pub cpu_seconds: f64,
}

/// The six state letters of `xl list` (`r-----`, `-b----`, `--p---`, `---sc-` …).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateFlags {
    pub running: bool,
    pub blocked: bool,
    pub paused: bool,
    pub shutdown: bool,
    /// Why it shut down, when it did: `ShutdownReason`.
    pub reason: Option<ShutdownReason>,
    pub dying: bool,
}

/// The fifth state letter: `-` poweroff, `r` reboot, `s` suspend, `c` crash, `w` watchdog,
/// `S` soft reset, `?` unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    Poweroff,
    Reboot,
    Suspend,
    Crash,
    Watchdog,
    SoftReset,
    Unknown,
}

impl StateFlags {
    /// Parses the six-letter state column; `None` for anything else.
    pub fn parse(token: &str) -> Option<Self> {
        let b = token.as_bytes();
        if b.len() != 6 {
            return None;
        }
        let flag = |i: usize, letter: u8| match b[i] {
            c if c == letter => Some(true),
            b'-' => Some(false),
            _ => None,
        };
        let shutdown = flag(3, b's')?;
        let reason = match (shutdown, b[4]) {
            (false, b'-') => None,
            (true, letter) => Some(reason_of(letter)?),
            (false, _) => return None,
        };
        Some(Self {
            running: flag(0, b'r')?,
            blocked: flag(1, b'b')?,
            paused: flag(2, b'p')?,
            shutdown,
            reason,
            dying: flag(5, b'd')?,
        })
    }

    /// The herd state these letters mean. A domain that is neither running nor blocked is
    /// runnable (waiting for a CPU), which is still running.
    pub fn domain_state(&self) -> DomainState {
        match (self.dying, self.shutdown, self.reason, self.paused) {
            (_, true, Some(ShutdownReason::Crash | ShutdownReason::Watchdog), _) => {
                DomainState::Crashed
            }
            (true, _, _, _) | (_, true, _, _) => DomainState::Shutdown,
            (_, _, _, true) => DomainState::Paused,
            _ => DomainState::Running,
        }
    }
}

fn reason_of(letter: u8) -> Option<ShutdownReason> {
    Some(match letter {
        b'-' => ShutdownReason::Poweroff,
        b'r' => ShutdownReason::Reboot,
        b's' => ShutdownReason::Suspend,
        b'c' => ShutdownReason::Crash,
        b'w' => ShutdownReason::Watchdog,
        b'S' => ShutdownReason::SoftReset,
        b'?' => ShutdownReason::Unknown,
        _ => return None,
    })
}

/// Parses the whole output of `xl list`.
pub fn parse_list(text: &str) -> Result<Vec<ListedDomain>, ParseError> {
    parse::check_size(WHAT, text)?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(ParseError::new(
            WHAT,
            "empty output (expected a header line)",
        ));
    };
    if !is_header(header) {
        return Err(ParseError::at_line(
            WHAT,
            0,
            header,
            "expected the `Name ID Mem VCPUs State Time(s)` header",
        ));
    }
    lines
        .map(|(index, line)| {
            parse_row(line)
                .ok_or_else(|| ParseError::at_line(WHAT, index, line, "unreadable domain row"))
        })
        .collect()
}

fn is_header(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    words.starts_with(&["Name", "ID", "Mem", "VCPUs", "State", "Time(s)"])
}

fn parse_row(line: &str) -> Option<ListedDomain> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let n = tokens.len();
    if n < 6 {
        return None;
    }
    let name = name_before(line, n - 5)?;
    Some(ListedDomain {
        name,
        domid: bounded_u32(tokens[n - 5], parse::DOMID_FIRST_RESERVED - 1)?,
        memory_mib: bounded_u64(tokens[n - 4], parse::MAX_MEMORY_MIB)?,
        vcpus: bounded_u32(tokens[n - 3], parse::MAX_CPUS)?,
        flags: StateFlags::parse(tokens[n - 2])?,
        cpu_seconds: seconds(tokens[n - 1])?,
    })
}

/// The text of `line` before its token number `count` (0-based), trimmed: the name column.
fn name_before(line: &str, count: usize) -> Option<String> {
    let mut rest = line.trim_start();
    let start_len = rest.len();
    for _ in 0..count {
        let end = rest.find(char::is_whitespace)?;
        rest = rest[end..].trim_start();
    }
    let consumed = start_len - rest.len();
    let name = line.trim_start()[..consumed].trim_end();
    parse::plausible_name(name).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "Name                                        ID   Mem VCPUs\tState\tTime(s)";

    fn row(name: &str, domid: u32, mem: u64, vcpus: u32, state: &str, time: f64) -> String {
        format!("{name:<40} {domid:>5} {mem:>5} {vcpus:>5}     {state}  {time:>8.1}")
    }

    #[test]
    fn reads_rows_in_the_printf_format() {
        let text = format!(
            "{HEADER}\n{}\n{}\n{}\n",
            row("Domain-0", 0, 2048, 4, "r-----", 1234.5),
            row("small-1", 7, 512, 1, "-b----", 12.3),
            row("odd name with spaces", 9, 256, 2, "--p---", 0.0),
        );
        let domains = parse_list(&text).unwrap();
        assert_eq!(domains.len(), 3);
        assert_eq!(domains[1].name, "small-1");
        assert_eq!(domains[1].domid, 7);
        assert_eq!(domains[1].memory_mib, 512);
        assert_eq!(domains[1].flags.domain_state(), DomainState::Running);
        assert_eq!(domains[2].name, "odd name with spaces");
        assert_eq!(domains[2].flags.domain_state(), DomainState::Paused);
        assert!((domains[0].cpu_seconds - 1234.5).abs() < 1e-9);
    }

    #[test]
    fn state_letters_map_to_states() {
        let state = |s: &str| StateFlags::parse(s).map(|f| f.domain_state());
        assert_eq!(state("------"), Some(DomainState::Running));
        assert_eq!(state("r-----"), Some(DomainState::Running));
        assert_eq!(state("--p---"), Some(DomainState::Paused));
        assert_eq!(state("---sc-"), Some(DomainState::Crashed));
        assert_eq!(state("---sw-"), Some(DomainState::Crashed));
        assert_eq!(state("---s--"), Some(DomainState::Shutdown));
        assert_eq!(state("---ss-"), Some(DomainState::Shutdown));
        assert_eq!(state("-----d"), Some(DomainState::Shutdown));
        assert_eq!(
            StateFlags::parse("---sS-").and_then(|f| f.reason),
            Some(ShutdownReason::SoftReset)
        );
        for bad in [
            "",
            "r----",
            "r------",
            "x-----",
            "----c-",
            "rbpsxd",
            "r\u{e9}----",
        ] {
            assert_eq!(StateFlags::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn garbage_and_truncated_output_is_an_error_not_a_panic() {
        assert!(parse_list("").is_err());
        assert!(parse_list("\n\n").is_err());
        assert!(parse_list("hello world").is_err());
        assert!(parse_list(&format!("{HEADER}\nDomain-0 0 2048")).is_err());
        assert!(
            parse_list(&format!(
                "{HEADER}\nDomain-0     0  2048     4     r-----  "
            ))
            .is_err()
        );
        assert!(parse_list(&format!("{HEADER}\nDomain-0 0 2048 4 r----- -5.0")).is_err());
        assert!(parse_list(&format!("{HEADER}\nDomain-0 99999 2048 4 r----- 5.0")).is_err());
        assert!(parse_list(&format!("{HEADER}\nDomain-0 0 99999999999 4 r----- 5.0")).is_err());
        assert!(parse_list(&format!("{HEADER}\n\u{1}bad 0 2048 4 r----- 5.0")).is_err());
        assert_eq!(parse_list(&format!("{HEADER}\n")).unwrap(), vec![]);
        let cut = row("Domain-0", 0, 2048, 4, "r-----", 1.0);
        for end in 0..cut.len() {
            let _ = parse_list(&format!("{HEADER}\n{}", &cut[..end]));
        }
    }
}
