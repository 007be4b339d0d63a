//! MariaDB global transaction ids and positions.
//!
//! A GTID is `domain-server-seq`. Within a replication domain the sequence
//! numbers order the transactions: each server gives its next transaction
//! the domain's highest number it knows plus one. A position
//! (`gtid_binlog_pos`, `gtid_slave_pos`, `gtid_current_pos`) holds the last
//! GTID of each domain; a binlog state (`gtid_binlog_state`) the last of
//! each (domain, server) pair, which is what tells a server's own
//! transactions from the ones it applied.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One global transaction id, `domain-server-seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Gtid {
    /// `gtid_domain_id` of the server that wrote it.
    pub domain: u32,
    /// `server_id` of the server that wrote it.
    pub server: u32,
    /// Its sequence number in the domain.
    pub seq: u64,
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.seq)
    }
}

/// Text that is not a GTID list as MariaDB writes one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a MariaDB GTID list: {input:?}: {reason}")]
pub struct GtidError {
    /// The text as given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FromStr for Gtid {
    type Err = GtidError;

    fn from_str(s: &str) -> Result<Self, GtidError> {
        let bad = |reason: &str| GtidError {
            input: s.to_owned(),
            reason: reason.to_owned(),
        };
        let mut parts = s.trim().split('-');
        let (Some(d), Some(srv), Some(seq), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("a GTID is domain-server-seq"));
        };
        Ok(Gtid {
            domain: d.parse().map_err(|_| bad("the domain is not a number"))?,
            server: srv
                .parse()
                .map_err(|_| bad("the server id is not a number"))?,
            seq: seq
                .parse()
                .map_err(|_| bad("the sequence number is not a number"))?,
        })
    }
}

/// Splits a comma-separated GTID list (empty text: no GTID).
fn parse_list(s: &str) -> Result<Vec<Gtid>, GtidError> {
    s.split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(|g| {
            g.parse::<Gtid>().map_err(|e| GtidError {
                input: s.to_owned(),
                reason: format!("{g:?}: {}", e.reason),
            })
        })
        .collect()
}

/// A GTID position: the last GTID of each domain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GtidPos(BTreeMap<u32, Gtid>);

impl GtidPos {
    /// Parses `gtid_binlog_pos` / `gtid_slave_pos` / `gtid_current_pos`
    /// (`0-1-100,1-2-5`; empty: nothing yet). A domain given twice is an
    /// error: a position holds one GTID per domain.
    pub fn parse(s: &str) -> Result<Self, GtidError> {
        let mut pos = BTreeMap::new();
        for g in parse_list(s)? {
            if pos.insert(g.domain, g).is_some() {
                return Err(GtidError {
                    input: s.to_owned(),
                    reason: format!("domain {} appears twice in a position", g.domain),
                });
            }
        }
        Ok(Self(pos))
    }

    /// The last GTID of `domain`, if any.
    pub fn get(&self, domain: u32) -> Option<Gtid> {
        self.0.get(&domain).copied()
    }

    /// Every domain's last GTID, by domain.
    pub fn iter(&self) -> impl Iterator<Item = Gtid> + '_ {
        self.0.values().copied()
    }

    /// True when no domain has a GTID.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether this position includes everything `other` includes: in
    /// every domain of `other`, this one is at least as far.
    pub fn covers(&self, other: &GtidPos) -> bool {
        self.short_of(other).is_empty()
    }

    /// The domains where this position is short of `other`: `(domain,
    /// this position's seq (0: none), other's GTID)`.
    pub fn short_of(&self, other: &GtidPos) -> Vec<(u32, u64, Gtid)> {
        other
            .iter()
            .filter_map(|want| {
                let have = self.get(want.domain).map_or(0, |g| g.seq);
                (have < want.seq).then_some((want.domain, have, want))
            })
            .collect()
    }
}

impl fmt::Display for GtidPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.iter().map(|g| g.to_string()).collect();
        f.write_str(&list.join(","))
    }
}

/// A binlog state: the last GTID of each (domain, server) pair.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GtidState(BTreeMap<(u32, u32), u64>);

