//! Parser for `xentop -b` (batch mode): each domain's CPU time, CPU use over xentop's own
//! delay, memory, network and block totals.
//!
//! `tools/xentop/xentop.c` prints (the same from before 4.13 to today's master, apart from the
//! `-` in the VBD columns below; in batch mode `print` is `vprintf`, and there is no summary and
//! no bottom line):
//!
//! ```text
//! do_header: each field as "%*s" of its width, separated by " ":
//!       NAME  STATE   CPU(sec) CPU(%)     MEM(k) MEM(%)  MAXMEM(k) MAXMEM(%) VCPUS NETS …
//! do_domain: the same fields, separated by " ", then "\n":
//!   name       "%10.10s" (cut to 10 characters), or "%*s" padded to the longest name with -f
//!   STATE      one letter or '-' for each of dying, shutdown, blocked, crashed, paused, running:
//!              "dsbcpr"
//!   CPU(sec)   "%10llu"  cpu_ns / 1e9 (whole seconds)
//!   CPU(%)     "%6.1f"   use since the previous iteration; 0.0 in the first one
//!   MEM(k)     "%10llu"  tot_pages in KiB;          MEM(%)    "%6.1f"
//!   MAXMEM(k)  "%10llu", or "%10s" "no limit";      MAXMEM(%) "%9.1f", or "%9s" "n/a"
//!   VCPUS "%5u"  NETS "%4u"  NETTX(k) NETRX(k) "%8llu"  VBDS "%4u"
//!   VBD_OO VBD_RD VBD_WR "%8llu"  VBD_RSECT VBD_WSECT "%10llu"  SSID "%4u"
//! ```
//!
//! The table is printed once per iteration, its header first (`-r` would repeat the header
//! before every row; the driver never passes it). `xentop -b -i 2 -d 1` prints two tables a
//! second apart. Only the second has a meaningful CPU(%), so the parser keeps the last one.
//! Rows are sorted by name (`strcasecmp`). The numeric columns widen when a value does not fit,
//! so rows are read as tokens, from the right: the name is what comes before the state.
//! `MAXMEM(k)` is two tokens when it says `no limit`. Current xentop sources (and XCP-ng's 4.17)
//! print `-` in the five VBD request columns when no VBD of a domain could be read; upstream 4.17
//! is believed to print numbers only. Both are accepted.
//!
//! Without `-f` a name is cut to 10 characters, and two domains can then print the same name.
//! Rows are matched to `xl list` by name (xentop prints no domain id), so the driver passes
//! `-f`, and two rows with one name are an error.

use std::collections::BTreeSet;

use crate::hypervisor::DomainState;

use super::parse::{self, ParseError, bounded_u32, bounded_u64};

const WHAT: &str = "xentop -b";

/// The header words, in order.
pub const HEADER: [&str; 19] = [
    "NAME",
    "STATE",
    "CPU(sec)",
    "CPU(%)",
    "MEM(k)",
    "MEM(%)",
    "MAXMEM(k)",
    "MAXMEM(%)",
    "VCPUS",
    "NETS",
    "NETTX(k)",
    "NETRX(k)",
    "VBDS",
    "VBD_OO",
    "VBD_RD",
    "VBD_WR",
    "VBD_RSECT",
    "VBD_WSECT",
    "SSID",
];

/// Most CPU(%) believed for one domain: every CPU Xen supports, fully used.
pub const MAX_CPU_PERCENT: f64 = parse::MAX_CPUS as f64 * 100.0;
/// Most MEM(%) or MAXMEM(%) believed (a maximum may exceed the host's memory, not by this much).
pub const MAX_MEMORY_PERCENT: f64 = 1e6;
/// Most network interfaces or block devices believed for one domain.
pub const MAX_DEVICES: u32 = 4096;

