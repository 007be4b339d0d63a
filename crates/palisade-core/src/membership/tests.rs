use super::*;
use crate::failover::{Failover, Kind};
use crate::{Command, SiteId};

fn w(site: &str, n: u16) -> Witness {
    Witness {
        site: site.into(),
        raft_addr: format!("198.18.0.{n}:7301"),
        control_addr: format!("198.18.0.{n}:7401"),
    }
}

fn three() -> BTreeMap<NodeId, Witness> {
    [(1, w("a", 1)), (2, w("b", 2)), (3, w("c", 3))].into()
}

fn running() -> ClusterState {
    let mut s = ClusterState::default();
    s.apply(
        1,
        &Command::InitDatabase {
            primary: SiteId("a".into()),
            standby: SiteId("b".into()),
        },
    );
    s
}

fn none() -> BTreeMap<NodeId, Witness> {
    BTreeMap::new()
}

fn refused(c: &Change, voters: &BTreeMap<NodeId, Witness>, s: &ClusterState) -> Refusal {
    plan(c, voters, &none(), s).expect_err("must be refused")
}

#[test]
fn replace_swaps_one_voter_for_a_learner_that_catches_up_first() {
    let c = Change::Replace {
        old: 3,
        id: 4,
        witness: w("c", 4),
    };
    assert_eq!(
        plan(&c, &three(), &none(), &running()).unwrap(),
        Plan::Change {
            learner: Some((4, w("c", 4))),
            voters: [1, 2, 4].into(),
            detail: "replaced witness 3 by witness 4 at site c (raft 198.18.0.4:7301, control 198.18.0.4:7401)".into(),
        }
    );
}

#[test]
fn a_database_sites_witness_is_replaced_never_removed() {
    let mut five = three();
    five.insert(4, w("d", 4));
    five.insert(5, w("e", 5));
    let r = refused(&Change::Remove { id: 1 }, &five, &running());
    assert!(r.reason.contains("holds a database"), "{r}");
    assert!(matches!(
        plan(&Change::Remove { id: 5 }, &five, &none(), &running()),
        Ok(Plan::Change { voters, .. }) if voters == [1, 2, 3, 4].into()
    ));
    let c = Change::Replace {
        old: 1,
        id: 6,
        witness: w("a", 6),
    };
    assert!(plan(&c, &three(), &none(), &running()).is_ok());
}

#[test]
fn three_voters_are_the_least() {
    let r = refused(&Change::Remove { id: 3 }, &three(), &running());
    assert!(r.reason.contains("at least 3"), "{r}");
}

#[test]
fn a_retry_of_a_change_in_force_is_no_error() {
    let after: BTreeMap<NodeId, Witness> = [(1, w("a", 1)), (2, w("b", 2)), (4, w("c", 4))].into();
    let c = Change::Replace {
        old: 3,
        id: 4,
        witness: w("c", 4),
    };
    assert!(matches!(
        plan(&c, &after, &none(), &running()),
        Ok(Plan::InForce { .. })
    ));
    assert!(matches!(
        plan(&Change::Remove { id: 3 }, &after, &none(), &running()),
        Ok(Plan::InForce { .. })
    ));
}

#[test]
fn no_change_while_an_operation_runs() {
    let mut s = running();
    s.apply(
        2,
        &Command::BeginFailover(Box::new(Failover::begun(
            Kind::Switchover,
            s.epoch + 1,
            "a",
            "b",
        ))),
    );
    assert!(s.failover.is_some());
    let c = Change::Replace {
        old: 3,
        id: 4,
        witness: w("c", 4),
    };
    let r = refused(&c, &three(), &s);
    assert!(r.reason.contains("switchover of epoch"), "{r}");
    assert_eq!(r.field, "");
}

#[test]
fn bad_new_witnesses_are_refused_naming_the_field() {
    let cases = [
        (
            Change::Add {
                id: 0,
                witness: w("d", 4),
            },
            "new_member.id",
        ),
        (
            Change::Add {
                id: 2,
                witness: w("d", 4),
            },
            "new_member.id",
        ),
        (
            Change::Add {
                id: 4,
                witness: w("a", 4),
            },
            "new_member.site",
        ),
        (
            Change::Add {
                id: 4,
                witness: w("", 4),
            },
            "new_member.site",
        ),
        (
            Change::Add {
                id: 4,
                witness: w("d d", 4),
            },
            "new_member.site",
        ),
        (
            Change::Add {
                id: 4,
                witness: Witness {
                    raft_addr: "somewhere:1".into(),
                    ..w("d", 4)
                },
            },
            "new_member.raft_addr",
        ),
        (
            Change::Add {
                id: 4,
                witness: Witness {
                    control_addr: "198.18.0.4:0".into(),
                    ..w("d", 4)
                },
            },
            "new_member.control_addr",
        ),
        (
            Change::Add {
                id: 4,
                witness: Witness {
                    raft_addr: "198.18.0.2:7301".into(),
                    ..w("d", 4)
                },
            },
            "new_member.raft_addr",
        ),
        (
            Change::Add {
                id: 4,
                witness: Witness {
                    control_addr: "198.18.0.4:7301".into(),
                    ..w("d", 4)
                },
            },
            "new_member.control_addr",
        ),
        (
            Change::Replace {
                old: 9,
                id: 4,
                witness: w("c", 4),
            },
            "old_id",
        ),
        (
            Change::Replace {
                old: 3,
                id: 4,
                witness: w("d", 4),
            },
            "new_member.site",
        ),
    ];
    for (c, field) in cases {
        let r = refused(&c, &three(), &running());
        assert_eq!(r.field, field, "{c:?}: {r}");
        assert!(r.to_string().starts_with(field), "{r}");
    }
}

#[test]
fn a_replacement_may_reuse_the_old_hosts_addresses() {
    let c = Change::Replace {
        old: 3,
        id: 4,
        witness: w("c", 3),
    };
    assert!(plan(&c, &three(), &none(), &running()).is_ok());
}

#[test]
fn adding_to_an_even_count_says_so() {
    let Ok(Plan::Change { detail, voters, .. }) = plan(
        &Change::Add {
            id: 4,
            witness: w("d", 4),
        },
        &three(),
        &none(),
        &running(),
    ) else {
        panic!("an add is allowed")
    };
    assert_eq!(voters, [1, 2, 3, 4].into());
    assert!(detail.contains("even number"), "{detail}");
}
