//! Parser for `xl info`: the host's CPUs, memory and Xen version.
//!
//! Xen 4.17 prints one `key : value` line per fact (`tools/xl/xl_info.c`, `maybe_printf`
//! calls such as `"nr_cpus                : %d\n"` and `"total_memory           : %"PRIu64"\n"`,
//! memory in MiB). Values may themselves hold colons (`hw_caps`, `cc_compile_date`), so a line
//! is split at its first colon only. Unknown keys are kept but ignored.

use std::collections::BTreeMap;

use super::parse::{self, ParseError, bounded_u32, bounded_u64};

const WHAT: &str = "xl info";

/// The facts herd uses from `xl info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XenInfo {
    /// The host's node name (`uname -n`).
    pub host: Option<String>,
    /// Physical CPUs Xen runs guests on.
    pub nr_cpus: u32,
    pub total_memory_mib: u64,
    /// Memory not given to any domain (what a new domain can get without ballooning dom0).
    pub free_memory_mib: u64,
    /// Such as `4.17.3`.
    pub xen_version: String,
    /// Such as `credit2`.
    pub xen_scheduler: Option<String>,
}

impl XenInfo {
    /// Free text for operators, such as `Xen 4.17.3 (credit2)`.
    pub fn description(&self) -> String {
        match &self.xen_scheduler {
            Some(scheduler) => format!("Xen {} ({scheduler})", self.xen_version),
            None => format!("Xen {}", self.xen_version),
        }
    }
}

/// Parses the whole output of `xl info`.
pub fn parse_info(text: &str) -> Result<XenInfo, ParseError> {
    parse::check_size(WHAT, text)?;
    let fields = fields(text)?;
    let get = |key: &str| fields.get(key).map(String::as_str);
    let number = |key: &'static str, max: u64| -> Result<u64, ParseError> {
        let value = get(key).ok_or_else(|| ParseError::new(WHAT, format!("no {key} line")))?;
        bounded_u64(value, max).ok_or_else(|| {
            ParseError::new(
                WHAT,
                format!("{key} is not a sensible number (got {value:?})"),
            )
        })
    };
    let nr_cpus = get("nr_cpus")
        .and_then(|v| bounded_u32(v, parse::MAX_CPUS))
        .filter(|n| *n > 0);
    let nr_cpus = nr_cpus
        .ok_or_else(|| ParseError::new(WHAT, "nr_cpus is missing or not between 1 and 4096"))?;
    let total_memory_mib = number("total_memory", parse::MAX_MEMORY_MIB)?;
    let free_memory_mib = number("free_memory", parse::MAX_MEMORY_MIB)?;
    if free_memory_mib > total_memory_mib {
        return Err(ParseError::new(
            WHAT,
            format!("free_memory {free_memory_mib} exceeds total_memory {total_memory_mib}"),
        ));
    }
    Ok(XenInfo {
        host: get("host").filter(|h| !h.is_empty()).map(str::to_string),
        nr_cpus,
        total_memory_mib,
        free_memory_mib,
        xen_version: version(&fields)?,
        xen_scheduler: get("xen_scheduler")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    })
}

/// Every `key : value` line; lines without a colon (the `-n` topology tables) are skipped.
fn fields(text: &str) -> Result<BTreeMap<String, String>, ParseError> {
    let mut fields = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(ParseError::at_line(
                WHAT,
                index,
                line,
                "control characters in a value",
            ));
        }
        fields.insert(key.to_string(), value.trim().to_string());
    }
    Ok(fields)
}

/// `xen_version`, or `xen_major.xen_minor` + `xen_extra` when only those are given.
fn version(fields: &BTreeMap<String, String>) -> Result<String, ParseError> {
    let sane = |v: &str| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic());
    if let Some(version) = fields.get("xen_version").filter(|v| sane(v)) {
        return Ok(version.clone());
    }
    match (fields.get("xen_major"), fields.get("xen_minor")) {
        (Some(major), Some(minor)) if sane(major) && sane(minor) => {
            let extra = fields.get("xen_extra").map(String::as_str).unwrap_or("");
            Ok(format!("{major}.{minor}{extra}"))
        }
        _ => Err(ParseError::new(WHAT, "no xen_version line")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(key: &str, value: &str) -> String {
        format!("{key:<23}: {value}\n")
    }

    fn sample() -> String {
        [
            line("host", "xen-a"),
            line("nr_cpus", "8"),
            line(
                "hw_caps",
                "178bf3ff:f6d8320b:2e500800:244037ff:0000000f:f1bf07a9:00405f5a:00000780",
            ),
            line("total_memory", "32657"),
            line("free_memory", "27915"),
            line("xen_version", "4.17.3"),
            line("xen_scheduler", "credit2"),
            line("cc_compile_date", "Tue Feb 13 10:11:12 UTC 2024"),
        ]
        .concat()
    }

    #[test]
    fn reads_the_facts_herd_needs() {
        let info = parse_info(&sample()).unwrap();
        assert_eq!(info.host.as_deref(), Some("xen-a"));
        assert_eq!(
            (info.nr_cpus, info.total_memory_mib, info.free_memory_mib),
            (8, 32657, 27915)
        );
        assert_eq!(info.description(), "Xen 4.17.3 (credit2)");
    }

    #[test]
    fn version_falls_back_to_major_minor_extra() {
        let text = sample().replace("xen_version", "xen_ignored")
            + &line("xen_major", "4")
            + &line("xen_minor", "17")
            + &line("xen_extra", ".3");
        assert_eq!(parse_info(&text).unwrap().xen_version, "4.17.3");
    }

    #[test]
    fn missing_absurd_and_garbage_values_are_errors() {
        assert!(parse_info("").is_err());
        assert!(parse_info("garbage without colons\n").is_err());
        assert!(
            parse_info(
                &sample().replace("nr_cpus                : 8", "nr_cpus                : 0")
            )
            .is_err()
        );
        assert!(parse_info(&sample().replace("32657", "999999999999")).is_err());
        assert!(parse_info(&sample().replace("27915", "40000")).is_err());
        assert!(parse_info(&sample().replace("27915", "-1")).is_err());
        assert!(parse_info(&sample().replace("xen_version", "xen_nothing")).is_err());
        assert!(parse_info(&sample().replace("xen-a", "xen\u{7}a")).is_err());
        let text = sample();
        for end in 0..text.len() {
            if text.is_char_boundary(end) {
                let _ = parse_info(&text[..end]);
            }
        }
    }
}
