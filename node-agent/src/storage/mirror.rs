//! Which Debian mirror debootstrap uses: the host's own, as apt is configured
//! (`/etc/apt/sources.list` one-line entries and `/etc/apt/sources.list.d/*.sources` deb822
//! stanzas), unless the operator names one (`--debian-mirror`).
//!
//! The mirror is the URI of the first `deb` entry that carries a release suite (a suite without
//! a `-`, such as `bookworm`; `bookworm-updates` and `bookworm-security` are not full archives).

use std::path::Path;

/// The first full-archive mirror in one-line `sources.list` text.
pub fn mirror_in_one_line(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            return None;
        }
        let mut uri = words.next()?;
        if uri.starts_with('[') {
            // Options: `deb [arch=amd64 signed-by=…] URI SUITE …`.
            if !uri.ends_with(']') {
                words.by_ref().find(|w| w.ends_with(']'))?;
            }
            uri = words.next()?;
        }
        let suite = words.next()?;
        is_release_suite(suite).then(|| uri.to_owned())
    })
}

/// The first full-archive mirror in deb822 `.sources` text.
pub fn mirror_in_deb822(text: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_owned())
            })
        };
        let enabled = field("Enabled").is_none_or(|v| !v.eq_ignore_ascii_case("no"));
        let is_deb = field("Types")?.split_whitespace().any(|t| t == "deb");
        let uri = field("URIs")?.split_whitespace().next()?.to_owned();
        let suites = field("Suites")?;
        (enabled && is_deb && suites.split_whitespace().any(is_release_suite)).then_some(uri)
    })
}

fn is_release_suite(suite: &str) -> bool {
    !suite.is_empty() && !suite.contains('-') && !suite.contains('/')
}

/// Whether `uri` is a mirror URL debootstrap can be given as one argument.
pub fn is_mirror_uri(uri: &str) -> bool {
    let scheme_ok = ["http://", "https://", "file:///"]
        .iter()
        .any(|scheme| uri.starts_with(scheme));
    scheme_ok && uri.bytes().all(|b| b.is_ascii_graphic())
}

/// The host's mirror, from apt's configuration under `etc_apt` (normally `/etc/apt`).
pub fn host_mirror(etc_apt: &Path) -> Option<String> {
    let one_line = std::fs::read_to_string(etc_apt.join("sources.list"))
        .ok()
        .and_then(|text| mirror_in_one_line(&text));
    if one_line.is_some() {
        return one_line;
    }
    let mut files: Vec<_> = std::fs::read_dir(etc_apt.join("sources.list.d"))
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .collect();
    files.sort();
    files.iter().find_map(|path| {
        let text = std::fs::read_to_string(path).ok()?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("sources") => mirror_in_deb822(&text),
            Some("list") => mirror_in_one_line(&text),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/etc/apt/sources.list.d/debian.sources` of this development machine (Debian 12).
    const DEBIAN_SOURCES: &str = "\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

    #[test]
    fn deb822_sources_give_the_archive_not_security() {
        assert_eq!(
            mirror_in_deb822(DEBIAN_SOURCES).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        let only_security = DEBIAN_SOURCES.split("\n\n").nth(1).unwrap();
        assert_eq!(mirror_in_deb822(only_security), None);
        let disabled = "Enabled: no\nTypes: deb\nURIs: http://a/debian\nSuites: bookworm\n";
        assert_eq!(mirror_in_deb822(disabled), None);
    }

    #[test]
    fn one_line_sources_skip_comments_sources_and_updates() {
        let text = "\
# deb http://old/debian bookworm main
deb-src http://src/debian bookworm main
deb http://security.debian.org/debian-security bookworm-security main
deb [arch=amd64 signed-by=/k.gpg] http://ftp.de.debian.org/debian bookworm main contrib
";
        assert_eq!(
            mirror_in_one_line(text).as_deref(),
            Some("http://ftp.de.debian.org/debian")
        );
        assert_eq!(
            mirror_in_one_line("deb http://a/debian bookworm-updates main"),
            None
        );
        assert_eq!(
            mirror_in_one_line("deb [trusted=yes] http://b/debian bookworm main").as_deref(),
            Some("http://b/debian")
        );
    }

    #[test]
    fn mirrors_are_urls_without_spaces() {
        assert!(is_mirror_uri("http://deb.debian.org/debian"));
        assert!(is_mirror_uri("file:///srv/mirror/debian"));
        assert!(!is_mirror_uri("--foreign"));
        assert!(!is_mirror_uri("http://a b"));
    }

    #[test]
    fn the_host_configuration_is_read_from_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sources.list.d")).unwrap();
        std::fs::write(
            dir.path().join("sources.list.d/debian.sources"),
            DEBIAN_SOURCES,
        )
        .unwrap();
        assert_eq!(
            host_mirror(dir.path()).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        std::fs::write(
            dir.path().join("sources.list"),
            "deb http://x/debian trixie main\n",
        )
        .unwrap();
        assert_eq!(host_mirror(dir.path()).as_deref(), Some("http://x/debian"));
    }
}
