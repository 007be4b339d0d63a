//! The control service's request validation fed hostile input: arbitrary
//! bytes decoded as each request message, then checked as the service
//! checks them before proposing anything (`Command::validate`, and the
//! request id's `precheck`). Each either passes or is refused with an
//! error naming the field, and nothing panics.

use palisade_api::v1 as pb;
use palisade_core::{ClusterState, Command, DrillPhase, DrillRecord};
use proptest::prelude::*;
use prost::Message;
use tonic::Code;

use super::requests::precheck;

/// A wall clock in 2024, for the request id's age.
const NOW_MS: i64 = 1_717_000_000_000;

/// The request id check as the service makes it: a refusal is
/// `INVALID_ARGUMENT` naming `request_id`, or `FAILED_PRECONDITION` (too
/// old to tell).
fn check_request_id(state: &ClusterState, id: &str, kind: &str) -> Result<(), TestCaseError> {
    if let Err(s) = precheck(state, id, kind, NOW_MS) {
        match s.code() {
            Code::InvalidArgument => {
                prop_assert!(s.message().starts_with("request_id: "), "{}", s.message())
            }
            Code::FailedPrecondition => {
                prop_assert!(s.message().contains(id), "{}", s.message())
            }
            other => prop_assert!(false, "unexpected {:?}: {}", other, s.message()),
        }
    }
    Ok(())
}

/// A command's validation: passes, or names the field at fault.
fn check_command(c: &Command) -> Result<(), TestCaseError> {
    if let Err(e) = c.validate() {
        prop_assert!(!e.field.is_empty(), "names the field: {}", e);
        prop_assert!(e.to_string().starts_with(e.field), "{}", e);
    }
    Ok(())
}

/// Every control request `bytes` decodes as, checked as the service would.
fn check_everything(bytes: &[u8]) -> Result<(), TestCaseError> {
    let state = ClusterState::default();
    if let Ok(r) = pb::AnnotateRequest::decode(bytes) {
        check_request_id(&state, &r.request_id, "annotate")?;
        check_command(&Command::Annotate {
            at_unix_ms: NOW_MS,
            author: r.author,
            text: r.text,
        })?;
    }
    if let Ok(r) = pb::PauseRequest::decode(bytes) {
        check_request_id(&state, &r.request_id, "pause")?;
        // As `pause_here`: a bound beyond a year is refused before this,
        // so the end never overflows.
        let for_ms = r.for_ms.filter(|ms| *ms > 0 && *ms <= super::MAX_PAUSE_MS);
        check_command(&Command::Pause {
            by: r.who,
            reason: r.reason,
            at_ms: NOW_MS,
            until_ms: for_ms.map(|ms| NOW_MS + ms as i64),
        })?;
    }
    if let Ok(r) = pb::ResumeRequest::decode(bytes) {
        check_request_id(&state, &r.request_id, "resume")?;
        check_command(&Command::Resume {
            by: r.who,
            at_ms: NOW_MS,
        })?;
    }
    if let Ok(r) = pb::RecordDrillRequest::decode(bytes) {
        check_request_id(&state, &r.request_id, "record_drill")?;
        if let Some(d) = r.drill {
            check_command(&Command::RecordDrill(Box::new(DrillRecord {
                name: d.name,
                who: d.who,
                started_at_ms: d.started_at_ms,
                finished_at_ms: d.finished_at_ms,
                outcome: d.outcome,
                phases: d
                    .phases
                    .into_iter()
                    .map(|p| DrillPhase {
                        name: p.name,
                        outcome: p.outcome,
                        duration_ms: p.duration_ms,
                    })
                    .collect(),
            })))?;
        }
    }
    for id in [
        pb::SwitchoverRequest::decode(bytes).map(|r| r.request_id),
        pb::FailoverRequest::decode(bytes).map(|r| r.request_id),
        pb::FailbackRequest::decode(bytes).map(|r| r.request_id),
    ]
    .into_iter()
    .flatten()
    {
        check_request_id(&state, &id, "switchover")?;
    }
    Ok(())
}

#[test]
fn pinned_hostile_request_ids_are_refused_naming_the_field() {
    let state = ClusterState::default();
    for id in [
        "-",
        "x",
        "20231114T221320.123Z-",
        "20231114T221320.123Z-ÄÄÄÄÄÄÄÄ",
        "2023111éT221320.12Z-9f86d081884c7d65",
        "99999999T999999.999Z-9f86d081884c7d65",
        "00000000T000000.000Z-9f86d081884c7d65",
        "20230229T000000.000Z-9f86d081884c7d65",
    ] {
        let s = precheck(&state, id, "annotate", NOW_MS).expect_err(id);
        assert_eq!(s.code(), Code::InvalidArgument, "{id}: {}", s.message());
        assert!(s.message().starts_with("request_id: "), "{}", s.message());
    }
    let long = format!("20231114T221320.123Z-{}", "a".repeat(10_000));
    assert_eq!(
        precheck(&state, &long, "annotate", NOW_MS)
            .expect_err("too long")
            .code(),
        Code::InvalidArgument
    );
}

#[test]
fn pinned_hostile_commands_are_refused_naming_the_field() {
    let refused = |c: Command, field: &str| {
        let e = c.validate().expect_err(field);
        assert_eq!(e.field, field, "{e}");
    };
    refused(
        Command::Annotate {
            at_unix_ms: 0,
            author: "op".into(),
            text: String::new(),
        },
        "text",
    );
    refused(
        Command::Annotate {
            at_unix_ms: 0,
            author: "op".into(),
            text: "x".repeat(1 << 20),
        },
        "text",
    );
    refused(
        Command::Pause {
            by: String::new(),
            reason: String::new(),
            at_ms: 0,
            until_ms: None,
        },
        "who",
    );
    refused(
        Command::RecordDrill(Box::new(DrillRecord {
            name: "dr".into(),
            who: "op".into(),
            started_at_ms: 10,
            finished_at_ms: 5,
            outcome: "passed".into(),
            phases: vec![],
        })),
        "drill.finished_at_ms",
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_control_requests_validation(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        check_everything(&bytes)?;
    }

    #[test]
    fn arbitrary_request_ids_are_accepted_or_refused_naming_the_field(
        id in prop_oneof![
            ".{0,60}",
            "[0-9]{8}T[0-9]{6}\\.[0-9]{3}Z-[0-9a-z]{8,40}",
            "[0-9T.Z-]{20,30}",
        ],
    ) {
        check_request_id(&ClusterState::default(), &id, "annotate")?;
    }

    #[test]
    fn mutated_control_requests_never_panic_the_validation(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = pb::RecordDrillRequest {
            drill: Some(pb::DrillSummary {
                name: "dr-test".into(),
                who: "op@host".into(),
                started_at_ms: 1,
                finished_at_ms: 2,
                outcome: "passed".into(),
                phases: vec![pb::DrillPhase {
                    name: "failover".into(),
                    outcome: "passed".into(),
                    duration_ms: 3,
                }],
            }),
            request_id: "20240529T163320.000Z-9f86d081884c7d65".into(),
        }
        .encode_to_vec();
        for (at, b) in flips {
            let i = at % bytes.len();
            bytes[i] ^= b;
        }
        check_everything(&bytes)?;
    }
}
