//! Durations typed on the command line: `30s`, `5m`, `1h30m`, `500ms`, or `0`.
//!
//! Like Go's (and so kubectl's) durations, but whole numbers only. Used by `--timeout` and by
//! `herdctl node --heartbeat-interval`, which needs whole seconds.

use std::time::Duration;

/// Parses a duration such as `5s`, `2m`, `1h30m` or `250ms`; `0` alone means zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || {
        format!(
            "invalid duration {text:?}: use whole numbers with a unit (ms, s, m, h), \
             such as 30s, 5m or 1h30m"
        )
    };
    let trimmed = text.trim();
    if trimmed == "0" {
        return Ok(Duration::ZERO);
    }
    if trimmed.is_empty() {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let units = rest[digits..]
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        if digits == 0 || units == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        let unit = match &rest[digits..digits + units] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(invalid()),
        };
        let part = u32::try_from(number)
            .ok()
            .and_then(|n| unit.checked_mul(n))
            .ok_or_else(invalid)?;
        total = total.checked_add(part).ok_or_else(invalid)?;
        rest = &rest[digits + units..];
    }
    Ok(total)
}

/// Parses a duration that must be a whole number of seconds (such as a heartbeat interval).
pub fn parse_whole_seconds(text: &str) -> Result<u32, String> {
    let duration = parse_duration(text)?;
    if duration.subsec_nanos() != 0 {
        return Err(format!(
            "{text:?} is not a whole number of seconds; use a value such as 5s or 2m"
        ));
    }
    u32::try_from(duration.as_secs()).map_err(|_| format!("{text:?} is too long"))
}

/// A duration as people write it: `1m30s`, `45s`, `500ms`.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.subsec_millis();
    let seconds = duration.as_secs();
    if seconds == 0 && millis > 0 {
        return format!("{millis}ms");
    }
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    if seconds > 0 || text.is_empty() {
        text.push_str(&format!("{seconds}s"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_add_up() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn anything_else_is_refused_with_an_example() {
        for bad in ["", "5", "5x", "s", "1.5s", "-3s", "5s3", "99999999999h"] {
            let error = parse_duration(bad).unwrap_err();
            assert!(error.contains("such as 30s"), "{bad}: {error}");
        }
    }

    #[test]
    fn heartbeat_intervals_are_whole_seconds() {
        assert_eq!(parse_whole_seconds("5s"), Ok(5));
        assert_eq!(parse_whole_seconds("2m"), Ok(120));
        let error = parse_whole_seconds("1500ms").unwrap_err();
        assert!(error.contains("whole number of seconds"), "{error}");
    }

    #[test]
    fn durations_print_as_typed() {
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_millis(300)), "300ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
