//! Whether two MariaDB servers are the guide's master-master pair.
//!
//! palisade protects that setup and never reconfigures it into something
//! else, so a pair that is not one (a server replicating from a third one,
//! or from nobody; the same `server_id` twice; `auto_increment` settings
//! under which both masters hand out the same keys) is refused at start,
//! with what to fix, instead of half run.

use std::fmt;

use super::MariaObservation;

/// One master of the pair as configured and as probed.
#[derive(Clone, Copy, Debug)]
pub struct Member<'a> {
    /// The site it runs at.
    pub site: &'a str,
    /// The host its clients (and the other master) connect to.
    pub host: &'a str,
    /// Its port.
    pub port: u16,
    /// What the probe saw.
    pub seen: &'a MariaObservation,
}

/// Why two servers are not a usable master-master pair. Each names the
/// site and the setting, and the guide's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PairProblem {
    /// The server did not answer, or hid a setting the check needs.
    Unknown {
        /// The site.
        site: String,
        /// What is missing.
        what: String,
    },
    /// Both servers have this `server_id`.
    SameServerId {
        /// The id.
        server_id: u32,
    },
    /// The server writes no binary log (`log_bin` off): the other master
    /// has nothing to replicate from it.
    NoBinaryLog {
        /// The site.
        site: String,
    },
    /// The server replicates from nobody (`SHOW SLAVE STATUS` is empty).
    NotReplicating {
        /// The site.
        site: String,
        /// The other site it should replicate from.
        from: String,
    },
    /// The server replicates from another server than the other master.
    ReplicatesFromElsewhere {
        /// The site.
        site: String,
        /// The other site it should replicate from.
        from: String,
        /// What it replicates from.
        actual: String,
    },
    /// `auto_increment_increment` below 2: both masters hand out every
    /// key.
    IncrementTooSmall {
        /// The site.
        site: String,
        /// Its increment.
        increment: u32,
    },
    /// The two masters step keys differently.
    IncrementsDiffer {
        /// Each site's increment.
        a: (String, u32),
        /// See `a`.
        b: (String, u32),
    },
    /// An `auto_increment_offset` above the increment, which MariaDB
    /// ignores (it then counts from 1).
    OffsetBeyondIncrement {
        /// The site.
        site: String,
        /// Its offset.
        offset: u32,
        /// Its increment.
        increment: u32,
    },
    /// Both masters hand out keys from the same offset: inserts on both
    /// sides collide.
    SameOffset {
        /// The offset.
        offset: u32,
    },
}

impl fmt::Display for PairProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PairProblem::Unknown { site, what } => {
                write!(f, "site {site}: cannot check the pair: {what}")
            }
            PairProblem::SameServerId { server_id } => write!(
                f,
                "both masters have server_id = {server_id}; the guide gives them 1 and 2, and replication skips events that carry its own id"
            ),
            PairProblem::NoBinaryLog { site } => write!(
                f,
                "site {site}: the server writes no binary log (set log-bin, as the guide's my.cnf does)"
            ),
            PairProblem::NotReplicating { site, from } => write!(
                f,
                "site {site}: the server replicates from nobody; a master-master pair has it replicate from site {from} (CHANGE MASTER TO … ; START SLAVE, as the guide says)"
            ),
            PairProblem::ReplicatesFromElsewhere { site, from, actual } => write!(
                f,
                "site {site}: the server replicates from {actual}, not from site {from}'s server"
            ),
            PairProblem::IncrementTooSmall { site, increment } => write!(
                f,
                "site {site}: auto_increment_increment = {increment}; it must be at least 2 (the guide: 2) so the masters' keys cannot collide"
            ),
            PairProblem::IncrementsDiffer { a, b } => write!(
                f,
                "auto_increment_increment differs: {} on site {}, {} on site {}; the guide sets 2 on both",
                a.1, a.0, b.1, b.0
            ),
            PairProblem::OffsetBeyondIncrement {
                site,
                offset,
                increment,
            } => write!(
                f,
                "site {site}: auto_increment_offset = {offset} is above auto_increment_increment = {increment}, so the server ignores it"
            ),
            PairProblem::SameOffset { offset } => write!(
                f,
                "both masters have auto_increment_offset = {offset}: their keys collide (the guide: 1 and 2)"
            ),
        }
    }
}

