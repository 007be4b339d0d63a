//! Exactly-once operator requests: the bounded, replicated record of the
//! request ids the cluster has applied, and what each one did.
//!
//! Every request that changes the cluster (`annotate`, `pause`, `resume`,
//! `switchover`, `failover`, `failback`, a drill's record) carries an id
//! that the client made up when the operator asked (palisadectl: one per
//! invocation, or `--request-id` to retry one). The leader proposes it as a
//! [`Command::Requested`](crate::Command::Requested); applying it looks the
//! id up here first:
//!
//! * **seen**: nothing is applied again; the result is
//!   [`CommandResult::Duplicate`] carrying the first request's record (its
//!   log index, its result, the epoch it raised). A request that timed out
//!   at the client and was committed later, then retried, therefore takes
//!   effect once.
//! * **too old to tell**: the id says when it was issued (see
//!   [`parse_request_id`]). Ids are kept at least [`REQUEST_RETENTION_MS`]
//!   after they were issued (and at most [`MAX_REQUESTS`] of them); a
//!   request issued longer ago than that, or before the newest id dropped
//!   early by the count bound, might have been applied and forgotten, so it
//!   is refused with a reason instead of risking a second application.
//! * **new**: the command is applied and its record kept.
//!
//! Pruning is deterministic: it uses only the times carried in the log, so
//! every witness keeps the same records.
//!
//! [`CommandResult::Duplicate`]: crate::CommandResult::Duplicate

use serde::{Deserialize, Serialize};

use crate::command::{CommandError, CommandResult};

/// How long after it was issued a request id is remembered, at least: a
/// retry of a request issued longer ago is refused (it might have been
/// applied and forgotten). A day covers an operator who retries after a
/// long outage; longer would only keep more records.
pub const REQUEST_RETENTION_MS: i64 = 24 * 3600 * 1000;

/// How many request records are kept at most, whatever their age (a
/// script that loops `annotate` must not grow every snapshot without
/// bound). Requests issued at or before the newest one dropped for this
/// are refused like those older than [`REQUEST_RETENTION_MS`].
pub const MAX_REQUESTS: usize = 1000;

/// Extra time a record is kept beyond [`REQUEST_RETENTION_MS`]: the leader
/// that prunes and the leader that later judges a retry's age may have
/// clocks this far apart without a retry slipping through.
pub const PRUNE_SLACK_MS: i64 = 3600 * 1000;

/// Longest request id, in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 64;

/// The request kinds, as [`RequestRecord::kind`] names them.
pub const KINDS: [&str; 7] = [
    "annotate",
    "pause",
    "resume",
    "switchover",
    "failover",
    "failback",
    "drill",
];

/// What the cluster remembers of one applied request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// The id the client sent.
    pub id: String,
    /// When the client issued it (from the id), client clock, Unix ms.
    pub issued_ms: i64,
    /// One of [`KINDS`].
    pub kind: String,
    /// Who asked (the operator identity the request carried).
    pub who: String,
    /// When the leader accepted it, leader wall clock, Unix ms.
    pub at_ms: i64,
    /// Raft log index where it was applied.
    pub log_index: u64,
    /// What applying it returned (`Rejected` included: a retry gets the
    /// same refusal, since nothing changed the first time either).
    pub result: CommandResult,
    /// For `switchover`, `failover`, `failback` that were applied: the
    /// epoch the operation raised the cluster to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// What the request did, in words (e.g. `switchover a -> b`,
    /// `pause for 7200000 ms: DR test`).
    #[serde(default)]
    pub summary: String,
    /// What the leader said beyond the result when it accepted the
    /// request (a forced failover's data-loss bound), for a retry's reply.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// The applied request ids, oldest first. Part of [`ClusterState`], so
/// serialized into snapshots: fields are only added, with serde defaults.
///
/// [`ClusterState`]: crate::ClusterState
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestLog {
    /// Records in apply order.
    #[serde(default)]
    pub records: Vec<RequestRecord>,
    /// The latest `issued_ms` of a record dropped because of
    /// [`MAX_REQUESTS`] (not because of its age); 0 when none was. A
    /// request issued at or before it and not found is refused.
    #[serde(default)]
    pub forgotten_through_ms: i64,
}

