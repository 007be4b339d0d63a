//! Conversions between the daemon's peer types ([`crate::peer_msgs`],
//! `palisade_core::observe`) and their protobuf form in
//! `proto/palisade/v1/peer.proto`.
//!
//! Encoding cannot fail. Decoding checks what protobuf cannot: a site is
//! never empty nor listed twice, an enum holds a known value other than
//! `UNSPECIFIED`, a required message or `oneof` is present, a port fits in
//! 16 bits, a lag is a number, an epoch is at least 1. A [`Malformed`]
//! names the field (`dbs[1].reachability.down.class`).

use std::collections::BTreeMap;

use palisade_api::v1 as pb;
use palisade_core::detector::LastWritable;
use palisade_core::observe::{
    ErrorClass, PgObservation, Reachability, ReplicaInfo, WalReceiverInfo,
};
use palisade_core::SiteId;

use crate::peer_msgs::{Report, SiteAction, SiteActionDone, SiteActionFailure};

/// A peer message that does not decode: which field, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Malformed {
    /// The field's path in the message, e.g. `dbs[0].site`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Malformed {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

// ---- Report -------------------------------------------------------------

/// A report as sent.
pub fn report_to_pb(r: &Report) -> pb::Report {
    pb::Report {
        witness: r.witness,
        dbs: r
            .dbs
            .iter()
            .map(|(site, o)| observation_to_pb(site, o))
            .collect(),
        last_writable: r
            .last_writable
            .iter()
            .map(|(site, w)| pb::LastWritable {
                site: site.0.clone(),
                lsn: w.lsn,
                age_ms: w.age_ms,
            })
            .collect(),
        unreachable_for: r
            .unreachable_for
            .iter()
            .map(|(site, ms)| pb::Unreachable {
                site: site.0.clone(),
                for_ms: *ms,
            })
            .collect(),
    }
}

/// A report as received.
pub fn report_from_pb(r: pb::Report) -> Result<Report, Malformed> {
    let mut dbs = BTreeMap::new();
    for (i, o) in r.dbs.into_iter().enumerate() {
        let field = format!("dbs[{i}]");
        let (site, o) = observation_from_pb(o, &field)?;
        if dbs.contains_key(&site) {
            return Err(Malformed::new(
                format!("{field}.site"),
                format!("site {site} listed twice"),
            ));
        }
        dbs.insert(site, o);
    }
    let mut last_writable = BTreeMap::new();
    for (i, w) in r.last_writable.into_iter().enumerate() {
        let field = format!("last_writable[{i}].site");
        let site = site_from_pb(w.site, &field)?;
        if last_writable.contains_key(&site) {
            return Err(Malformed::new(field, format!("site {site} listed twice")));
        }
        last_writable.insert(
            site,
            LastWritable {
                lsn: w.lsn,
                age_ms: w.age_ms,
            },
        );
    }
    let mut unreachable_for = BTreeMap::new();
    for (i, u) in r.unreachable_for.into_iter().enumerate() {
        let field = format!("unreachable_for[{i}].site");
        let site = site_from_pb(u.site, &field)?;
        if unreachable_for.contains_key(&site) {
            return Err(Malformed::new(field, format!("site {site} listed twice")));
        }
        unreachable_for.insert(site, u.for_ms);
    }
    Ok(Report {
        witness: r.witness,
        dbs,
        last_writable,
        unreachable_for,
    })
}

fn site_from_pb(site: String, field: &str) -> Result<SiteId, Malformed> {
    if site.is_empty() {
        return Err(Malformed::new(field, "empty"));
    }
    Ok(SiteId(site))
}