/// What each master replicates from, as `host:port`, or by server id
/// once its IO thread has connected.
fn replicates_from_other(me: &Member<'_>, other: &Member<'_>) -> Option<PairProblem> {
    let Some(r) = &me.seen.replica else {
        return Some(PairProblem::NotReplicating {
            site: me.site.to_owned(),
            from: other.site.to_owned(),
        });
    };
    // The server id is the proof once the IO thread has connected; before
    // that, the configured address must be the other master's.
    let by_id = match (r.master_server_id, other.seen.server_id) {
        (Some(master), Some(theirs)) => Some(master == theirs),
        _ => None,
    };
    let by_addr = r.master_port == other.port && r.master_host == other.host;
    let ok = by_id.unwrap_or(by_addr);
    (!ok).then(|| PairProblem::ReplicatesFromElsewhere {
        site: me.site.to_owned(),
        from: other.site.to_owned(),
        actual: match r.master_server_id {
            Some(id) => format!("{}:{} (server_id {id})", r.master_host, r.master_port),
            None => format!("{}:{}", r.master_host, r.master_port),
        },
    })
}

/// Every reason `a` and `b` are not the guide's master-master pair; empty
/// when they are.
pub fn check(a: &Member<'_>, b: &Member<'_>) -> Vec<PairProblem> {
    let mut problems = Vec::new();
    for m in [a, b] {
        if !m.seen.reachability.is_up() {
            problems.push(PairProblem::Unknown {
                site: m.site.to_owned(),
                what: "the server did not answer".to_owned(),
            });
        }
    }
    if !problems.is_empty() {
        return problems;
    }
    match (a.seen.server_id, b.seen.server_id) {
        (Some(x), Some(y)) if x == y => problems.push(PairProblem::SameServerId { server_id: x }),
        (Some(_), Some(_)) => {}
        (x, _) => problems.push(PairProblem::Unknown {
            site: if x.is_none() { a.site } else { b.site }.to_owned(),
            what: "server_id unreadable".to_owned(),
        }),
    }
    for m in [a, b] {
        if m.seen.binlog_file.is_none() {
            problems.push(PairProblem::NoBinaryLog {
                site: m.site.to_owned(),
            });
        }
    }
    problems.extend(replicates_from_other(a, b));
    problems.extend(replicates_from_other(b, a));
    problems.extend(auto_increment(a, b));
    problems
}