/// Why a request cannot be de-duplicated (and so is not applied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// Not seen, and recent enough that it would have been remembered.
    New,
    /// Seen: this is what it did.
    Seen(&'a RequestRecord),
    /// Too old to tell whether it was applied; the reason, for the
    /// operator.
    TooOld(String),
}

impl RequestLog {
    /// The record of request `id`, if it is remembered.
    pub fn get(&self, id: &str) -> Option<&RequestRecord> {
        self.records.iter().find(|r| r.id == id)
    }

    /// Whether request `id`, issued at `issued_ms`, is new, seen, or too
    /// old to tell, judged at `now_ms` (the leader's clock when it accepted
    /// the request).
    pub fn lookup(&self, id: &str, issued_ms: i64, now_ms: i64) -> Lookup<'_> {
        if let Some(r) = self.get(id) {
            return Lookup::Seen(r);
        }
        let retention_h = REQUEST_RETENTION_MS / 3_600_000;
        if issued_ms < now_ms.saturating_sub(REQUEST_RETENTION_MS) {
            return Lookup::TooOld(format!(
                "request {id} was issued {} ago, more than the {retention_h} h the cluster remembers \
                 request ids for: it cannot tell whether it was already applied, so it does not \
                 apply it again; check `palisadectl history` and, if it is still needed, send it \
                 again without --request-id",
                age(now_ms - issued_ms)
            ));
        }
        if issued_ms <= self.forgotten_through_ms {
            return Lookup::TooOld(format!(
                "request {id} was issued before the oldest request the cluster still remembers \
                 (it keeps the last {MAX_REQUESTS}): it cannot tell whether it was already \
                 applied, so it does not apply it again; check `palisadectl history` and, if it \
                 is still needed, send it again without --request-id"
            ));
        }
        Lookup::New
    }

    /// Keeps `record` and drops what the bounds no longer cover: records
    /// issued more than [`REQUEST_RETENTION_MS`] + [`PRUNE_SLACK_MS`]
    /// before `now_ms`, then the oldest beyond [`MAX_REQUESTS`].
    pub fn remember(&mut self, record: RequestRecord, now_ms: i64) {
        self.records.push(record);
        let horizon = now_ms
            .saturating_sub(REQUEST_RETENTION_MS)
            .saturating_sub(PRUNE_SLACK_MS);
        self.records.retain(|r| r.issued_ms >= horizon);
        if self.records.len() > MAX_REQUESTS {
            let excess = self.records.len() - MAX_REQUESTS;
            for r in self.records.drain(..excess) {
                self.forgotten_through_ms = self.forgotten_through_ms.max(r.issued_ms);
            }
        }
    }
}

fn age(ms: i64) -> String {
    let h = ms / 3_600_000;
    if h >= 48 {
        format!("{} days", h / 24)
    } else {
        format!("{h} h")
    }
}

/// Parses a request id, `YYYYMMDDTHHMMSS.mmmZ-SUFFIX` (e.g.
/// `20231114T221320.123Z-9f86d081884c7d65`): when the client issued it (UTC,
/// milliseconds) and 8 to 40 lowercase letters or digits that make it
/// unique. Returns the issue time, Unix ms.
pub fn parse_request_id(id: &str) -> Result<i64, CommandError> {
    let bad = |why: &str| {
        CommandError {
        field: "request_id",
        reason: format!(
            "{id:?} {why}; expected YYYYMMDDTHHMMSS.mmmZ-SUFFIX, e.g. 20231114T221320.123Z-9f86d081884c7d65"
        ),
    }
    };
    if id.len() > MAX_REQUEST_ID_BYTES {
        return Err(bad(&format!("is longer than {MAX_REQUEST_ID_BYTES} bytes")));
    }
    let Some((stamp, suffix)) = id.rsplit_once('-') else {
        return Err(bad("has no '-'"));
    };
    if !(8..=40).contains(&suffix.len())
        || !suffix
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    {
        return Err(bad(
            "has a suffix that is not 8-40 lowercase letters or digits",
        ));
    }
    let b = stamp.as_bytes();
    let layout_ok = b.len() == 20
        && b[8] == b'T'
        && b[15] == b'.'
        && b[19] == b'Z'
        && b.iter()
            .enumerate()
            .all(|(i, c)| matches!(i, 8 | 15 | 19) || c.is_ascii_digit());
    if !layout_ok {
        return Err(bad("does not start with a time"));
    }
    let num = |from: usize, to: usize| -> i64 {
        stamp[from..to]
            .parse::<i64>()
            .expect("checked: ASCII digits")
    };
    let (year, month, day) = (num(0, 4), num(4, 6), num(6, 8));
    let (hour, minute, second, milli) = (num(9, 11), num(11, 13), num(13, 15), num(16, 19));
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(bad("does not start with a valid time"));
    }
    let days = days_from_civil(year, month, day);
    Ok(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + milli)
}

