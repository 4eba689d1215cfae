//! "Now", for ages such as `5m` in tables.
//!
//! `HERD_NOW` (an RFC 3339 time such as `2026-01-01T00:00:00Z`) fixes it, so that the output
//! of `get` and `describe` is the same on every run. It exists for tests (snapshot tests of
//! the output); an unparsable value is ignored.

use chrono::{DateTime, Utc};

/// The environment variable that fixes "now" (for tests).
pub const NOW_VARIABLE: &str = "HERD_NOW";

/// The current time, or the one `HERD_NOW` gives.
pub fn now() -> DateTime<Utc> {
    std::env::var(NOW_VARIABLE)
        .ok()
        .and_then(|text| fixed(&text))
        .unwrap_or_else(Utc::now)
}

fn fixed(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_now_is_read_in_rfc3339() {
        let time = fixed("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(time.to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert_eq!(fixed("yesterday"), None);
    }
}