/// One row of the last iteration of `xentop -b`.
#[derive(Clone, Debug, PartialEq)]
pub struct XentopRow {
    /// The domain's name, as xentop printed it (cut to 10 characters unless `-f` was given).
    pub name: String,
    pub state: XentopState,
    /// CPU time used since the domain started, in whole seconds.
    pub cpu_seconds: u64,
    /// CPU use over xentop's delay, in percent of one CPU (above 100 for several vCPUs).
    pub cpu_percent: f64,
    /// Current memory, in KiB.
    pub mem_kib: u64,
    /// Current memory, in percent of the host's.
    pub mem_percent: f64,
    /// Maximum memory in KiB; `None` when xentop says `no limit` (dom0, usually).
    pub max_mem_kib: Option<u64>,
    /// Maximum memory in percent of the host's; `None` with `no limit` (`n/a`).
    pub max_mem_percent: Option<f64>,
    /// vCPUs (the highest vCPU id plus one, online or not).
    pub vcpus: u32,
    /// Network interfaces (`vifN.M`).
    pub nets: u32,
    /// KiB sent and received over all its interfaces.
    pub net_tx_kib: u64,
    pub net_rx_kib: u64,
    /// Block devices.
    pub vbds: u32,
    /// Request totals over its block devices; `None` when none of them could be read (`-`).
    pub vbd: Option<VbdTotals>,
    /// XSM security label (0 without XSM).
    pub ssid: u32,
}

/// The six state letters of xentop, in its order: `d` dying, `s` shutdown, `b` blocked,
/// `c` crashed, `p` paused, `r` running; `-` for each that does not hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XentopState {
    pub dying: bool,
    pub shutdown: bool,
    pub blocked: bool,
    pub crashed: bool,
    pub paused: bool,
    pub running: bool,
}

/// The five VBD columns of a row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VbdTotals {
    pub oo_requests: u64,
    pub read_requests: u64,
    pub write_requests: u64,
    pub read_sectors: u64,
    pub write_sectors: u64,
}

/// What `xentop -b` printed: how many iterations, and the rows of the last one.
#[derive(Clone, Debug, PartialEq)]
pub struct XentopReading {
    pub iterations: usize,
    pub rows: Vec<XentopRow>,
}

impl XentopState {
    /// Parses the six-letter state column (`-----r`, `--b---`, `----p-` …); `None` otherwise.
    pub fn parse(token: &str) -> Option<Self> {
        let b = token.as_bytes();
        if b.len() != 6 {
            return None;
        }
        let flag = |i: usize| match b[i] {
            c if c == b"dsbcpr"[i] => Some(true),
            b'-' => Some(false),
            _ => None,
        };
        Some(Self {
            dying: flag(0)?,
            shutdown: flag(1)?,
            blocked: flag(2)?,
            crashed: flag(3)?,
            paused: flag(4)?,
            running: flag(5)?,
        })
    }

    /// The herd state these letters mean, as for `xl list`: crashed wins, then dying or shut
    /// down, then paused; anything else (running, blocked or waiting for a CPU) is running.
    pub fn domain_state(&self) -> DomainState {
        if self.crashed {
            DomainState::Crashed
        } else if self.dying || self.shutdown {
            DomainState::Shutdown
        } else if self.paused {
            DomainState::Paused
        } else {
            DomainState::Running
        }
    }
}

impl XentopReading {
    /// The rows, if their CPU(%) was measured: xentop has no previous sample in its first
    /// iteration and prints 0.0 there, so one iteration is refused.
    pub fn measured_rows(self) -> Result<Vec<XentopRow>, ParseError> {
        if self.iterations < 2 {
            return Err(ParseError::new(
                WHAT,
                format!(
                    "{} iteration printed; CPU(%) is only measured from the second (run it with -i 2)",
                    self.iterations
                ),
            ));
        }
        Ok(self.rows)
    }
}