/// `unix_ms` as UTC RFC 3339 with milliseconds (`2023-11-14T22:13:20.123Z`),
/// for messages.
pub fn rfc3339(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let in_day = unix_ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

/// Formats `unix_ms` as the time prefix of a request id.
pub fn request_id_stamp(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let in_day = unix_ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn request_ids_carry_their_issue_time() {
        assert_eq!(
            parse_request_id("20231114T221320.123Z-9f86d081884c7d65"),
            Ok(1_700_000_000_123)
        );
        assert_eq!(parse_request_id("19700101T000000.000Z-00000000"), Ok(0));
        assert_eq!(request_id_stamp(1_700_000_000_123), "20231114T221320.123Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        for (id, why) in [
            ("", "has no '-'"),
            ("20231114T221320.123Z", "has no '-'"),
            ("20231114T221320.123Z-short", "suffix"),
            ("20231114T221320.123Z-UPPERCASE1", "suffix"),
            ("2023-11-14T22:13:20Z-9f86d081884c7d65", "time"),
            ("20231314T221320.123Z-9f86d081884c7d65", "valid time"),
            ("20230229T221320.123Z-9f86d081884c7d65", "valid time"),
            ("20231114T246060.123Z-9f86d081884c7d65", "valid time"),
        ] {
            let e = parse_request_id(id).expect_err(id);
            assert_eq!(e.field, "request_id");
            assert!(e.reason.contains(why), "{id}: {e}");
        }
        assert!(parse_request_id(&format!("20231114T221320.123Z-{}", "a".repeat(41))).is_err());
    }

    proptest! {
        /// The stamp the CLI writes is the time the server reads back.
        #[test]
        fn stamps_round_trip(ms in 0i64..8_000_000_000_000) {
            let id = format!("{}-{}", request_id_stamp(ms), "0123456789abcdef");
            prop_assert_eq!(parse_request_id(&id), Ok(ms));
        }
    }

    fn record(id: &str, issued_ms: i64) -> RequestRecord {
        RequestRecord {
            id: id.into(),
            issued_ms,
            kind: "annotate".into(),
            who: "ops".into(),
            at_ms: issued_ms,
            log_index: 1,
            result: CommandResult::Applied,
            epoch: None,
            summary: String::new(),
            detail: String::new(),
        }
    }

    #[test]
    fn old_requests_are_refused_not_applied_twice() {
        let day = REQUEST_RETENTION_MS;
        let mut log = RequestLog::default();
        log.remember(record("x", 1_000), 1_000);
        assert!(matches!(
            log.lookup("x", 1_000, 1_000 + day),
            Lookup::Seen(_)
        ));
        // Seen records are kept for the retention and the slack.
        log.remember(record("y", day + 1_000), day + 1_000);
        assert!(log.get("x").is_some());
        log.remember(record("z", 2 * day), 2 * day);
        assert!(log.get("x").is_none(), "pruned after retention + slack");
        // A retry of "x" now is too old to tell, and says why.
        match log.lookup("x", 1_000, 2 * day) {
            Lookup::TooOld(why) => assert!(why.contains("cannot tell"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(log.lookup("new", 2 * day - 5, 2 * day), Lookup::New);
    }

    #[test]
    fn the_count_bound_moves_the_horizon() {
        let mut log = RequestLog::default();
        for i in 0..(MAX_REQUESTS as i64 + 5) {
            log.remember(record(&format!("r{i}"), 10 + i), 10 + i);
        }
        assert_eq!(log.records.len(), MAX_REQUESTS);
        assert_eq!(log.forgotten_through_ms, 14);
        assert!(matches!(log.lookup("r3", 13, 2_000), Lookup::TooOld(_)));
        assert!(matches!(log.lookup("r5", 15, 2_000), Lookup::Seen(_)));
        assert_eq!(log.lookup("fresh", 2_000, 2_000), Lookup::New);
    }
}
