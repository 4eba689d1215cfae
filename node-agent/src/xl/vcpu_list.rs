//! Parser for `xl vcpu-list`: where each virtual CPU last ran and how much CPU time it used.
//!
//! Xen 4.17 prints (`tools/xl/xl_vcpu.c`, `vcpulist` and `print_vcpuinfo`):
//!
//! ```text
//! printf("%-32s %5s %5s %5s %5s %9s %s\n", "Name", "ID", "VCPU", "CPU", "State", "Time(s)",
//!        "Affinity (Hard / Soft)");
//! printf("%-32s %5u %5u", name, domid, vcpu);
//! online:  printf("%5u %3c%c- ", cpu, running ? 'r' : '-', blocked ? 'b' : '-');
//! offline: printf("%5c %3c%cp ", '-', '-', '-');
//! printf("%9.1f  ", seconds); print_bitmap(hard); printf(" / "); print_bitmap(soft);
//! ```
//!
//! `print_bitmap` writes `all`, `none` or ranges such as `0-3,6`. Rows are read from the right.

use super::parse::{self, ParseError, bounded_u32, seconds};

const WHAT: &str = "xl vcpu-list";

/// One row of `xl vcpu-list`.
#[derive(Clone, Debug, PartialEq)]
pub struct VcpuRow {
    pub name: String,
    pub domid: u32,
    pub vcpu: u32,
    /// The physical CPU it last ran on; `None` when the vCPU is offline.
    pub cpu: Option<u32>,
    pub running: bool,
    pub blocked: bool,
    pub online: bool,
    /// CPU time used by this vCPU, in seconds.
    pub cpu_seconds: f64,
    pub hard_affinity: CpuSet,
    pub soft_affinity: CpuSet,
}

/// A set of physical CPUs as `print_bitmap` writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpuSet {
    All,
    None,
    /// Inclusive ranges, such as `[(0, 3), (6, 6)]` for `0-3,6`.
    Ranges(Vec<(u32, u32)>),
}

impl CpuSet {
    /// Parses `all`, `none` or a comma-separated list of CPUs and ranges.
    pub fn parse(token: &str) -> Option<Self> {
        match token {
            "all" => return Some(Self::All),
            "none" => return Some(Self::None),
            _ => {}
        }
        let ranges = token
            .split(',')
            .take(parse::MAX_CPUS as usize + 1)
            .map(|part| {
                let (low, high) = part.split_once('-').unwrap_or((part, part));
                let low = bounded_u32(low, parse::MAX_CPUS)?;
                let high = bounded_u32(high, parse::MAX_CPUS)?;
                (low <= high).then_some((low, high))
            })
            .collect::<Option<Vec<_>>>()?;
        (ranges.len() <= parse::MAX_CPUS as usize).then_some(Self::Ranges(ranges))
    }
}

/// Parses the whole output of `xl vcpu-list`.
pub fn parse_vcpu_list(text: &str) -> Result<Vec<VcpuRow>, ParseError> {
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
    let words: Vec<&str> = header.split_whitespace().collect();
    if !words.starts_with(&["Name", "ID", "VCPU", "CPU", "State", "Time(s)"]) {
        return Err(ParseError::at_line(
            WHAT,
            0,
            header,
            "expected the `Name ID VCPU CPU State Time(s)` header",
        ));
    }
    lines
        .map(|(index, line)| {
            parse_row(line)
                .ok_or_else(|| ParseError::at_line(WHAT, index, line, "unreadable vCPU row"))
        })
        .collect()
}

fn parse_row(line: &str) -> Option<VcpuRow> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let n = tokens.len();
    // name… ID VCPU CPU State Time hard / soft
    if n < 9 || tokens[n - 2] != "/" {
        return None;
    }
    let name = tokens[..n - 8].join(" ");
    let (running, blocked, online) = vcpu_state(tokens[n - 5])?;
    let cpu = match tokens[n - 6] {
        "-" if !online => None,
        token if online => Some(bounded_u32(token, parse::MAX_CPUS)?),
        _ => return None,
    };
    parse::plausible_name(&name).then_some(())?;
    Some(VcpuRow {
        name,
        domid: bounded_u32(tokens[n - 8], parse::DOMID_FIRST_RESERVED - 1)?,
        vcpu: bounded_u32(tokens[n - 7], parse::MAX_CPUS)?,
        cpu,
        running,
        blocked,
        online,
        cpu_seconds: seconds(tokens[n - 4])?,
        hard_affinity: CpuSet::parse(tokens[n - 3])?,
        soft_affinity: CpuSet::parse(tokens[n - 1])?,
    })
}