/// Parses the whole output of `xentop -b`, keeping the rows of its last iteration.
pub fn parse_xentop(text: &str) -> Result<XentopReading, ParseError> {
    parse::check_size(WHAT, text)?;
    if text.trim().is_empty() {
        return Err(ParseError::new(
            WHAT,
            "empty output (expected a header line)",
        ));
    }
    if !text.ends_with('\n') {
        return Err(ParseError::new(
            WHAT,
            "output does not end with a newline: it was cut short",
        ));
    }
    let mut iterations = 0;
    let mut rows: Vec<XentopRow> = Vec::new();
    let mut names: BTreeSet<String> = BTreeSet::new();
    let mut header_line = 0;
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if is_header(line) {
            if iterations > 0 && rows.is_empty() {
                return Err(ParseError::at_line(
                    WHAT,
                    header_line,
                    line,
                    "a header with no domain rows",
                ));
            }
            iterations += 1;
            header_line = index;
            rows.clear();
            names.clear();
            continue;
        }
        if iterations == 0 {
            return Err(ParseError::at_line(
                WHAT,
                index,
                line,
                "expected the `NAME STATE CPU(sec) CPU(%) … SSID` header",
            ));
        }
        let row = parse_row(line)
            .ok_or_else(|| ParseError::at_line(WHAT, index, line, "unreadable domain row"))?;
        if !names.insert(row.name.clone()) {
            return Err(ParseError::at_line(
                WHAT,
                index,
                line,
                "a second row with this name (names cut to 10 characters? run xentop with -f)",
            ));
        }
        if rows.len() >= parse::DOMID_FIRST_RESERVED as usize {
            return Err(ParseError::at_line(
                WHAT,
                index,
                line,
                "more rows than Xen has domain ids",
            ));
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(ParseError::new(
            WHAT,
            "the last header has no domain rows (there is always Domain-0)",
        ));
    }
    Ok(XentopReading { iterations, rows })
}

fn is_header(line: &str) -> bool {
    line.split_whitespace().eq(HEADER.iter().copied())
}

/// Columns after the maximum memory ones: VCPUS … SSID.
const TAIL: usize = 11;
/// Most tokens in a row: the columns, and a name of at most 256 bytes.
const MAX_TOKENS: usize = 20 + 256;

fn parse_row(line: &str) -> Option<XentopRow> {
    let tokens: Vec<&str> = line.split_whitespace().take(MAX_TOKENS + 1).collect();
    // name… STATE CPU(sec) CPU(%) MEM(k) MEM(%) MAXMEM(k)[2] MAXMEM(%) + TAIL
    if tokens.len() < 8 + TAIL || tokens.len() > MAX_TOKENS {
        return None;
    }
    let tail = &tokens[tokens.len() - TAIL..];
    let mut at = tokens.len() - TAIL - 1;
    let (max_mem_kib, max_mem_percent) = match (tokens[at - 2], tokens[at - 1], tokens[at]) {
        ("no", "limit", "n/a") => {
            at -= 3;
            (None, None)
        }
        (_, kib, percent) => {
            at -= 2;
            (
                Some(bounded_u64(kib, parse::MAX_MEMORY_MIB * 1024)?),
                Some(decimal(percent, MAX_MEMORY_PERCENT)?),
            )
        }
    };
    // tokens[at] is MEM(%); the state is four tokens to its left, the name before that.
    let state_at = at.checked_sub(4).filter(|i| *i >= 1)?;
    let name = text_before(line, tokens[state_at]);
    parse::plausible_name(name).then_some(())?;
    let vbds = bounded_u32(tail[4], MAX_DEVICES)?;
    Some(XentopRow {
        name: name.to_string(),
        state: XentopState::parse(tokens[state_at])?,
        cpu_seconds: bounded_u64(tokens[state_at + 1], parse::MAX_CPU_SECONDS as u64)?,
        cpu_percent: decimal(tokens[state_at + 2], MAX_CPU_PERCENT)?,
        mem_kib: bounded_u64(tokens[state_at + 3], parse::MAX_MEMORY_MIB * 1024)?,
        mem_percent: decimal(tokens[at], MAX_MEMORY_PERCENT)?,
        max_mem_kib,
        max_mem_percent,
        vcpus: bounded_u32(tail[0], parse::MAX_CPUS)?,
        nets: bounded_u32(tail[1], MAX_DEVICES)?,
        net_tx_kib: bounded_u64(tail[2], u64::MAX)?,
        net_rx_kib: bounded_u64(tail[3], u64::MAX)?,
        vbds,
        vbd: vbd_totals(&tail[5..10], vbds)?,
        ssid: bounded_u32(tail[10], u32::MAX)?,
    })
}

