//! Request ids: every request that changes the cluster carries one, made
//! up here once per invocation (or given with `--request-id` to retry one),
//! so that the cluster applies it at most once however often it is sent.
//!
//! The form is the server's: `YYYYMMDDTHHMMSS.mmmZ-SUFFIX`, the UTC time
//! it was issued (the cluster remembers ids for 24 hours after that) and
//! 16 random hex digits, e.g. `20231114T221320.123Z-9f86d081884c7d65`.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::rfc3339::request_stamp;

/// A new request id, issued now.
pub fn new_request_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    format!("{}-{:016x}", request_stamp(now), rand::random::<u64>())
}

/// Checks a `--request-id` value's form (the server checks it again, and
/// the date); the reason is for a usage error.
pub fn check_request_id(raw: &str) -> Result<String, String> {
    let expected = "expected YYYYMMDDTHHMMSS.mmmZ-SUFFIX as palisadectl printed it, \
                    e.g. 20231114T221320.123Z-9f86d081884c7d65";
    let Some((stamp, suffix)) = raw.rsplit_once('-') else {
        return Err(expected.to_owned());
    };
    let b = stamp.as_bytes();
    let stamp_ok = b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            8 => *c == b'T',
            15 => *c == b'.',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    let suffix_ok = (8..=40).contains(&suffix.len())
        && suffix
            .bytes()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase());
    if stamp_ok && suffix_ok {
        Ok(raw.to_owned())
    } else {
        Err(expected.to_owned())
    }
}

/// `clap` value parser for `--request-id`.
pub fn request_id_arg(raw: &str) -> Result<String, String> {
    check_request_id(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_well_formed_and_differ() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(check_request_id(&a), Ok(a.clone()));
        assert_eq!(a.len(), 37, "{a}");
    }

    #[test]
    fn bad_ids_are_refused() {
        assert!(check_request_id("20231114T221320.123Z-9f86d081884c7d65").is_ok());
        for bad in [
            "",
            "retry-1",
            "20231114T221320Z-9f86d081884c7d65",
            "20231114T221320.123Z-9F86",
            "20231114 221320.123Z-9f86d081884c7d65",
        ] {
            assert!(check_request_id(bad).is_err(), "{bad}");
        }
    }
}

/// `s` quoted for a POSIX shell when it needs it (for the retry command
/// lines in messages).
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+%".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod quote_tests {
    use super::shell_quote;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(shell_quote("site-b"), "site-b");
        assert_eq!(shell_quote("DR test"), "'DR test'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
