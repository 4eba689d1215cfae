//! What the `xl` output parsers share: their error and bounded number parsing.
//!
//! Every parser treats `xl`'s output as hostile: it never panics, refuses absurd sizes, and says
//! which line it could not read.

use crate::hypervisor::HypervisorError;

/// Most lines any parser reads (a host runs at most a few thousand domains).
pub const MAX_LINES: usize = 100_000;
/// Most bytes any parser reads.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;
/// Domain ids at or above this are reserved by Xen (`DOMID_FIRST_RESERVED`).
pub const DOMID_FIRST_RESERVED: u32 = 0x7FF0;
/// Most CPUs or vCPUs believed (Xen's own limit is 4096 on x86).
pub const MAX_CPUS: u32 = 4096;
/// Most memory believed for a host or domain: 16 TiB.
pub const MAX_MEMORY_MIB: u64 = 16 * 1024 * 1024;
/// Most CPU seconds believed (over 3000 years of one CPU).
pub const MAX_CPU_SECONDS: f64 = 1e11;

/// Output of `xl` that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {message}")]
pub struct ParseError {
    /// Which output, such as `xl list`.
    pub what: &'static str,
    pub message: String,
}

impl ParseError {
    pub fn new(what: &'static str, message: impl Into<String>) -> Self {
        Self {
            what,
            message: message.into(),
        }
    }

    /// An error about line `index` (0-based) of the output.
    pub fn at_line(what: &'static str, index: usize, line: &str, message: &str) -> Self {
        let shown: String = line.chars().take(120).collect();
        Self::new(
            what,
            format!("line {}: {message} (got {shown:?})", index + 1),
        )
    }
}

impl From<ParseError> for HypervisorError {
    fn from(error: ParseError) -> Self {
        HypervisorError::Parse {
            what: error.what.to_string(),
            message: error.message,
        }
    }
}

/// Refuses output too large to be real.
pub fn check_size(what: &'static str, text: &str) -> Result<(), ParseError> {
    if text.len() > MAX_BYTES {
        return Err(ParseError::new(
            what,
            format!("output of {} bytes is larger than {MAX_BYTES}", text.len()),
        ));
    }
    if text.lines().nth(MAX_LINES).is_some() {
        return Err(ParseError::new(
            what,
            format!("output has more than {MAX_LINES} lines"),
        ));
    }
    Ok(())
}

/// A decimal integer no larger than `max`.
pub fn bounded_u64(token: &str, max: u64) -> Option<u64> {
    if token.is_empty() || token.len() > 20 || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse::<u64>().ok().filter(|v| *v <= max)
}

/// A decimal integer no larger than `max`, as `u32`.
pub fn bounded_u32(token: &str, max: u32) -> Option<u32> {
    bounded_u64(token, u64::from(max)).and_then(|v| u32::try_from(v).ok())
}

/// A non-negative, finite number of seconds as `xl` prints them (`%8.1f`).
pub fn seconds(token: &str) -> Option<f64> {
    let plain = !token.is_empty()
        && token.len() <= 24
        && token.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    plain
        .then(|| token.parse::<f64>().ok())
        .flatten()
        .filter(|v| v.is_finite() && *v <= MAX_CPU_SECONDS)
}

/// Whether `name` is a name `xl` could have printed for a domain (no control characters,
/// not empty, not absurdly long).
pub fn plausible_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 256 && !name.chars().any(char::is_control)
}

/// Whether `text` is a UUID in its canonical 8-4-4-4-12 hexadecimal form.
pub fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_bounded_and_plain() {
        assert_eq!(bounded_u64("512", 1024), Some(512));
        assert_eq!(bounded_u64("2048", 1024), None);
        assert_eq!(bounded_u64("-1", 1024), None);
        assert_eq!(bounded_u64("+1", 1024), None);
        assert_eq!(bounded_u64("", 1024), None);
        assert_eq!(bounded_u64("99999999999999999999999", u64::MAX), None);
        assert_eq!(bounded_u32("4097", MAX_CPUS), None);
        assert_eq!(seconds("1234.5"), Some(1234.5));
        assert_eq!(seconds("nan"), None);
        assert_eq!(seconds("inf"), None);
        assert_eq!(seconds("-1.0"), None);
        assert_eq!(seconds("1e400"), None);
        assert_eq!(seconds("1.2.3"), None);
    }

    #[test]
    fn uuids_are_recognised() {
        assert!(is_uuid("6f1c2a4e-93b0-4d5e-8a7f-0c1d2e3f4a5b"));
        assert!(is_uuid("6F1C2A4E-93B0-4D5E-8A7F-0C1D2E3F4A5B"));
        for bad in [
            "",
            "0a-1",
            "6f1c2a4e93b04d5e8a7f0c1d2e3f4a5b",
            "6f1c2a4e-93b0-4d5e-8a7f-0c1d2e3f4a5g",
            "6f1c2a4e-93b0-4d5e-8a7f-0c1d2e3f4a5b-1",
        ] {
            assert!(!is_uuid(bad), "{bad:?}");
        }
    }

    #[test]
    fn huge_outputs_are_refused() {
        assert!(check_size("xl list", &"x\n".repeat(MAX_LINES + 1)).is_err());
        assert!(check_size("xl list", "Name\n").is_ok());
    }

    #[test]
    fn error_lines_are_shown_short() {
        let error = ParseError::at_line("xl list", 2, &"y".repeat(500), "bad row");
        assert!(error.to_string().starts_with("xl list: line 3: bad row"));
        assert!(error.to_string().len() < 200);
    }
}