fn auto_increment(a: &Member<'_>, b: &Member<'_>) -> Vec<PairProblem> {
    let read = |m: &Member<'_>| {
        m.seen
            .auto_increment_increment
            .zip(m.seen.auto_increment_offset)
    };
    let (Some((inc_a, off_a)), Some((inc_b, off_b))) = (read(a), read(b)) else {
        return vec![PairProblem::Unknown {
            site: if read(a).is_none() { a.site } else { b.site }.to_owned(),
            what: "auto_increment settings unreadable".to_owned(),
        }];
    };
    let mut problems = Vec::new();
    for (m, inc, off) in [(a, inc_a, off_a), (b, inc_b, off_b)] {
        if inc < 2 {
            problems.push(PairProblem::IncrementTooSmall {
                site: m.site.to_owned(),
                increment: inc,
            });
        } else if off > inc {
            problems.push(PairProblem::OffsetBeyondIncrement {
                site: m.site.to_owned(),
                offset: off,
                increment: inc,
            });
        }
    }
    if !problems.is_empty() {
        return problems;
    }
    if inc_a != inc_b {
        problems.push(PairProblem::IncrementsDiffer {
            a: (a.site.to_owned(), inc_a),
            b: (b.site.to_owned(), inc_b),
        });
    } else if off_a == off_b {
        problems.push(PairProblem::SameOffset { offset: off_a });
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master_master::ReplicaThreads;
    use crate::observe::{ErrorClass, Reachability};
    use proptest::prelude::*;

    fn replica(host: &str, port: u16, id: Option<u32>) -> ReplicaThreads {
        ReplicaThreads {
            master_host: host.to_owned(),
            master_port: port,
            master_server_id: id,
            io_running: "Yes".to_owned(),
            sql_running: true,
            seconds_behind_master: Some(0),
            master_log_file: "mysql-bin.000001".to_owned(),
            read_master_log_pos: 400,
            relay_master_log_file: "mysql-bin.000001".to_owned(),
            exec_master_log_pos: 400,
            using_gtid: "No".to_owned(),
            gtid_io_pos: String::new(),
            last_io_error: String::new(),
            last_sql_error: String::new(),
        }
    }

    /// The guide's pair: a on 3306 (server 1, offset 1), b on 3307
    /// (server 2, offset 2), each replicating from the other.
    fn guide() -> (MariaObservation, MariaObservation) {
        let mut a = MariaObservation::down(ErrorClass::Other, "", 1);
        a.reachability = Reachability::Up;
        a.server_id = Some(1);
        a.auto_increment_increment = Some(2);
        a.auto_increment_offset = Some(1);
        a.binlog_file = Some("mysql-bin.000001".to_owned());
        a.binlog_position = Some(400);
        let mut b = a.clone();
        b.server_id = Some(2);
        b.auto_increment_offset = Some(2);
        a.replica = Some(replica("10.0.0.2", 3307, Some(2)));
        b.replica = Some(replica("10.0.0.1", 3306, Some(1)));
        (a, b)
    }

    fn run(a: &MariaObservation, b: &MariaObservation) -> Vec<PairProblem> {
        check(
            &Member {
                site: "a",
                host: "10.0.0.1",
                port: 3306,
                seen: a,
            },
            &Member {
                site: "b",
                host: "10.0.0.2",
                port: 3307,
                seen: b,
            },
        )
    }

    #[test]
    fn the_guides_pair_passes() {
        let (a, b) = guide();
        assert_eq!(run(&a, &b), vec![]);
    }

    #[test]
    fn before_the_io_thread_connected_the_configured_address_decides() {
        let (mut a, b) = guide();
        a.replica = Some(replica("10.0.0.2", 3307, None));
        assert_eq!(run(&a, &b), vec![]);
        a.replica = Some(replica("10.0.0.9", 3307, None));
        assert_eq!(
            run(&a, &b),
            vec![PairProblem::ReplicatesFromElsewhere {
                site: "a".into(),
                from: "b".into(),
                actual: "10.0.0.9:3307".into()
            }]
        );
    }

    #[test]
    fn a_server_replicating_from_a_third_or_from_nobody_is_refused() {
        let (a, mut b) = guide();
        b.replica = Some(replica("10.0.0.1", 3306, Some(7)));
        let p = run(&a, &b);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(
            p[0].to_string(),
            "site b: the server replicates from 10.0.0.1:3306 (server_id 7), not from site a's server"
        );
        b.replica = None;
        let p = run(&a, &b);
        assert_eq!(
            p,
            vec![PairProblem::NotReplicating {
                site: "b".into(),
                from: "a".into()
            }]
        );
        assert!(p[0].to_string().contains("START SLAVE"), "{}", p[0]);
    }

    #[test]
    fn same_server_id_and_no_binary_log_are_refused() {
        let (mut a, mut b) = guide();
        b.server_id = Some(1);
        a.replica = Some(replica("10.0.0.2", 3307, Some(1)));
        a.binlog_file = None;
        let p = run(&a, &b);
        assert!(
            p.contains(&PairProblem::SameServerId { server_id: 1 }),
            "{p:?}"
        );
        assert!(
            p.contains(&PairProblem::NoBinaryLog { site: "a".into() }),
            "{p:?}"
        );
    }

    #[test]
    fn mismatched_auto_increment_settings_are_refused_naming_the_key() {
        let (mut a, mut b) = guide();
        b.auto_increment_offset = Some(1);
        let p = run(&a, &b);
        assert_eq!(p, vec![PairProblem::SameOffset { offset: 1 }]);
        assert!(p[0].to_string().contains("auto_increment_offset = 1"));

        b.auto_increment_offset = Some(2);
        b.auto_increment_increment = Some(3);
        assert!(run(&a, &b)[0]
            .to_string()
            .starts_with("auto_increment_increment differs: 2 on site a, 3 on site b"));

        a.auto_increment_increment = Some(1);
        a.auto_increment_offset = Some(1);
        assert_eq!(
            run(&a, &b),
            vec![PairProblem::IncrementTooSmall {
                site: "a".into(),
                increment: 1
            }]
        );

        a.auto_increment_increment = Some(2);
        a.auto_increment_offset = Some(3);
        assert_eq!(
            run(&a, &b),
            vec![PairProblem::OffsetBeyondIncrement {
                site: "a".into(),
                offset: 3,
                increment: 2
            }]
        );
    }

    #[test]
    fn an_unreachable_server_is_not_checked_but_named() {
        let (a, _) = guide();
        let b = MariaObservation::down(ErrorClass::Refused, "refused", 1);
        let p = run(&a, &b);
        assert_eq!(p.len(), 1);
        assert_eq!(
            p[0].to_string(),
            "site b: cannot check the pair: the server did not answer"
        );
    }

    proptest! {
        /// Passing the check means the two masters can never hand out the
        /// same key: the sets {off_a + k·inc} and {off_b + k·inc} are
        /// disjoint.
        #[test]
        fn accepted_auto_increment_settings_never_collide(
            inc_a in 1u32..6, off_a in 1u32..7, inc_b in 1u32..6, off_b in 1u32..7,
        ) {
            let (mut a, mut b) = guide();
            a.auto_increment_increment = Some(inc_a);
            a.auto_increment_offset = Some(off_a);
            b.auto_increment_increment = Some(inc_b);
            b.auto_increment_offset = Some(off_b);
            if run(&a, &b).is_empty() {
                let keys = |inc: u32, off: u32| (0..50u32).map(move |k| off + k * inc).collect::<std::collections::BTreeSet<_>>();
                prop_assert!(keys(inc_a, off_a).is_disjoint(&keys(inc_b, off_b)));
            }
        }
    }
}
