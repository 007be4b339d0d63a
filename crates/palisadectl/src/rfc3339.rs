//! UTC timestamps for people, without a time crate: the journal only needs
//! Unix milliseconds shown as RFC 3339.

/// Milliseconds per civil day.
const MS_PER_DAY: i64 = 86_400_000;

/// Unix milliseconds as UTC RFC 3339 with millisecond precision, e.g.
/// `2023-11-14T22:13:20.123Z`. RFC 3339 only covers years 0000–9999; a
/// timestamp outside that (a broken clock) is shown raw rather than invented.
pub fn rfc3339_millis(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(MS_PER_DAY);
    let ms = unix_ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return format!("{unix_ms} ms since the Unix epoch");
    }
    let (secs, millis) = (ms / 1000, ms % 1000);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Unix milliseconds as a UTC timestamp fit for a file name, to the
/// second: `20231114T221320Z` (RFC 3339's basic form, no `:`).
pub fn compact_utc(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(MS_PER_DAY);
    let secs = unix_ms.rem_euclid(MS_PER_DAY) / 1000;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Unix milliseconds as the time a request id starts with:
/// `20231114T221320.123Z` (UTC, to the millisecond).
pub fn request_stamp(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(MS_PER_DAY);
    let ms = unix_ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let (secs, millis) = (ms / 1000, ms % 1000);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{millis:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01;
/// Howard Hinnant's `civil_from_days`, which shifts the year to start in
/// March so the leap day falls at its end.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_utc_is_file_name_safe() {
        assert_eq!(compact_utc(1_700_000_000_123), "20231114T221320Z");
        assert_eq!(compact_utc(0), "19700101T000000Z");
    }

    #[test]
    fn rfc3339_of_known_timestamps() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            rfc3339_millis(253_402_300_799_999),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(
            rfc3339_millis(-62_135_596_800_000),
            "0001-01-01T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339_millis(253_402_300_800_000),
            "253402300800000 ms since the Unix epoch"
        );
        assert_eq!(
            rfc3339_millis(i64::MIN),
            format!("{} ms since the Unix epoch", i64::MIN)
        );
    }
}
