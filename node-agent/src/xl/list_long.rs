//! Parser for `xl list -l`: the configuration libxl keeps for every domain, as JSON.
//!
//! Xen 4.17 prints a JSON array (`tools/xl/xl_info.c`, `list_domains_details` and
//! `printf_info_one_json`) with one object per domain whose configuration libxl can retrieve:
//! `{"domid": 7, "config": <libxl_domain_config>}`. The config holds `c_info` (`type`, `name`,
//! `uuid`), `b_info` (`max_vcpus`, `max_memkb`, `target_memkb`, `kernel`, `cmdline`, …),
//! `disks` (`pdev_path`, `vdev`, `format`, `readwrite`) and `nics` (`mac`, `bridge`).
//! It carries no run state: that comes from plain `xl list`.
//!
//! Only the fields herd uses are read; everything else is ignored. The domain's UUID is how the
//! driver recognises a domain it created (adoption after an agent restart).

use serde::Deserialize;

use super::parse::{self, ParseError};

const WHAT: &str = "xl list -l";
/// Most domains believed in one listing.
const MAX_DOMAINS: usize = 8192;

/// What herd reads of one domain's libxl configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainConfig {
    /// `None` when xl printed `null` (a configuration without a live domain).
    pub domid: Option<u32>,
    pub name: String,
    /// Lower-case canonical UUID.
    pub uuid: Option<String>,
    /// `pv`, `pvh` or `hvm`.
    pub guest_type: Option<String>,
    pub max_vcpus: Option<u32>,
    pub max_memory_mib: Option<u64>,
    pub target_memory_mib: Option<u64>,
    pub kernel: Option<String>,
    pub cmdline: Option<String>,
    pub disks: Vec<ConfiguredDisk>,
    pub nics: Vec<ConfiguredNic>,
}

/// A disk of the domain as libxl recorded it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfiguredDisk {
    /// The host path xl was given as `target=`.
    pub pdev_path: Option<String>,
    pub vdev: Option<String>,
    pub format: Option<String>,
    pub read_write: bool,
}

