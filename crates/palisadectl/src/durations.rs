//! Durations on the command line and in drill plans (`30s`, `15m`, `2h`,
//! `1h30m`, as the `humantime` crate reads them), and durations for people.

use std::time::Duration;

/// Parses a duration of at least one millisecond; the error is the reason
/// only, for the caller to name the flag or key.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(raw.trim())
        .map_err(|e| format!("{e} (expected e.g. 30s, 15m, 2h, 1h30m)"))?;
    if d < Duration::from_millis(1) {
        return Err("must be at least 1ms".to_owned());
    }
    // Sent as u64 milliseconds and added to Instants: keep it sane.
    if d > Duration::from_secs(366 * 24 * 3600) {
        return Err("must be at most a year".to_owned());
    }
    Ok(d)
}

/// `clap` value parser for duration flags (`--for`, `--wait-timeout`):
/// clap names the flag and the value in its usage error.
pub fn duration_arg(raw: &str) -> Result<Duration, String> {
    parse_duration(raw)
}

/// A duration for people: milliseconds below a minute (`4230 ms`, the unit
/// failover steps are measured in), whole `1h 2m 3s` from a minute on.
pub fn human_ms(ms: i64) -> String {
    if ms < 60_000 {
        return format!("{ms} ms");
    }
    let secs = u64::try_from((ms + 500) / 1000).unwrap_or(0);
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// A [`Duration`] as `30s`, `2h`, `1h 30m` for messages and plans.
pub fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// Milliseconds in `d`, saturating: the wire carries u64 milliseconds.
pub fn as_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_the_documented_forms() {
        for (raw, secs) in [
            ("30s", 30),
            ("15m", 900),
            ("2h", 7200),
            ("1h30m", 5400),
            ("1h 30m", 5400),
            (" 5min ", 300),
        ] {
            assert_eq!(parse_duration(raw), Ok(Duration::from_secs(secs)), "{raw}");
        }
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn bad_durations_say_why() {
        for (raw, reason) in [
            ("", "expected e.g. 30s"),
            ("30", "time unit needed"),
            ("2x", "unknown time unit"),
            ("0s", "at least 1ms"),
            ("500days", "at most a year"),
        ] {
            let err = parse_duration(raw).expect_err(raw);
            assert!(err.contains(reason), "{raw}: {err}");
        }
    }

    #[test]
    fn human_forms() {
        assert_eq!(human_ms(4230), "4230 ms");
        assert_eq!(human_ms(59_999), "59999 ms");
        assert_eq!(human_ms(3_723_400), "1h 2m 3s");
        assert_eq!(human(Duration::from_secs(5400)), "1h 30m");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
    }
}