/// One probe of `site`'s database as sent.
pub fn observation_to_pb(site: &SiteId, o: &PgObservation) -> pb::PgObservation {
    use pb::reachability::State;
    let state = match &o.reachability {
        Reachability::Up => State::Up(pb::ReachUp {}),
        Reachability::Down { class, detail } => State::Down(pb::ReachDown {
            class: error_class_to_pb(*class) as i32,
            detail: detail.clone(),
        }),
    };
    pb::PgObservation {
        site: site.0.clone(),
        reachability: Some(pb::Reachability { state: Some(state) }),
        in_recovery: o.in_recovery,
        current_lsn: o.current_lsn,
        receive_lsn: o.receive_lsn,
        replay_lsn: o.replay_lsn,
        replay_lag_seconds: o.replay_lag_seconds,
        wal_receiver: o.wal_receiver.as_ref().map(|w| pb::WalReceiverInfo {
            status: w.status.clone(),
            sender_host: w.sender_host.clone(),
            sender_port: w.sender_port.map(u32::from),
            flushed_lsn: w.flushed_lsn,
            last_msg_age_ms: w.last_msg_age_ms,
        }),
        replicas: o
            .replicas
            .iter()
            .map(|r| pb::ReplicaInfo {
                application_name: r.application_name.clone(),
                client_addr: r.client_addr.clone(),
                state: r.state.clone(),
                sync_state: r.sync_state.clone(),
                sent_lsn: r.sent_lsn,
                flush_lsn: r.flush_lsn,
                replay_lsn: r.replay_lsn,
            })
            .collect(),
        sync_waiters: o.sync_waiters,
        latency_ms: o.latency_ms,
    }
}

/// One probe as received; `field` is its path, for errors.
pub fn observation_from_pb(
    o: pb::PgObservation,
    field: &str,
) -> Result<(SiteId, PgObservation), Malformed> {
    use pb::reachability::State;
    let site = site_from_pb(o.site, &format!("{field}.site"))?;
    let reachability = match o.reachability.and_then(|r| r.state) {
        None => return Err(Malformed::new(format!("{field}.reachability"), "missing")),
        Some(State::Up(pb::ReachUp {})) => Reachability::Up,
        Some(State::Down(d)) => Reachability::Down {
            class: error_class_from_pb(d.class, &format!("{field}.reachability.down.class"))?,
            detail: d.detail,
        },
    };
    if o.replay_lag_seconds.is_some_and(f64::is_nan) {
        // A NaN lag passes every `lag > max_lag` guard.
        return Err(Malformed::new(
            format!("{field}.replay_lag_seconds"),
            "not a number",
        ));
    }
    let wal_receiver = match o.wal_receiver {
        None => None,
        Some(w) => Some(WalReceiverInfo {
            status: w.status,
            sender_host: w.sender_host,
            sender_port: w
                .sender_port
                .map(|p| {
                    u16::try_from(p).map_err(|_| {
                        Malformed::new(
                            format!("{field}.wal_receiver.sender_port"),
                            format!("{p} is not a TCP port"),
                        )
                    })
                })
                .transpose()?,
            flushed_lsn: w.flushed_lsn,
            last_msg_age_ms: w.last_msg_age_ms,
        }),
    };
    let observation = PgObservation {
        reachability,
        in_recovery: o.in_recovery,
        current_lsn: o.current_lsn,
        receive_lsn: o.receive_lsn,
        replay_lsn: o.replay_lsn,
        replay_lag_seconds: o.replay_lag_seconds,
        wal_receiver,
        replicas: o
            .replicas
            .into_iter()
            .map(|r| ReplicaInfo {
                application_name: r.application_name,
                client_addr: r.client_addr,
                state: r.state,
                sync_state: r.sync_state,
                sent_lsn: r.sent_lsn,
                flush_lsn: r.flush_lsn,
                replay_lsn: r.replay_lsn,
            })
            .collect(),
        sync_waiters: o.sync_waiters,
        latency_ms: o.latency_ms,
    };
    Ok((site, observation))
}

fn error_class_to_pb(c: ErrorClass) -> pb::ProbeErrorClass {
    match c {
        ErrorClass::Refused => pb::ProbeErrorClass::Refused,
        ErrorClass::Timeout => pb::ProbeErrorClass::Timeout,
        ErrorClass::Auth => pb::ProbeErrorClass::Auth,
        ErrorClass::NotReady => pb::ProbeErrorClass::NotReady,
        ErrorClass::Other => pb::ProbeErrorClass::Other,
    }
}