/// `r--`, `-b-`, `---` (online) or `--p` (offline) → (running, blocked, online).
fn vcpu_state(token: &str) -> Option<(bool, bool, bool)> {
    match token.as_bytes() {
        [r @ (b'r' | b'-'), b @ (b'b' | b'-'), b'-'] => Some((*r == b'r', *b == b'b', true)),
        [b'-', b'-', b'p'] => Some((false, false, false)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "Name                                ID  VCPU   CPU State   Time(s) Affinity (Hard / Soft)";

    /// A row for an online vCPU: (name, domid, vcpu, cpu), state letters, seconds, affinity.
    fn online(
        (name, domid, vcpu, cpu): (&str, u32, u32, u32),
        (r, b): (char, char),
        t: f64,
        aff: &str,
    ) -> String {
        format!("{name:<32} {domid:>5} {vcpu:>5}{cpu:>5} {r:>3}{b}- {t:>9.1}  {aff}")
    }

    #[test]
    fn the_header_is_the_printf_one() {
        let header = format!(
            "{:<32} {:>5} {:>5} {:>5} {:>5} {:>9} {}",
            "Name", "ID", "VCPU", "CPU", "State", "Time(s)", "Affinity (Hard / Soft)"
        );
        assert_eq!(header, HEADER);
    }

    #[test]
    fn reads_online_and_offline_vcpus() {
        let text = format!(
            "{HEADER}\n{}\n{}\n{}\n",
            online(("Domain-0", 0, 0, 3), ('r', '-'), 512.7, "all / all"),
            online(("small-1", 7, 0, 1), ('-', 'b'), 10.25, "0-3,6 / none"),
            format_args!(
                "{:<32} {:>5} {:>5}{:>5} {:>3}{}p {:>9.1}  all / all",
                "small-1", 7, 1, '-', '-', '-', 0.0
            ),
        );
        let rows = parse_vcpu_list(&text).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            (rows[0].cpu, rows[0].running, rows[0].online),
            (Some(3), true, true)
        );
        assert_eq!((rows[1].domid, rows[1].vcpu, rows[1].blocked), (7, 0, true));
        assert_eq!(rows[1].hard_affinity, CpuSet::Ranges(vec![(0, 3), (6, 6)]));
        assert_eq!(rows[1].soft_affinity, CpuSet::None);
        assert_eq!((rows[2].cpu, rows[2].online), (None, false));
    }

    #[test]
    fn cpu_sets() {
        assert_eq!(CpuSet::parse("all"), Some(CpuSet::All));
        assert_eq!(CpuSet::parse("5"), Some(CpuSet::Ranges(vec![(5, 5)])));
        for bad in ["", "3-1", "a", "1,,2", "0-99999", "-", "1-2-3"] {
            assert_eq!(CpuSet::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn garbage_and_truncated_output_is_an_error_not_a_panic() {
        assert!(parse_vcpu_list("").is_err());
        assert!(parse_vcpu_list("Name ID\n").is_err());
        assert!(parse_vcpu_list(&format!("{HEADER}\nsmall-1 7 0 1 -b- 10.2")).is_err());
        assert!(parse_vcpu_list(&format!("{HEADER}\nsmall-1 7 0 - -b- 10.2 all / all")).is_err());
        assert!(parse_vcpu_list(&format!("{HEADER}\nsmall-1 7 0 1 --p 10.2 all / all")).is_err());
        assert!(parse_vcpu_list(&format!("{HEADER}\nsmall-1 7 0 1 xyz 10.2 all / all")).is_err());
        assert!(parse_vcpu_list(&format!("{HEADER}\nsmall-1 7 0 1 -b- 10.2 all | all")).is_err());
        assert_eq!(parse_vcpu_list(&format!("{HEADER}\n")).unwrap(), vec![]);
        let cut = online(("Domain-0", 0, 0, 3), ('r', '-'), 512.7, "all / all");
        for end in 0..cut.len() {
            let _ = parse_vcpu_list(&format!("{HEADER}\n{}", &cut[..end]));
        }
    }
}