impl GtidState {
    /// Parses `gtid_binlog_state` (`0-2-40,0-1-100`). A pair given twice
    /// keeps the higher number (MariaDB lists each once).
    pub fn parse(s: &str) -> Result<Self, GtidError> {
        let mut state = BTreeMap::new();
        for g in parse_list(s)? {
            let seq = state.entry((g.domain, g.server)).or_insert(g.seq);
            *seq = (*seq).max(g.seq);
        }
        Ok(Self(state))
    }

    /// The last GTID server `server` wrote in each domain.
    pub fn written_by(&self, server: u32) -> impl Iterator<Item = Gtid> + '_ {
        self.0
            .iter()
            .filter(move |((_, s), _)| *s == server)
            .map(|(&(domain, server), &seq)| Gtid {
                domain,
                server,
                seq,
            })
    }
}

/// Transactions an old writer committed in its own name past the point
/// where the survivor took over: in a domain, they never reached the
/// survivor, and the new writer's history went on without them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errant {
    /// The domain they are in.
    pub domain: u32,
    /// The survivor's last sequence number in the domain when it took over
    /// (0: it had none).
    pub fork_seq: u64,
    /// The old writer's last own GTID in the domain.
    pub last: Gtid,
    /// How many there are at most: the sequence numbers past the fork
    /// point (exact when only the old writer wrote in the domain then).
    pub at_most: u64,
}

impl fmt::Display for Errant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "up to {} transaction(s) in domain {} after seq {}, the last {}",
            self.at_most, self.domain, self.fork_seq, self.last
        )
    }
}