fn error_class_from_pb(value: i32, field: &str) -> Result<ErrorClass, Malformed> {
    match pb::ProbeErrorClass::try_from(value) {
        Ok(pb::ProbeErrorClass::Refused) => Ok(ErrorClass::Refused),
        Ok(pb::ProbeErrorClass::Timeout) => Ok(ErrorClass::Timeout),
        Ok(pb::ProbeErrorClass::Auth) => Ok(ErrorClass::Auth),
        Ok(pb::ProbeErrorClass::NotReady) => Ok(ErrorClass::NotReady),
        Ok(pb::ProbeErrorClass::Other) => Ok(ErrorClass::Other),
        Ok(pb::ProbeErrorClass::Unspecified) => Err(Malformed::new(field, "unspecified")),
        Err(_) => Err(Malformed::new(field, format!("unknown value {value}"))),
    }
}

// ---- Site actions -------------------------------------------------------

/// A site action as sent.
pub fn action_to_pb(a: &SiteAction) -> pb::SiteActionRequest {
    use pb::site_action_request::Action;
    let action = match a {
        SiteAction::Fence { planned, .. } => Action::Fence(pb::FenceAction { planned: *planned }),
        SiteAction::Promote { .. } => Action::Promote(pb::PromoteAction {}),
        SiteAction::SetMonitors { enabled, .. } => {
            Action::SetMonitors(pb::SetMonitorsAction { enabled: *enabled })
        }
        SiteAction::RepointSearch { .. } => Action::RepointSearch(pb::RepointSearchAction {}),
        SiteAction::ReadMonitors { .. } => Action::ReadMonitors(pb::ReadMonitorsAction {}),
    };
    pb::SiteActionRequest {
        epoch: a.epoch(),
        action: Some(action),
    }
}

/// A site action as received.
pub fn action_from_pb(r: pb::SiteActionRequest) -> Result<SiteAction, Malformed> {
    use pb::site_action_request::Action;
    let epoch = r.epoch;
    if epoch == 0 {
        // Unset reads as 0; every failover's epoch is at least 1.
        return Err(Malformed::new(
            "epoch",
            "0 (a site action belongs to a failover, whose epoch is at least 1)",
        ));
    }
    Ok(match r.action {
        None => return Err(Malformed::new("action", "missing")),
        Some(Action::Fence(pb::FenceAction { planned })) => SiteAction::Fence { epoch, planned },
        Some(Action::Promote(pb::PromoteAction {})) => SiteAction::Promote { epoch },
        Some(Action::SetMonitors(pb::SetMonitorsAction { enabled })) => {
            SiteAction::SetMonitors { epoch, enabled }
        }
        // No host, URL or index travels: an older leader's (reserved
        // fields 1-3) are dropped by the decoder, unread.
        Some(Action::RepointSearch(pb::RepointSearchAction {})) => {
            SiteAction::RepointSearch { epoch }
        }
        Some(Action::ReadMonitors(pb::ReadMonitorsAction {})) => SiteAction::ReadMonitors { epoch },
    })
}

/// A site agent's answer as sent.
pub fn reply_to_pb(r: Result<SiteActionDone, SiteActionFailure>) -> pb::SiteActionReply {
    use pb::site_action_reply::Outcome;
    let outcome = match r {
        Ok(SiteActionDone { detail, lsn }) => Outcome::Done(pb::SiteActionDone { detail, lsn }),
        Err(f) => {
            let (kind, reason) = match f {
                SiteActionFailure::Refused(r) => (pb::SiteActionFailureKind::Refused, r),
                SiteActionFailure::NotApplied(r) => (pb::SiteActionFailureKind::NotApplied, r),
                SiteActionFailure::Failed(r) => (pb::SiteActionFailureKind::Failed, r),
            };
            Outcome::Failure(pb::SiteActionFailure {
                kind: kind as i32,
                reason,
            })
        }
    };
    pb::SiteActionReply {
        outcome: Some(outcome),
    }
}

