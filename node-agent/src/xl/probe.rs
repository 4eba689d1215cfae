//! Whether this host can run the xl driver at all: Xen present (`/proc/xen`), this is the
//! control domain, `xl` installed, and the driver's settings usable. The agent refuses to start
//! the driver otherwise, with a sentence that says what is missing.

use std::path::Path;

use crate::hypervisor::HypervisorError;

use super::commands::XL;
use super::migration;
use super::runner::Runner;
use super::settings::XlSettings;

fn unavailable(reason: String) -> HypervisorError {
    HypervisorError::Unavailable {
        driver: "xl",
        reason,
    }
}

/// Checks the host and the settings; returns the runner the driver will use.
pub fn probe(settings: &XlSettings) -> Result<Runner, HypervisorError> {
    let proc_xen = &settings.proc_xen;
    if !proc_xen.is_dir() {
        return Err(unavailable(format!(
            "{} is missing: this host is not running under Xen, or xenfs is not mounted \
             (boot the Xen hypervisor, e.g. Debian's xen-system-amd64)",
            proc_xen.display()
        )));
    }
    let capabilities = proc_xen.join("capabilities");
    if let Ok(text) = std::fs::read_to_string(&capabilities)
        && !text.contains("control_d")
    {
        return Err(unavailable(format!(
            "{} does not list control_d: this is not dom0, where xl must run",
            capabilities.display()
        )));
    }
    let runner = match &settings.search_path {
        Some(dirs) => Runner::with_search_path(dirs.clone()),
        None => Runner::from_env(),
    };
    runner.resolve(XL).map_err(|e| {
        unavailable(format!(
            "{e}; install the Xen tools (Debian: xen-utils-4.17)"
        ))
    })?;
    for (what, path) in [
        ("state directory", &settings.state_dir),
        ("disk link directory", &settings.disk_link_dir),
    ] {
        check_path(what, path)?;
    }
    migration::check_transport(&settings.migration_transport)
        .map_err(|e| unavailable(e.to_string()))?;
    if let Some(host) = &settings.migration_host {
        migration::check_host(host).map_err(|e| unavailable(e.to_string()))?;
    }
    Ok(runner)
}

/// A directory named in xl.cfg and on xl's command line: absolute, and plain characters only
/// (no `=`, which `xl create` would read as a setting; no `,` or spaces, which break disk specs).
fn check_path(what: &str, path: &Path) -> Result<(), HypervisorError> {
    let plain = path.to_str().is_some_and(|p| {
        p.starts_with('/')
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b'+'))
    });
    if plain {
        Ok(())
    } else {
        Err(unavailable(format!(
            "the {what} {path:?} must be an absolute path of letters, digits and /._-+"
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    use super::*;

    fn settings(root: &Path) -> XlSettings {
        XlSettings {
            search_path: Some(vec![root.join("bin")]),
            proc_xen: root.join("proc-xen"),
            state_dir: root.join("state"),
            disk_link_dir: root.join("disks"),
            ..XlSettings::default()
        }
    }

    fn install_fake_xl(root: &Path) -> PathBuf {
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let xl = bin.join("xl");
        std::fs::write(&xl, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&xl, std::fs::Permissions::from_mode(0o755)).unwrap();
        xl
    }

    fn reason(result: Result<Runner, HypervisorError>) -> String {
        match result {
            Err(HypervisorError::Unavailable {
                driver: "xl",
                reason,
            }) => reason,
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[test]
    fn refuses_without_proc_xen() {
        let root = tempfile::tempdir().unwrap();
        install_fake_xl(root.path());
        assert!(
            reason(probe(&settings(root.path())))
                .contains("proc-xen is missing: this host is not running under Xen")
        );
    }

    #[test]
    fn refuses_outside_dom0() {
        let root = tempfile::tempdir().unwrap();
        install_fake_xl(root.path());
        std::fs::create_dir_all(root.path().join("proc-xen")).unwrap();
        std::fs::write(root.path().join("proc-xen/capabilities"), "").unwrap();
        assert!(reason(probe(&settings(root.path()))).contains("not dom0"));
    }

    #[test]
    fn refuses_without_xl() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("proc-xen")).unwrap();
        let message = reason(probe(&settings(root.path())));
        assert!(
            message.contains("xl was not found in") && message.contains("xen-utils-4.17"),
            "{message}"
        );
        let xl = install_fake_xl(root.path());
        std::fs::set_permissions(&xl, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            reason(probe(&settings(root.path()))).contains("xl was not found"),
            "not executable"
        );
    }

    #[test]
    fn accepts_a_xen_host_and_checks_the_settings() {
        let root = tempfile::tempdir().unwrap();
        install_fake_xl(root.path());
        std::fs::create_dir_all(root.path().join("proc-xen")).unwrap();
        std::fs::write(root.path().join("proc-xen/capabilities"), "control_d\n").unwrap();
        let runner = probe(&settings(root.path())).unwrap();
        assert_eq!(runner.resolve("xl").unwrap(), root.path().join("bin/xl"));
        let bad_dir = XlSettings {
            state_dir: PathBuf::from("/run/a=b"),
            ..settings(root.path())
        };
        assert!(reason(probe(&bad_dir)).contains("state directory"));
        let bad_transport = XlSettings {
            migration_transport: "ssh; reboot".into(),
            ..settings(root.path())
        };
        assert!(reason(probe(&bad_transport)).contains("transport"));
        let bad_host = XlSettings {
            migration_host: Some("-oProxyCommand=x".into()),
            ..settings(root.path())
        };
        assert!(reason(probe(&bad_host)).contains("host name"));
    }
}