/// A network interface of the domain as libxl recorded it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfiguredNic {
    pub mac: Option<String>,
    pub bridge: Option<String>,
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(default)]
    domid: Option<i64>,
    #[serde(default)]
    config: RawConfig,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawConfig {
    c_info: RawCreateInfo,
    b_info: RawBuildInfo,
    disks: Vec<RawDisk>,
    nics: Vec<RawNic>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawCreateInfo {
    #[serde(rename = "type")]
    guest_type: Option<String>,
    name: Option<String>,
    uuid: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawBuildInfo {
    max_vcpus: Option<u64>,
    max_memkb: Option<u64>,
    target_memkb: Option<u64>,
    kernel: Option<String>,
    cmdline: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawDisk {
    pdev_path: Option<String>,
    vdev: Option<String>,
    format: Option<String>,
    readwrite: Option<i64>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawNic {
    mac: Option<String>,
    bridge: Option<String>,
}

/// Parses the whole output of `xl list -l`.
pub fn parse_list_long(text: &str) -> Result<Vec<DomainConfig>, ParseError> {
    if text.len() > parse::MAX_BYTES {
        return Err(ParseError::new(
            WHAT,
            format!(
                "output of {} bytes is larger than {}",
                text.len(),
                parse::MAX_BYTES
            ),
        ));
    }
    let entries: Vec<RawEntry> = serde_json::from_str(text)
        .map_err(|e| ParseError::new(WHAT, format!("not the expected JSON array: {e}")))?;
    if entries.len() > MAX_DOMAINS {
        return Err(ParseError::new(
            WHAT,
            format!("{} domains is more than {MAX_DOMAINS}", entries.len()),
        ));
    }
    entries
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            convert(entry).map_err(|m| ParseError::new(WHAT, format!("domain #{index}: {m}")))
        })
        .collect()
}

fn convert(entry: RawEntry) -> Result<DomainConfig, String> {
    let RawConfig {
        c_info,
        b_info,
        disks,
        nics,
    } = entry.config;
    let domid = match entry.domid {
        None => None,
        Some(id) => Some(
            u32::try_from(id)
                .ok()
                .filter(|id| *id < parse::DOMID_FIRST_RESERVED)
                .ok_or(format!("domid {id} is out of range"))?,
        ),
    };
    let name = c_info
        .name
        .filter(|n| parse::plausible_name(n))
        .ok_or("c_info.name is missing or unprintable")?;
    let uuid = match c_info.uuid {
        Some(uuid) if parse::is_uuid(&uuid) => Some(uuid.to_ascii_lowercase()),
        Some(uuid) => return Err(format!("c_info.uuid {uuid:?} is not a UUID")),
        None => None,
    };
    let max_vcpus = b_info
        .max_vcpus
        .map(|v| {
            u32::try_from(v)
                .ok()
                .filter(|v| *v <= parse::MAX_CPUS)
                .ok_or(format!("max_vcpus {v} is absurd"))
        })
        .transpose()?;
    Ok(DomainConfig {
        domid,
        name,
        uuid,
        guest_type: c_info
            .guest_type
            .filter(|t| matches!(t.as_str(), "pv" | "pvh" | "hvm")),
        max_vcpus,
        max_memory_mib: memory_mib("max_memkb", b_info.max_memkb)?,
        target_memory_mib: memory_mib("target_memkb", b_info.target_memkb)?,
        kernel: b_info.kernel.filter(|k| text_ok(k)),
        cmdline: b_info.cmdline.filter(|c| text_ok(c)),
        disks: disks.into_iter().map(disk).collect(),
        nics: nics
            .into_iter()
            .map(|n| ConfiguredNic {
                mac: n.mac.filter(|m| text_ok(m)),
                bridge: n.bridge.filter(|b| text_ok(b)),
            })
            .collect(),
    })
}

fn memory_mib(field: &str, kib: Option<u64>) -> Result<Option<u64>, String> {
    kib.map(|kib| {
        Some(kib / 1024)
            .filter(|mib| *mib <= parse::MAX_MEMORY_MIB)
            .ok_or(format!("{field} {kib} is absurd"))
    })
    .transpose()
}

fn disk(raw: RawDisk) -> ConfiguredDisk {
    ConfiguredDisk {
        pdev_path: raw.pdev_path.filter(|p| text_ok(p)),
        vdev: raw.vdev.filter(|v| text_ok(v)),
        format: raw.format.filter(|f| text_ok(f)),
        read_write: raw.readwrite.unwrap_or(0) != 0,
    }
}

fn text_ok(value: &str) -> bool {
    value.len() <= 4096 && !value.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"[
    {
        "domid": 7,
        "config": {
            "c_info": {
                "type": "pv",
                "name": "small-1",
                "uuid": "6F1C2A4E-93B0-4D5E-8A7F-0C1D2E3F4A5B"
            },
            "b_info": {
                "max_vcpus": 1,
                "max_memkb": 524288,
                "target_memkb": 524288,
                "sched_params": {

                },
                "kernel": "/boot/vmlinuz",
                "cmdline": "root=/dev/xvda1 ro"
            },
            "disks": [
                {
                    "pdev_path": "/run/herd-agent/xl-disks/small-1/root",
                    "vdev": "xvda1",
                    "format": "raw",
                    "readwrite": 1
                }
            ],
            "nics": [
                {
                    "devid": 0,
                    "mac": "00:16:3e:11:22:33",
                    "bridge": "xenbr0"
                }
            ],
            "on_reboot": "restart"
        }
    }
]
"#;

    #[test]
    fn reads_the_fields_herd_uses() {
        let configs = parse_list_long(ONE).unwrap();
        assert_eq!(configs.len(), 1);
        let c = &configs[0];
        assert_eq!((c.domid, c.name.as_str()), (Some(7), "small-1"));
        assert_eq!(
            c.uuid.as_deref(),
            Some("6f1c2a4e-93b0-4d5e-8a7f-0c1d2e3f4a5b")
        );
        assert_eq!(
            (c.max_vcpus, c.max_memory_mib, c.guest_type.as_deref()),
            (Some(1), Some(512), Some("pv"))
        );
        assert_eq!(
            c.disks[0].pdev_path.as_deref(),
            Some("/run/herd-agent/xl-disks/small-1/root")
        );
        assert!(c.disks[0].read_write);
        assert_eq!(c.nics[0].bridge.as_deref(), Some("xenbr0"));
    }

    #[test]
    fn null_domid_and_missing_sections_are_fine() {
        let configs =
            parse_list_long(r#"[{"domid": null, "config": {"c_info": {"name": "x"}}}]"#).unwrap();
        assert_eq!(
            (
                configs[0].domid,
                configs[0].uuid.clone(),
                configs[0].disks.len()
            ),
            (None, None, 0)
        );
        assert_eq!(parse_list_long("[]\n").unwrap(), vec![]);
    }

    #[test]
    fn garbage_truncated_and_absurd_input_is_an_error_not_a_panic() {
        for bad in [
            "",
            "not json",
            "{}",
            r#"[{"domid": -5, "config": {"c_info": {"name": "x"}}}]"#,
            r#"[{"domid": 40000, "config": {"c_info": {"name": "x"}}}]"#,
            r#"[{"domid": 1, "config": {"c_info": {}}}]"#,
            r#"[{"domid": 1, "config": {"c_info": {"name": "x", "uuid": "nope"}}}]"#,
            r#"[{"domid": 1, "config": {"c_info": {"name": "x"}, "b_info": {"max_vcpus": 100000}}}]"#,
            r#"[{"domid": 1, "config": {"c_info": {"name": "x"}, "b_info": {"max_memkb": 18446744073709551615}}}]"#,
            r#"[{"domid": 1, "config": {"c_info": {"name": "x"}, "b_info": {"max_vcpus": "two"}}}]"#,
        ] {
            assert!(parse_list_long(bad).is_err(), "{bad:?}");
        }
        let deep = "[".repeat(100_000);
        assert!(parse_list_long(&deep).is_err());
        for end in 0..ONE.len() - 2 {
            assert!(parse_list_long(&ONE[..end]).is_err());
        }
    }
}