/// The five VBD columns: all numbers, or all `-` (never for a domain without VBDs: xentop
/// prints totals of zero then).
fn vbd_totals(columns: &[&str], vbds: u32) -> Option<Option<VbdTotals>> {
    if columns.iter().all(|c| *c == "-") {
        return (vbds > 0).then_some(None);
    }
    let n = |i: usize| columns.get(i).and_then(|c| bounded_u64(c, u64::MAX));
    Some(Some(VbdTotals {
        oo_requests: n(0)?,
        read_requests: n(1)?,
        write_requests: n(2)?,
        read_sectors: n(3)?,
        write_sectors: n(4)?,
    }))
}

/// The trimmed text of `line` before `token`, which must be a slice of `line`.
fn text_before<'a>(line: &'a str, token: &str) -> &'a str {
    let offset = (token.as_ptr() as usize).saturating_sub(line.as_ptr() as usize);
    line.get(..offset).unwrap_or("").trim()
}

/// A number as `"%.1f"` prints it (digits, a point, one digit), no larger than `max`.
fn decimal(token: &str, max: f64) -> Option<f64> {
    let (whole, fraction) = token.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (whole.len() <= 20 && digits(whole) && fraction.len() == 1 && digits(fraction))
        .then(|| token.parse::<f64>().ok())
        .flatten()
        .filter(|v| v.is_finite() && *v <= max)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `do_header` with the default widths.
    const HEADER_LINE: &str = "      NAME  STATE   CPU(sec) CPU(%)     MEM(k) MEM(%)  MAXMEM(k) MAXMEM(%) VCPUS NETS NETTX(k) NETRX(k) VBDS   VBD_OO   VBD_RD   VBD_WR  VBD_RSECT  VBD_WSECT SSID";

    /// `do_domain` for a guest with a memory limit, one interface and one disk.
    fn row(name: &str, state: &str, cpu: u64, pct: f64) -> String {
        format!(
            "{name:>10} {state} {cpu:>10} {pct:>6.1} {:>10} {:>6.1} {:>10} {:>9.1} {:>5} {:>4} \
             {:>8} {:>8} {:>4} {:>8} {:>8} {:>8} {:>10} {:>10} {:>4}",
            524288, 1.6, 525312, 1.6, 1, 1, 312, 1288, 1, 0, 2201, 415, 98410, 6920, 0
        )
    }

    fn dom0(pct: f64) -> String {
        format!(
            "{:>10} -----r {:>10} {pct:>6.1} {:>10} {:>6.1} {:>10} {:>9} {:>5} {:>4} {:>8} {:>8} \
             {:>4} {:>8} {:>8} {:>8} {:>10} {:>10} {:>4}",
            "Domain-0", 10432, 4194304, 12.5, "no limit", "n/a", 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        )
    }

    fn output(iterations: &[&[String]]) -> String {
        iterations
            .iter()
            .map(|rows| format!("{HEADER_LINE}\n{}\n", rows.join("\n")))
            .collect()
    }

    #[test]
    fn the_header_is_the_do_header_one() {
        let widths = [
            10, 6, 10, 6, 10, 6, 10, 9, 5, 4, 8, 8, 4, 8, 8, 8, 10, 10, 4,
        ];
        let header: Vec<String> = HEADER
            .iter()
            .zip(widths)
            .map(|(h, w)| format!("{h:>w$}"))
            .collect();
        assert_eq!(header.join(" "), HEADER_LINE);
        assert!(is_header(HEADER_LINE));
        assert!(!is_header("NAME STATE CPU(sec)"));
        assert!(!is_header(&format!("{HEADER_LINE} EXTRA")));
    }

    #[test]
    fn reads_the_last_iteration() {
        let text = output(&[
            &[dom0(0.0), row("small-1", "--b---", 42, 0.0)],
            &[dom0(3.0), row("small-1", "--b---", 43, 0.1)],
        ]);
        let reading = parse_xentop(&text).unwrap();
        assert_eq!(reading.iterations, 2);
        let rows = reading.measured_rows().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].name, "Domain-0");
        assert_eq!((rows[0].max_mem_kib, rows[0].max_mem_percent), (None, None));
        assert!((rows[0].cpu_percent - 3.0).abs() < 1e-9);
        assert_eq!(rows[0].vbd, Some(VbdTotals::default()));
        let small = &rows[1];
        assert_eq!(
            (small.cpu_seconds, small.mem_kib, small.max_mem_kib),
            (43, 524288, Some(525312))
        );
        assert!((small.cpu_percent - 0.1).abs() < 1e-9);
        assert_eq!(small.state.domain_state(), DomainState::Running);
        assert!(small.state.blocked && !small.state.running);
        assert_eq!((small.vcpus, small.nets, small.vbds), (1, 1, 1));
        assert_eq!((small.net_tx_kib, small.net_rx_kib), (312, 1288));
        assert_eq!(
            small.vbd.unwrap(),
            VbdTotals {
                oo_requests: 0,
                read_requests: 2201,
                write_requests: 415,
                read_sectors: 98410,
                write_sectors: 6920
            }
        );
    }

    #[test]
    fn one_iteration_has_no_measured_cpu() {
        let reading = parse_xentop(&output(&[&[dom0(0.0)]])).unwrap();
        assert_eq!(reading.iterations, 1);
        let error = reading.measured_rows().unwrap_err();
        assert!(error.to_string().contains("-i 2"), "{error}");
    }

    #[test]
    fn full_names_with_spaces_and_widened_columns() {
        let long = "a-rather-long-domain-name";
        let text = format!(
            "{:>25} {}\n{long} ----p- 1 0.0 1024 0.0 2048 0.0 1 0 123456789012 0 0 0 0 0 0 0 0\n\
             odd name -----r 1 250.5 1024 0.0 2048 0.0 4 0 0 0 2 - - - - - 7\n",
            "NAME",
            HEADER[1..].join(" ")
        );
        let rows = parse_xentop(&text).unwrap().rows;
        assert_eq!(rows[0].name, long);
        assert_eq!(rows[0].state.domain_state(), DomainState::Paused);
        assert_eq!(rows[0].net_tx_kib, 123_456_789_012);
        assert_eq!(rows[1].name, "odd name");
        assert!((rows[1].cpu_percent - 250.5).abs() < 1e-9);
        assert_eq!((rows[1].vbd, rows[1].ssid), (None, 7));
    }

    #[test]
    fn state_letters_are_in_xentops_order() {
        let state = |s: &str| XentopState::parse(s).map(|f| f.domain_state());
        assert_eq!(state("------"), Some(DomainState::Running));
        assert_eq!(state("-----r"), Some(DomainState::Running));
        assert_eq!(state("--b---"), Some(DomainState::Running));
        assert_eq!(state("----p-"), Some(DomainState::Paused));
        assert_eq!(state("-s----"), Some(DomainState::Shutdown));
        assert_eq!(state("d-----"), Some(DomainState::Shutdown));
        assert_eq!(state("-s-c--"), Some(DomainState::Crashed));
        assert_eq!(
            XentopState::parse("dsbcpr"),
            Some(XentopState {
                dying: true,
                shutdown: true,
                blocked: true,
                crashed: true,
                paused: true,
                running: true
            })
        );
        for bad in [
            "",
            "-----",
            "-------",
            "r-----",
            "-b----",
            "--p---",
            "x-----",
            "-----\u{e9}",
        ] {
            assert_eq!(XentopState::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn decimals_are_the_printf_ones() {
        assert_eq!(decimal("0.0", 100.0), Some(0.0));
        assert_eq!(decimal("120.0", 409600.0), Some(120.0));
        for bad in [
            "", "1", "1.", ".5", "1.25", "-0.0", "-1.0", "+1.0", "nan", "inf", "1e3", "1.0.0",
            "101.0",
        ] {
            assert_eq!(decimal(bad, 100.0), None, "{bad:?}");
        }
        assert_eq!(decimal(&format!("{}.0", "9".repeat(30)), f64::MAX), None);
    }

    #[test]
    fn garbage_and_truncated_output_is_an_error_not_a_panic() {
        let good = output(&[&[dom0(0.0)], &[dom0(1.0)]]);
        assert!(parse_xentop(&good).is_ok());
        for bad in [
            String::new(),
            "\n\n".to_string(),
            "hello world\n".to_string(),
            format!("{}\n", dom0(0.0)),
            format!("{HEADER_LINE}\n"),
            format!("{HEADER_LINE}\n{HEADER_LINE}\n{}\n", dom0(0.0)),
            format!("{HEADER_LINE}\n{}", dom0(0.0)),
            format!("{HEADER_LINE}\n{}\nVCPUs(sec):   0:       5s\n", dom0(0.0)),
            format!("{HEADER_LINE}\n{}\n{}\n", dom0(0.0), dom0(0.0)),
            format!("{HEADER_LINE}\n{}\n", row("small-1", "--b---", 1, -1.0)),
            format!("{HEADER_LINE}\n{}\n", row("small-1", "--b---", 1, 999999.0)),
            format!("{HEADER_LINE}\n{}\n", row("small-1", "r-----", 1, 0.0)),
            format!("{HEADER_LINE}\n{}\n", row("\u{1}bad", "--b---", 1, 0.0)),
            format!("{HEADER_LINE}\n{}\n", row("", "--b---", 1, 0.0)),
            format!("{HEADER_LINE}\n{}\n", dom0(0.0).replace("n/a", "0.0")),
            format!(
                "{HEADER_LINE}\n{}\n",
                dom0(0.0).replace("no limit", "      20")
            ),
            format!(
                "{HEADER_LINE}\n{}\n",
                dom0(0.0).replace("no limit", "no  limt")
            ),
            format!(
                "{HEADER_LINE}\n{}\n",
                dom0(0.0).replace("4194304", "99999999999999")
            ),
            format!("{HEADER_LINE}\nDomain-0 -----r 1 0.0 1 0.0 1 0.0 1 0 0 0 0 - - - - - 0\n"),
            format!("{HEADER_LINE}\ns -----r 1 0.0 1 0.0 1 0.0 1 0 0 0 1 - 0 0 0 0 0\n"),
            format!("{HEADER_LINE}\n-----r 1 0.0 1 0.0 1 0.0 1 0 0 0 1 0 0 0 0 0 0\n"),
        ] {
            assert!(parse_xentop(&bad).is_err(), "{bad:?}");
        }
        for end in 0..good.len() {
            let cut = &good[..end];
            let result = parse_xentop(cut);
            if !cut.ends_with('\n') {
                assert!(result.is_err(), "cut at {end} parsed");
            }
        }
    }

    const FIXTURE: &str = include_str!("../../tests/fixtures/xl/xentop-b.txt");

    /// `do_domain` with the default widths, from parsed values.
    fn render(r: &XentopRow) -> String {
        let max_kib = r
            .max_mem_kib
            .map_or("no limit".to_string(), |k| k.to_string());
        let max_pct = r
            .max_mem_percent
            .map_or("n/a".to_string(), |p| format!("{p:.1}"));
        let vbd = r.vbd.unwrap();
        format!(
            "{:>10} {} {:>10} {:>6.1} {:>10} {:>6.1} {max_kib:>10} {max_pct:>9} {:>5} {:>4} {:>8} \
             {:>8} {:>4} {:>8} {:>8} {:>8} {:>10} {:>10} {:>4}",
            r.name,
            [
                (r.state.dying, 'd'),
                (r.state.shutdown, 's'),
                (r.state.blocked, 'b'),
                (r.state.crashed, 'c'),
                (r.state.paused, 'p'),
                (r.state.running, 'r'),
            ]
            .iter()
            .map(|(on, c)| if *on { *c } else { '-' })
            .collect::<String>(),
            r.cpu_seconds,
            r.cpu_percent,
            r.mem_kib,
            r.mem_percent,
            r.vcpus,
            r.nets,
            r.net_tx_kib,
            r.net_rx_kib,
            r.vbds,
            vbd.oo_requests,
            vbd.read_requests,
            vbd.write_requests,
            vbd.read_sectors,
            vbd.write_sectors,
            r.ssid,
        )
    }

    #[test]
    fn the_fixture_is_two_tables_in_the_printf_formats() {
        let lines: Vec<&str> = FIXTURE.lines().collect();
        assert_eq!(lines.len(), 8);
        assert_eq!((lines[0], lines[4]), (HEADER_LINE, HEADER_LINE));
        let reading = parse_xentop(FIXTURE).unwrap();
        assert_eq!(reading.iterations, 2);
        let rendered: Vec<String> = reading.rows.iter().map(render).collect();
        assert_eq!(rendered, lines[5..]);
        let first = parse_xentop(
            &lines[..4]
                .iter()
                .map(|l| format!("{l}\n"))
                .collect::<String>(),
        )
        .unwrap()
        .rows;
        let rendered: Vec<String> = first.iter().map(render).collect();
        assert_eq!(rendered, lines[1..4]);
        assert!(
            first.iter().all(|r| r.cpu_percent == 0.0),
            "no previous sample"
        );
    }

    /// Name, state, CPU seconds, CPU %, memory, maximum memory, vCPUs.
    type Summary<'a> = (&'a str, DomainState, u64, f64, u64, Option<u64>, u32);

    #[test]
    fn the_fixture_reads_as_its_readme_says() {
        let rows = parse_xentop(FIXTURE).unwrap().measured_rows().unwrap();
        let summary: Vec<Summary> = rows
            .iter()
            .map(|r| {
                (
                    r.name.as_str(),
                    r.state.domain_state(),
                    r.cpu_seconds,
                    r.cpu_percent,
                    r.mem_kib,
                    r.max_mem_kib,
                    r.vcpus,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "Domain-0",
                    DomainState::Running,
                    10432,
                    3.0,
                    4194304,
                    None,
                    4
                ),
                (
                    "small-1",
                    DomainState::Running,
                    42,
                    0.1,
                    524288,
                    Some(525312),
                    1
                ),
                (
                    "web-1",
                    DomainState::Running,
                    735,
                    120.0,
                    1048576,
                    Some(1049600),
                    2
                ),
            ]
        );
        assert_eq!(rows[0].max_mem_percent, None);
        assert!(rows[1].state.blocked && rows[2].state.running);
        assert_eq!((rows[1].vbds, rows[1].nets), (2, 1));
        assert_eq!(rows[2].vbd.unwrap().read_sectors, 612058);
    }

    #[test]
    fn the_fixture_agrees_with_the_xl_list_fixture() {
        let listed =
            crate::xl::list::parse_list(include_str!("../../tests/fixtures/xl/list.txt")).unwrap();
        for row in parse_xentop(FIXTURE).unwrap().rows {
            let domain = listed.iter().find(|d| d.name == row.name).unwrap();
            assert_eq!(row.mem_kib, domain.memory_mib * 1024, "{}", row.name);
            assert_eq!(row.vcpus, domain.vcpus, "{}", row.name);
            assert!(
                row.cpu_seconds as f64 >= domain.cpu_seconds.floor(),
                "{}",
                row.name
            );
        }
    }

    #[test]
    fn huge_output_is_refused() {
        let rows = vec![dom0(0.0); parse::MAX_LINES + 1];
        assert!(parse_xentop(&output(&[&rows])).is_err());
        let long_line = format!("{HEADER_LINE}\n{} {}\n", "x ".repeat(100_000), dom0(0.0));
        assert!(parse_xentop(&long_line).is_err());
    }
}