/// The errant transactions of an old writer (server id `old_server`, its
/// `gtid_binlog_state` `old_state`) against `fork`: the survivor's
/// `gtid_current_pos` when it took over, recorded in the promotion's
/// evidence. Empty: everything the old writer wrote in its own name
/// reached the survivor, so it can rejoin without losing anything.
pub fn errant(old_state: &GtidState, old_server: u32, fork: &GtidPos) -> Vec<Errant> {
    old_state
        .written_by(old_server)
        .filter_map(|last| {
            let fork_seq = fork.get(last.domain).map_or(0, |g| g.seq);
            (last.seq > fork_seq).then(|| Errant {
                domain: last.domain,
                fork_seq,
                last,
                at_most: last.seq - fork_seq,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pos(s: &str) -> GtidPos {
        GtidPos::parse(s).expect("a position")
    }

    fn state(s: &str) -> GtidState {
        GtidState::parse(s).expect("a state")
    }

    #[test]
    fn parses_what_mariadb_writes() {
        assert!(pos("").is_empty());
        let p = pos("0-1-100,1-2-5");
        assert_eq!(
            p.get(0),
            Some(Gtid {
                domain: 0,
                server: 1,
                seq: 100
            })
        );
        assert_eq!(p.get(1).map(|g| g.seq), Some(5));
        assert_eq!(p.get(2), None);
        assert_eq!(p.to_string(), "0-1-100,1-2-5");
        // MariaDB separates with ",\n" in some outputs.
        assert_eq!(pos("0-1-100,\n1-2-5"), p);
    }

    #[test]
    fn refuses_what_is_not_a_gtid_list_and_names_the_part() {
        for (bad, why) in [
            ("0-1", "domain-server-seq"),
            ("0-1-2-3", "domain-server-seq"),
            ("x-1-2", "domain"),
            ("0-y-2", "server id"),
            ("0-1-z", "sequence"),
            ("0-1--5", "domain-server-seq"),
            ("0-1-", "sequence"),
            ("0-1-5,0-2-6", "twice"),
        ] {
            let e = GtidPos::parse(bad).expect_err(bad);
            assert_eq!(e.input, bad);
            assert!(e.reason.contains(why), "{bad}: {}", e.reason);
        }
    }

    #[test]
    fn covers_is_per_domain() {
        let survivor = pos("0-1-100,1-2-5");
        assert!(survivor.covers(&pos("0-1-100")));
        assert!(survivor.covers(&pos("0-2-99,1-2-5")));
        assert!(survivor.covers(&pos("")));
        assert!(!survivor.covers(&pos("0-1-101")));
        assert!(!survivor.covers(&pos("2-1-1")));
        assert_eq!(
            survivor.short_of(&pos("0-1-103,2-1-1")),
            vec![
                (
                    0,
                    100,
                    Gtid {
                        domain: 0,
                        server: 1,
                        seq: 103
                    }
                ),
                (
                    2,
                    0,
                    Gtid {
                        domain: 2,
                        server: 1,
                        seq: 1
                    }
                ),
            ]
        );
    }

    #[test]
    fn nothing_errant_when_the_survivor_had_all_the_old_writer_wrote() {
        // a (server 1) wrote up to 100, b applied it all and took over,
        // then wrote on its own.
        let fork = pos("0-1-100");
        assert_eq!(errant(&state("0-1-100"), 1, &fork), vec![]);
        // Its state also lists what it applied from b earlier: not its own.
        assert_eq!(errant(&state("0-2-40,0-1-100"), 1, &fork), vec![]);
    }

    #[test]
    fn errant_counts_what_the_old_writer_wrote_past_the_fork() {
        let found = errant(&state("0-2-40,0-1-103"), 1, &pos("0-1-100"));
        assert_eq!(
            found,
            vec![Errant {
                domain: 0,
                fork_seq: 100,
                last: Gtid {
                    domain: 0,
                    server: 1,
                    seq: 103
                },
                at_most: 3
            }]
        );
        assert_eq!(
            found[0].to_string(),
            "up to 3 transaction(s) in domain 0 after seq 100, the last 0-1-103"
        );
        // A domain the survivor never saw: all of it.
        assert_eq!(errant(&state("5-1-7"), 1, &pos("0-1-100"))[0].at_most, 7);
    }

    fn gtid() -> impl Strategy<Value = Gtid> {
        (0u32..4, 1u32..4, 0u64..1000).prop_map(|(domain, server, seq)| Gtid {
            domain,
            server,
            seq,
        })
    }

    proptest! {
        #[test]
        fn a_position_round_trips_through_text(gs in proptest::collection::vec(gtid(), 0..6)) {
            let mut p = BTreeMap::new();
            for g in gs {
                p.insert(g.domain, g);
            }
            let p = GtidPos(p);
            prop_assert_eq!(GtidPos::parse(&p.to_string()).expect("parses"), p);
        }

        #[test]
        fn covers_is_reflexive_and_transitive(a in proptest::collection::vec(gtid(), 0..6), b in proptest::collection::vec(gtid(), 0..6)) {
            let mk = |gs: Vec<Gtid>| GtidPos(gs.into_iter().map(|g| (g.domain, g)).collect());
            let (a, b) = (mk(a), mk(b));
            prop_assert!(a.covers(&a));
            // The per-domain maximum covers both.
            let mut m = a.0.clone();
            for g in b.iter() {
                let e = m.entry(g.domain).or_insert(g);
                if g.seq > e.seq { *e = g; }
            }
            let m = GtidPos(m);
            prop_assert!(m.covers(&a) && m.covers(&b));
            prop_assert_eq!(a.covers(&b), a.short_of(&b).is_empty());
        }

        #[test]
        fn errant_is_empty_exactly_when_the_fork_covers_the_old_writers_own(
            own in proptest::collection::vec(gtid(), 0..6),
            fork in proptest::collection::vec(gtid(), 0..6),
        ) {
            let old = GtidState(own.iter().map(|g| ((g.domain, 1), g.seq)).collect());
            let fork = GtidPos(fork.into_iter().map(|g| (g.domain, g)).collect());
            let own_pos = GtidPos(old.written_by(1).map(|g| (g.domain, g)).collect());
            let found = errant(&old, 1, &fork);
            prop_assert_eq!(found.is_empty(), fork.covers(&own_pos));
            for e in found {
                prop_assert_eq!(e.at_most, e.last.seq - e.fork_seq);
                prop_assert!(e.at_most > 0);
            }
        }
    }
}