/// A site agent's answer as received.
pub fn reply_from_pb(
    r: pb::SiteActionReply,
) -> Result<Result<SiteActionDone, SiteActionFailure>, Malformed> {
    use pb::site_action_reply::Outcome;
    match r.outcome {
        None => Err(Malformed::new("outcome", "missing")),
        Some(Outcome::Done(pb::SiteActionDone { detail, lsn })) => {
            Ok(Ok(SiteActionDone { detail, lsn }))
        }
        Some(Outcome::Failure(pb::SiteActionFailure { kind, reason })) => {
            let failure = match pb::SiteActionFailureKind::try_from(kind) {
                Ok(pb::SiteActionFailureKind::Refused) => SiteActionFailure::Refused(reason),
                Ok(pb::SiteActionFailureKind::NotApplied) => SiteActionFailure::NotApplied(reason),
                Ok(pb::SiteActionFailureKind::Failed) => SiteActionFailure::Failed(reason),
                Ok(pb::SiteActionFailureKind::Unspecified) => {
                    return Err(Malformed::new("failure.kind", "unspecified"))
                }
                Err(_) => {
                    return Err(Malformed::new(
                        "failure.kind",
                        format!("unknown value {kind}"),
                    ))
                }
            };
            Ok(Err(failure))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use prost::Message;

    /// Through the wire bytes too, as a peer would see it.
    fn wire<M: Message + Default>(m: &M) -> M {
        M::decode(m.encode_to_vec().as_slice()).expect("decodes its own encoding")
    }

    fn site(s: &str) -> SiteId {
        SiteId(s.into())
    }

    fn primary() -> PgObservation {
        PgObservation {
            reachability: Reachability::Up,
            in_recovery: Some(false),
            current_lsn: Some(0x16_B374_D848),
            receive_lsn: None,
            replay_lsn: None,
            replay_lag_seconds: None,
            wal_receiver: None,
            replicas: vec![
                ReplicaInfo {
                    application_name: "b".into(),
                    client_addr: Some("198.18.0.2".into()),
                    state: "streaming".into(),
                    sync_state: "sync".into(),
                    sent_lsn: Some(u64::MAX),
                    flush_lsn: Some(0),
                    replay_lsn: None,
                },
                ReplicaInfo {
                    application_name: String::new(),
                    client_addr: None,
                    state: "catchup".into(),
                    sync_state: "async".into(),
                    sent_lsn: None,
                    flush_lsn: None,
                    replay_lsn: Some(7),
                },
            ],
            sync_waiters: Some(0),
            latency_ms: 0,
        }
    }

    fn standby() -> PgObservation {
        PgObservation {
            reachability: Reachability::Up,
            in_recovery: Some(true),
            current_lsn: None,
            receive_lsn: Some(0x300_0148),
            replay_lsn: Some(0x300_0100),
            replay_lag_seconds: Some(0.0),
            wal_receiver: Some(WalReceiverInfo {
                status: "streaming".into(),
                sender_host: Some("a.example".into()),
                sender_port: Some(u16::MAX),
                flushed_lsn: Some(0x300_0148),
                last_msg_age_ms: Some(0),
            }),
            replicas: Vec::new(),
            sync_waiters: None,
            latency_ms: u64::MAX,
        }
    }

    fn report() -> Report {
        Report {
            witness: 3,
            dbs: [
                (site("a"), primary()),
                (site("b"), standby()),
                (
                    site("c"),
                    PgObservation::down(
                        ErrorClass::NotReady,
                        "the database system is starting up",
                        12,
                    ),
                ),
            ]
            .into(),
            last_writable: [
                (
                    site("a"),
                    LastWritable {
                        lsn: 0x16_B374_D848,
                        age_ms: 0,
                    },
                ),
                (
                    site("b"),
                    LastWritable {
                        lsn: u64::MAX,
                        age_ms: u64::MAX,
                    },
                ),
            ]
            .into(),
            unreachable_for: [(site("c"), 1250)].into(),
        }
    }

    #[test]
    fn a_report_round_trips_with_every_field() {
        let r = report();
        assert_eq!(report_from_pb(wire(&report_to_pb(&r))), Ok(r));
    }

    #[test]
    fn an_empty_report_round_trips() {
        let r = Report {
            witness: 0,
            dbs: BTreeMap::new(),
            last_writable: BTreeMap::new(),
            unreachable_for: BTreeMap::new(),
        };
        assert_eq!(report_from_pb(wire(&report_to_pb(&r))), Ok(r));
    }

    #[test]
    fn every_error_class_round_trips() {
        for class in [
            ErrorClass::Refused,
            ErrorClass::Timeout,
            ErrorClass::Auth,
            ErrorClass::NotReady,
            ErrorClass::Other,
        ] {
            let o = PgObservation::down(class, "", 5);
            let back = observation_from_pb(wire(&observation_to_pb(&site("a"), &o)), "db");
            assert_eq!(back, Ok((site("a"), o)), "{class:?}");
        }
    }

    #[test]
    fn unknowns_stay_unknown_and_zeros_stay_zero() {
        // `None` and `Some(0)` / `Some(false)` / `Some("")` are different
        // answers: a detector must never read "unknown" as "caught up".
        let mut o = PgObservation::down(ErrorClass::Timeout, "x", 1);
        let (_, back) =
            observation_from_pb(wire(&observation_to_pb(&site("a"), &o)), "db").expect("decodes");
        assert_eq!(back, o);
        o.reachability = Reachability::Up;
        o.in_recovery = Some(false);
        o.current_lsn = Some(0);
        o.receive_lsn = Some(0);
        o.replay_lsn = Some(0);
        o.replay_lag_seconds = Some(0.0);
        o.sync_waiters = Some(0);
        o.wal_receiver = Some(WalReceiverInfo {
            status: String::new(),
            sender_host: Some(String::new()),
            sender_port: Some(0),
            flushed_lsn: Some(0),
            last_msg_age_ms: None,
        });
        let (_, back) =
            observation_from_pb(wire(&observation_to_pb(&site("a"), &o)), "db").expect("decodes");
        assert_eq!(back, o);
    }

    #[test]
    fn an_infinite_lag_round_trips() {
        let mut o = standby();
        o.replay_lag_seconds = Some(f64::INFINITY);
        let (_, back) =
            observation_from_pb(wire(&observation_to_pb(&site("b"), &o)), "db").expect("decodes");
        assert_eq!(back, o);
    }

    fn err(field: &str, reason: &str) -> Malformed {
        Malformed::new(field, reason)
    }

    #[test]
    fn a_report_with_an_empty_site_is_refused_naming_the_field() {
        let mut pb = report_to_pb(&report());
        pb.dbs[1].site.clear();
        assert_eq!(report_from_pb(pb), Err(err("dbs[1].site", "empty")));
        let mut pb = report_to_pb(&report());
        pb.last_writable[0].site.clear();
        assert_eq!(
            report_from_pb(pb),
            Err(err("last_writable[0].site", "empty"))
        );
    }

    #[test]
    fn a_report_listing_a_site_twice_is_refused() {
        let mut pb = report_to_pb(&report());
        pb.dbs[2].site = "a".into();
        assert_eq!(
            report_from_pb(pb),
            Err(err("dbs[2].site", "site a listed twice"))
        );
        let mut pb = report_to_pb(&report());
        pb.last_writable[1].site = "a".into();
        assert_eq!(
            report_from_pb(pb),
            Err(err("last_writable[1].site", "site a listed twice"))
        );
    }

    #[test]
    fn an_unknown_or_unspecified_error_class_is_refused_naming_the_field() {
        use pb::reachability::State;
        for (value, reason) in [(99, "unknown value 99"), (0, "unspecified")] {
            let mut pb = report_to_pb(&report());
            let Some(State::Down(d)) = pb.dbs[2]
                .reachability
                .as_mut()
                .and_then(|r| r.state.as_mut())
            else {
                panic!("site c is down in the fixture");
            };
            d.class = value;
            assert_eq!(
                report_from_pb(pb),
                Err(err("dbs[2].reachability.down.class", reason))
            );
        }
    }

    #[test]
    fn a_missing_reachability_is_refused() {
        for missing in [None, Some(pb::Reachability { state: None })] {
            let mut pb = report_to_pb(&report());
            pb.dbs[0].reachability = missing;
            assert_eq!(
                report_from_pb(pb),
                Err(err("dbs[0].reachability", "missing"))
            );
        }
    }

    #[test]
    fn a_port_beyond_16_bits_and_a_nan_lag_are_refused() {
        let mut pb = report_to_pb(&report());
        pb.dbs[1]
            .wal_receiver
            .as_mut()
            .expect("b has a receiver")
            .sender_port = Some(65_536);
        assert_eq!(
            report_from_pb(pb),
            Err(err(
                "dbs[1].wal_receiver.sender_port",
                "65536 is not a TCP port"
            ))
        );
        let mut pb = report_to_pb(&report());
        pb.dbs[1].replay_lag_seconds = Some(f64::NAN);
        assert_eq!(
            report_from_pb(pb),
            Err(err("dbs[1].replay_lag_seconds", "not a number"))
        );
    }

    fn actions() -> Vec<SiteAction> {
        vec![
            SiteAction::Fence {
                epoch: 1,
                planned: false,
            },
            SiteAction::Fence {
                epoch: u64::MAX,
                planned: true,
            },
            SiteAction::Promote { epoch: 2 },
            SiteAction::SetMonitors {
                epoch: 3,
                enabled: true,
            },
            SiteAction::SetMonitors {
                epoch: 3,
                enabled: false,
            },
            SiteAction::RepointSearch { epoch: 4 },
            SiteAction::ReadMonitors { epoch: 5 },
        ]
    }

    #[test]
    fn every_site_action_round_trips() {
        for a in actions() {
            assert_eq!(
                action_from_pb(wire(&action_to_pb(&a))),
                Ok(a.clone()),
                "{a:?}"
            );
        }
    }

    #[test]
    fn a_site_action_without_an_action_or_an_epoch_is_refused() {
        let mut pb = action_to_pb(&SiteAction::Promote { epoch: 2 });
        pb.action = None;
        assert_eq!(action_from_pb(pb), Err(err("action", "missing")));
        let mut pb = action_to_pb(&SiteAction::Promote { epoch: 2 });
        pb.epoch = 0;
        let e = action_from_pb(pb).expect_err("epoch 0 is no failover's");
        assert_eq!(e.field, "epoch");
        // An empty message (every field unset) is refused too.
        assert!(action_from_pb(wire(&pb::SiteActionRequest::default())).is_err());
    }

    #[test]
    fn every_reply_round_trips() {
        let replies = [
            Ok(SiteActionDone::said("stopped (fast) in 180 ms".into())),
            Ok(SiteActionDone {
                detail: String::new(),
                lsn: Some(0),
            }),
            Ok(SiteActionDone {
                detail: "shut down cleanly".into(),
                lsn: Some(u64::MAX),
            }),
            Err(SiteActionFailure::Refused("refusing to fence".into())),
            Err(SiteActionFailure::NotApplied(
                "epoch 4 not applied here (still at 3)".into(),
            )),
            Err(SiteActionFailure::Failed(String::new())),
        ];
        for r in replies {
            assert_eq!(
                reply_from_pb(wire(&reply_to_pb(r.clone()))),
                Ok(r.clone()),
                "{r:?}"
            );
        }
    }

    #[test]
    fn a_reply_without_an_outcome_or_with_an_unknown_kind_is_refused() {
        assert_eq!(
            reply_from_pb(pb::SiteActionReply { outcome: None }),
            Err(err("outcome", "missing"))
        );
        for (kind, reason) in [
            (0, "unspecified".to_string()),
            (42, "unknown value 42".into()),
        ] {
            let pb = pb::SiteActionReply {
                outcome: Some(pb::site_action_reply::Outcome::Failure(
                    pb::SiteActionFailure {
                        kind,
                        reason: "x".into(),
                    },
                )),
            };
            assert_eq!(reply_from_pb(pb), Err(err("failure.kind", &reason)));
        }
    }

    fn opt<T: std::fmt::Debug>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Option<T>> {
        proptest::option::of(s)
    }

    prop_compose! {
        fn any_replica()(
            application_name in ".{0,8}",
            client_addr in opt(".{0,8}"),
            state in "[a-z]{0,9}",
            sync_state in "[a-z]{0,9}",
            sent_lsn in opt(any::<u64>()),
            flush_lsn in opt(any::<u64>()),
            replay_lsn in opt(any::<u64>()),
        ) -> ReplicaInfo {
            ReplicaInfo { application_name, client_addr, state, sync_state, sent_lsn, flush_lsn, replay_lsn }
        }
    }

    prop_compose! {
        fn any_receiver()(
            status in "[a-z]{0,9}",
            sender_host in opt(".{0,8}"),
            sender_port in opt(any::<u16>()),
            flushed_lsn in opt(any::<u64>()),
            last_msg_age_ms in opt(any::<u64>()),
        ) -> WalReceiverInfo {
            WalReceiverInfo { status, sender_host, sender_port, flushed_lsn, last_msg_age_ms }
        }
    }

    fn any_reachability() -> impl Strategy<Value = Reachability> {
        prop_oneof![
            Just(Reachability::Up),
            (
                prop_oneof![
                    Just(ErrorClass::Refused),
                    Just(ErrorClass::Timeout),
                    Just(ErrorClass::Auth),
                    Just(ErrorClass::NotReady),
                    Just(ErrorClass::Other),
                ],
                ".{0,12}"
            )
                .prop_map(|(class, detail)| Reachability::Down { class, detail }),
        ]
    }

    prop_compose! {
        fn any_observation()(
            reachability in any_reachability(),
            in_recovery in opt(any::<bool>()),
            lsns in (opt(any::<u64>()), opt(any::<u64>()), opt(any::<u64>())),
            replay_lag_seconds in opt(prop_oneof![Just(0.0), Just(f64::INFINITY), any::<f64>().prop_filter("a number", |f| !f.is_nan())]),
            wal_receiver in opt(any_receiver()),
            replicas in proptest::collection::vec(any_replica(), 0..3),
            sync_waiters in opt(any::<u32>()),
            latency_ms in any::<u64>(),
        ) -> PgObservation {
            PgObservation {
                reachability, in_recovery,
                current_lsn: lsns.0, receive_lsn: lsns.1, replay_lsn: lsns.2,
                replay_lag_seconds, wal_receiver, replicas, sync_waiters, latency_ms,
            }
        }
    }

    proptest! {
        #[test]
        fn any_report_round_trips(
            witness in any::<u64>(),
            dbs in proptest::collection::btree_map("[a-z]{1,3}", any_observation(), 0..4),
            last in proptest::collection::btree_map("[a-z]{1,3}", (any::<u64>(), any::<u64>()), 0..4),
            unreachable in proptest::collection::btree_map("[a-z]{1,3}", any::<u64>(), 0..4),
        ) {
            let r = Report {
                witness,
                dbs: dbs.into_iter().map(|(s, o)| (SiteId(s), o)).collect(),
                last_writable: last
                    .into_iter()
                    .map(|(s, (lsn, age_ms))| (SiteId(s), LastWritable { lsn, age_ms }))
                    .collect(),
                unreachable_for: unreachable.into_iter().map(|(s, ms)| (SiteId(s), ms)).collect(),
            };
            prop_assert_eq!(report_from_pb(wire(&report_to_pb(&r))), Ok(r));
        }
    }

    /// The `RepointSearchAction` an older leader sent, with the free
    /// values a forged call used (`attacker.example:9200`).
    #[derive(Clone, PartialEq, prost::Message)]
    struct OldRepointSearchAction {
        #[prost(string, tag = "1")]
        hosts: String,
        #[prost(string, tag = "2")]
        ccr_url: String,
        #[prost(string, repeated, tag = "3")]
        indices: Vec<String>,
    }

    /// A `SiteActionRequest` carrying an [`OldRepointSearchAction`].
    #[derive(Clone, PartialEq, prost::Message)]
    struct OldSiteActionRequest {
        #[prost(uint64, tag = "1")]
        epoch: u64,
        #[prost(message, optional, tag = "5")]
        repoint_search: Option<OldRepointSearchAction>,
    }

    #[test]
    fn a_forged_repoint_naming_another_target_cannot_express_it() {
        let forged = OldSiteActionRequest {
            epoch: 4,
            repoint_search: Some(OldRepointSearchAction {
                hosts: "attacker.example:9200".into(),
                ccr_url: "http://attacker.example:9200".into(),
                indices: vec!["stolen".into()],
            }),
        }
        .encode_to_vec();
        let decoded = pb::SiteActionRequest::decode(forged.as_slice()).expect("still reads");
        let action = action_from_pb(decoded).expect("a repoint of epoch 4");
        // The order says only "repoint, epoch 4": the agent takes the
        // hosts, URL and indices from its own configuration.
        assert_eq!(action, SiteAction::RepointSearch { epoch: 4 });
        assert!(!format!("{action:?}").contains("attacker"));
        let sent = action_to_pb(&action).encode_to_vec();
        assert!(!sent.windows(8).any(|w| w == b"attacker"), "{sent:?}");
    }

    /// Every `*_from_pb` of this module, fed `bytes` as a peer could send
    /// them: decoding either fails or gives a value, and never panics.
    fn decode_everything(bytes: &[u8]) {
        if let Ok(m) = pb::Report::decode(bytes) {
            let _ = report_from_pb(m);
        }
        if let Ok(m) = pb::PgObservation::decode(bytes) {
            let _ = observation_from_pb(m, "db");
        }
        if let Ok(m) = pb::SiteActionRequest::decode(bytes) {
            if let Err(e) = action_from_pb(m) {
                assert!(!e.field.is_empty(), "names the field: {e}");
            }
        }
        if let Ok(m) = pb::SiteActionReply::decode(bytes) {
            if let Err(e) = reply_from_pb(m) {
                assert!(!e.field.is_empty(), "names the field: {e}");
            }
        }
    }

    #[test]
    fn pinned_hostile_peer_messages_decode_or_are_refused() {
        for bytes in [
            &b""[..],
            &[0xff; 16],
            // A field 1 length prefix far beyond the buffer.
            &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f],
            // Epoch u64::MAX and an empty oneof message.
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x2a, 0x00,
            ],
            // A report whose dbs[0] nests an unknown reachability.
            &[0x12, 0x04, 0x0a, 0x00, 0x12, 0x00],
        ] {
            decode_everything(bytes);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_a_peer_decoder(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            decode_everything(&bytes);
        }

        #[test]
        fn mutated_peer_messages_never_panic_a_decoder(
            which in 0usize..4,
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let mut bytes = match which {
                0 => report_to_pb(&report()).encode_to_vec(),
                1 => observation_to_pb(&site("b"), &standby()).encode_to_vec(),
                2 => action_to_pb(&SiteAction::Fence { epoch: 7, planned: true }).encode_to_vec(),
                _ => reply_to_pb(Err(SiteActionFailure::Refused("no".into()))).encode_to_vec(),
            };
            for (at, b) in flips {
                if !bytes.is_empty() {
                    let i = at % bytes.len();
                    bytes[i] ^= b;
                }
            }
            bytes.truncate(cut % (bytes.len() + 1));
            decode_everything(&bytes);
        }
    }
}
