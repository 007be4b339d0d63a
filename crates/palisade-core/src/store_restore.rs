//! Putting a witness's Raft store back (`palisade store restore`, from a
//! backup) or starting it again empty (`palisade store rebuild`): whether
//! the other witnesses' answers make that safe, and the vote the new store
//! must hold before the witness starts.
//!
//! # The danger
//!
//! A store copied back from a backup, or a new empty one, has forgotten the
//! votes the witness gave after the backup was taken. Started as it is, the
//! witness could grant a vote it already granted to another candidate, or
//! a smaller one: two leaders could be elected, and entries a quorum
//! committed could be lost. So the new store must hold, before the witness
//! first starts, a vote at least as high as any it ever gave.
//!
//! # Why the others' answers give that vote
//!
//! openraft 0.9 orders votes by (term, candidate) and then by "committed"
//! ([`VoteRecord`]). Whatever this witness voted for, the candidate it
//! voted for holds at least that vote itself (it voted for itself first).
//! If a candidate won with this witness's vote, every witness of its quorum
//! holds at least that vote. So when the other witnesses all follow one
//! leader `L` at term `T` (their vote is `(T, L)`), no vote this witness
//! gave that mattered was above `(T, L)`, and a store holding `(T, L)`
//! grants nothing it may have granted before ([`vote_floor`]). A witness
//! that knows no leader may be in the middle of an election: refused.
//!
//! # When one of three does not answer
//!
//! With three witnesses, one answer (a quorum less this witness) may do,
//! but not any answer. A follower can keep naming a leader that died long
//! ago (it only drops it when it votes again), so one follower's word is
//! not enough: the leader itself must answer, leading at `(T, L)`, and must
//! have been acknowledged by a quorum **after** this witness last wrote its
//! store. That acknowledgement came from this witness or the silent one,
//! and either had a vote of at most `(T, L)` then; this witness gave no
//! vote after its last write (every vote is written before it is sent), so
//! none of its votes was above `(T, L)`: the silent witness could not have
//! acknowledged `(T, L)` after voting for a higher candidate, nor could
//! this witness. With more witnesses the acknowledgement may have come from
//! a third one, and the argument fails: every other witness must answer.
//!
//! # The entries this witness forgets
//!
//! The new store has also forgotten log entries it held, and some of them
//! may have been committed with this witness's acknowledgement, held by a
//! quorum that counted it. Before its store is replaced, every entry the
//! leader has applied (so committed) must be held by a quorum **without**
//! this witness: the leader and, by the leader's own replication view,
//! enough other witnesses. Otherwise the leader dying before this witness
//! caught up again could elect a witness that lacks them (openraft FAQ,
//! "Can I wipe out the data of ONE node").

//! Pure: the caller asks the witnesses and reads its store's age.

use std::fmt;

use crate::NodeId;

/// What one other witness answered when asked for its status (or why it
/// did not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAnswer {
    /// The witness asked.
    pub node: NodeId,
    /// What it said; `Err`: no answer, and why (refused, timed out, ...).
    pub reply: Result<PeerView, String>,
}

/// One witness's view of the cluster, from its `NodeStatus`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerView {
    /// Its current term.
    pub term: u64,
    /// The leader it follows (itself when it leads); `None`: it knows no
    /// leader, as during an election.
    pub leader: Option<NodeId>,
    /// Whether it is the leader.
    pub leading: bool,
    /// The last log index it applied (so knows committed); `None`: none.
    pub last_applied_index: Option<u64>,
    /// Leader only: milliseconds since a quorum last acknowledged it, as of
    /// its last metrics refresh; `None`: not the leader, or never
    /// acknowledged.
    pub quorum_ack_age_ms: Option<u64>,
    /// Leader only: how far it has replicated its log to each other
    /// witness (the last index that witness acknowledged holding, `None`:
    /// none yet in this leadership).
    pub matched: Vec<(NodeId, Option<u64>)>,
}

/// The witness being restored and what is known of its store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restoring {
    /// Its node id.
    pub own: NodeId,
    /// How many witnesses the cluster has, this one included.
    pub cluster_size: usize,
    /// How long before the others were asked this witness's current store
    /// was last written (its file's modification time); `None`: there is
    /// no store, or its age is unknown.
    pub last_write_age_ms: Option<u64>,
    /// How stale a leader's [`PeerView::quorum_ack_age_ms`] may be (its
    /// metrics are refreshed about every heartbeat): added to it before it
    /// is compared with [`Restoring::last_write_age_ms`].
    pub ack_staleness_ms: u64,
}

/// The lowest vote the new store may hold: the leader the others follow,
/// and its term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoteFloor {
    /// The term the others are in.
    pub term: u64,
    /// The leader they follow.
    pub leader: NodeId,
}

/// A Raft vote as openraft 0.9 stores it (its default "advanced" leader
/// id): the term, the candidate voted for, and whether a quorum granted it.
/// The derived order is openraft's: by term, then candidate, then
/// committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct VoteRecord {
    /// The term.
    pub term: u64,
    /// The candidate voted for (the leader, once committed).
    pub node: NodeId,
    /// Whether a quorum granted it (a leader was established by it).
    pub committed: bool,
}

impl fmt::Display for VoteRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "term {} for witness {} ({})",
            self.term,
            self.node,
            if self.committed {
                "committed"
            } else {
                "not committed"
            }
        )
    }
}

impl VoteFloor {
    /// The floor as a vote: for the leader at its term, not committed
    /// (the leader's first append commits it).
    pub fn vote(&self) -> VoteRecord {
        VoteRecord {
            term: self.term,
            node: self.leader,
            committed: false,
        }
    }
}

/// Why a store may not be put back (yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Why, naming every witness and what it said.
    pub reason: String,
    /// Whether asking again in a moment may well find otherwise: an
    /// election or a replication under way among witnesses that answer.
    /// Not: a witness that does not answer, or the cluster's history.
    pub transient: bool,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Decides from the other witnesses' answers whether the store may be put
/// back, and the vote it must hold at least (see the module documentation).
/// `answers` holds one answer per other witness, silent ones included.
///
/// Refuses, naming every witness and what it said, unless:
///
/// * every other witness answered, or, with three witnesses, one of the
///   two (a quorum less this witness);
/// * every one that answered follows the same leader at the same term;
/// * that leader is not this witness (the others have not replaced it
///   yet: wait until they elect another), answered, and says it leads;
/// * the leader and the witnesses it has replicated its applied entries
///   to form a quorum without this witness;
/// * when one did not answer: the leader's last quorum acknowledgement is
///   younger than this witness's last store write.
pub fn vote_floor(r: &Restoring, answers: &[PeerAnswer]) -> Result<VoteFloor, Refusal> {
    let others = r.cluster_size.saturating_sub(1);
    let needed = if r.cluster_size == 3 {
        1
    } else {
        others.max(1)
    };
    let said = describe(answers);
    let refuse = |transient: bool, why: String| {
        Err(Refusal {
            reason: format!("{why}. The other witnesses said: {said}"),
            transient,
        })
    };

    let answered: Vec<(NodeId, &PeerView)> = answers
        .iter()
        .filter_map(|a| a.reply.as_ref().ok().map(|v| (a.node, v)))
        .collect();
    let silent: Vec<NodeId> = answers
        .iter()
        .filter(|a| a.reply.is_err())
        .map(|a| a.node)
        .collect();
    if answered.len() < needed {
        return refuse(
            false,
            format!(
                "only {} of the {others} other witnesses answered; at least {needed} must, following one leader",
                answered.len()
            ),
        );
    }
    if let Some((node, v)) = answered.iter().find(|(_, v)| v.leader.is_none()) {
        return refuse(
            true,
            format!(
                "witness {node} knows no leader (term {}): an election may be in progress; try again once the others follow one leader",
                v.term
            ),
        );
    }
    let (first, view) = answered[0];
    let (term, leader) = (view.term, view.leader.expect("checked above"));
    if let Some((node, v)) = answered
        .iter()
        .find(|(_, v)| (v.term, v.leader) != (term, Some(leader)))
    {
        return refuse(
            true,
            format!(
                "the other witnesses disagree: witness {first} follows {leader} at term {term}, witness {node} follows {} at term {}: an election may be in progress; try again once they agree",
                v.leader.expect("checked above"),
                v.term
            ),
        );
    }
    if leader == r.own {
        return refuse(
            true,
            format!(
                "the other witnesses still follow this witness ({}) as leader at term {term}: wait until they elect another leader",
                r.own
            ),
        );
    }
    let Some((_, lv)) = answered.iter().find(|(n, _)| *n == leader) else {
        return refuse(
            false,
            format!(
                "the leader they name, witness {leader}, did not answer: a follower may name a leader that is gone; start it, or wait until the others elect another"
            ),
        );
    };
    if !lv.leading {
        return refuse(
            true,
            format!("witness {leader}, the leader the others name, does not say it leads"),
        );
    }

    // The applied entries must be held by a quorum without this witness.
    if let Some(applied) = lv.last_applied_index {
        let quorum = r.cluster_size / 2 + 1;
        let matched = |node: NodeId| {
            lv.matched
                .iter()
                .find(|(n, _)| *n == node)
                .and_then(|(_, m)| *m)
        };
        let (holding, lagging): (Vec<NodeId>, Vec<NodeId>) = answers
            .iter()
            .map(|a| a.node)
            .filter(|n| *n != leader)
            .partition(|n| matched(*n).is_some_and(|m| m >= applied));
        let holders = 1 + holding.len();
        if holders < quorum {
            let views = lagging
                .iter()
                .map(|n| match matched(*n) {
                    Some(m) => format!("witness {n} up to index {m}"),
                    None => format!("witness {n} nothing yet"),
                })
                .collect::<Vec<_>>()
                .join(", ");
            return refuse(
                lagging.iter().all(|n| !silent.contains(n)),
                format!(
                    "the leader, witness {leader}, has applied up to index {applied}, but has replicated to {views}: those entries may be held only by the leader and this witness's forgotten store; wait until the others have caught up"
                ),
            );
        }
    }

    if !silent.is_empty() {
        let list = join(&silent);
        let Some(written) = r.last_write_age_ms else {
            return refuse(
                false,
                format!(
                    "witness {list} did not answer, and this witness's current store is missing or its age unknown, so nothing shows that its last votes reached the leader's quorum; start the silent witnesses first"
                ),
            );
        };
        match lv.quorum_ack_age_ms {
            Some(ack) if ack.saturating_add(r.ack_staleness_ms) < written => {}
            ack => {
                return refuse(
                    false,
                    format!(
                        "witness {list} did not answer, and the leader's last quorum acknowledgement ({}) is not clearly younger than this witness's last store write ({written} ms ago, {} ms of margin): its quorum may have been this witness before it lost votes; start the silent witnesses first",
                        ack.map(|a| format!("{a} ms ago"))
                            .unwrap_or_else(|| "never".into()),
                        r.ack_staleness_ms
                    ),
                );
            }
        }
    }
    Ok(VoteFloor { term, leader })
}

/// The vote the new store gets: the highest of the votes it may keep (the
/// backup's, the replaced store's when readable) and the floor. Never lower
/// than any of them.
pub fn restored_vote(kept: impl IntoIterator<Item = VoteRecord>, floor: VoteFloor) -> VoteRecord {
    kept.into_iter().fold(floor.vote(), std::cmp::max)
}

/// The answers in words, one clause per witness: "witness 1: leads at term
/// 5, applied index 12; witness 3: no answer (connection refused)".
pub fn describe(answers: &[PeerAnswer]) -> String {
    if answers.is_empty() {
        return "(there are no other witnesses)".into();
    }
    answers
        .iter()
        .map(|a| {
            let v = match &a.reply {
                Err(why) => return format!("witness {}: no answer ({why})", a.node),
                Ok(v) => v,
            };
            let applied = match v.last_applied_index {
                Some(i) => format!("applied index {i}"),
                None => "nothing applied".into(),
            };
            match v.leader {
                _ if v.leading => format!(
                    "witness {}: leads at term {}, {applied}{}",
                    a.node,
                    v.term,
                    v.quorum_ack_age_ms
                        .map(|ms| format!(", quorum acknowledged {ms} ms ago"))
                        .unwrap_or_default()
                ),
                Some(l) => format!(
                    "witness {}: follows {l} at term {}, {applied}",
                    a.node, v.term
                ),
                None => format!("witness {}: knows no leader at term {}", a.node, v.term),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn join(nodes: &[NodeId]) -> String {
    nodes
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: NodeId = 2;

    fn restoring(last_write_age_ms: Option<u64>) -> Restoring {
        Restoring {
            own: OWN,
            cluster_size: 3,
            last_write_age_ms,
            ack_staleness_ms: 500,
        }
    }

    fn follows(node: NodeId, leader: NodeId, term: u64) -> PeerAnswer {
        PeerAnswer {
            node,
            reply: Ok(PeerView {
                term,
                leader: Some(leader),
                last_applied_index: Some(10),
                ..PeerView::default()
            }),
        }
    }

    /// Leader `node` at `term`, applied up to 10, with `matched` as its
    /// replication view.
    fn leads_with(
        node: NodeId,
        term: u64,
        ack: Option<u64>,
        matched: &[(NodeId, Option<u64>)],
    ) -> PeerAnswer {
        PeerAnswer {
            node,
            reply: Ok(PeerView {
                term,
                leader: Some(node),
                leading: true,
                last_applied_index: Some(10),
                quorum_ack_age_ms: ack,
                matched: matched.to_vec(),
            }),
        }
    }

    /// Leader 1 or 3 at `term`, having replicated everything to the other.
    fn leads(node: NodeId, term: u64, ack: Option<u64>) -> PeerAnswer {
        let third = if node == 1 { 3 } else { 1 };
        leads_with(node, term, ack, &[(OWN, Some(10)), (third, Some(10))])
    }

    fn silent(node: NodeId) -> PeerAnswer {
        PeerAnswer {
            node,
            reply: Err("connection refused".into()),
        }
    }

    fn no_leader(node: NodeId, term: u64) -> PeerAnswer {
        PeerAnswer {
            node,
            reply: Ok(PeerView {
                term,
                ..PeerView::default()
            }),
        }
    }

    fn refusal(r: Result<VoteFloor, Refusal>) -> Refusal {
        r.expect_err("must be refused")
    }

    #[test]
    fn both_others_following_one_leader_give_its_term_and_id() {
        let floor = vote_floor(&restoring(None), &[leads(1, 7, Some(20)), follows(3, 1, 7)]);
        assert_eq!(floor, Ok(VoteFloor { term: 7, leader: 1 }));
        // Who answered first does not matter.
        let floor = vote_floor(&restoring(None), &[follows(1, 3, 7), leads(3, 7, None)]);
        assert_eq!(floor, Ok(VoteFloor { term: 7, leader: 3 }));
    }

    #[test]
    fn both_others_down_is_refused_naming_them() {
        let e = refusal(vote_floor(
            &restoring(Some(60_000)),
            &[silent(1), silent(3)],
        ));
        assert!(e.reason.contains("only 0 of the 2"), "{e}");
        assert!(
            e.reason
                .contains("witness 1: no answer (connection refused)"),
            "{e}"
        );
        assert!(e.reason.contains("witness 3: no answer"), "{e}");
        assert!(!e.transient);
    }

    #[test]
    fn a_witness_without_a_leader_is_refused_for_now() {
        let e = refusal(vote_floor(
            &restoring(None),
            &[leads(1, 7, Some(5)), no_leader(3, 8)],
        ));
        assert!(
            e.reason.contains("witness 3 knows no leader (term 8)"),
            "{e}"
        );
        assert!(e.transient, "an election ends");
    }

    #[test]
    fn disagreeing_witnesses_are_refused_naming_both_views() {
        let e = refusal(vote_floor(
            &restoring(None),
            &[follows(1, 3, 7), leads(3, 8, Some(5))],
        ));
        assert!(e.reason.contains("disagree"), "{e}");
        assert!(e.reason.contains("witness 1 follows 3 at term 7"), "{e}");
        assert!(e.reason.contains("witness 3 follows 3 at term 8"), "{e}");
        assert!(e.transient);
        let e = refusal(vote_floor(
            &restoring(None),
            &[follows(1, 1, 7), follows(3, 3, 7)],
        ));
        assert!(e.reason.contains("disagree"), "{e}");
    }

    #[test]
    fn others_still_following_this_witness_are_refused() {
        let e = refusal(vote_floor(
            &restoring(None),
            &[follows(1, OWN, 4), follows(3, OWN, 4)],
        ));
        assert!(e.reason.contains("still follow this witness (2)"), "{e}");
    }

    #[test]
    fn the_leader_must_answer_and_lead() {
        // Witness 3 may name a leader that died long ago.
        let e = refusal(vote_floor(
            &restoring(Some(60_000)),
            &[silent(1), follows(3, 1, 7)],
        ));
        assert!(
            e.reason
                .contains("the leader they name, witness 1, did not answer"),
            "{e}"
        );
        assert!(!e.transient);
        let not_leading = PeerAnswer {
            node: 1,
            reply: Ok(PeerView {
                term: 7,
                leader: Some(1),
                ..PeerView::default()
            }),
        };
        let e = refusal(vote_floor(
            &restoring(None),
            &[not_leading, follows(3, 1, 7)],
        ));
        assert!(e.reason.contains("does not say it leads"), "{e}");
    }

    #[test]
    fn entries_held_only_by_the_leader_and_this_witness_are_refused() {
        // Index 10 was committed by the leader and this witness while
        // witness 3 lagged: this witness's copy must not be forgotten yet.
        let lagging = leads_with(1, 7, Some(5), &[(OWN, Some(10)), (3, Some(8))]);
        let e = refusal(vote_floor(&restoring(None), &[lagging, follows(3, 1, 7)]));
        assert!(
            e.reason
                .contains("applied up to index 10, but has replicated to witness 3 up to index 8"),
            "{e}"
        );
        assert!(e.transient, "witness 3 answers: it is catching up");
        let never = leads_with(1, 7, Some(5), &[(OWN, Some(10)), (3, None)]);
        let e = refusal(vote_floor(&restoring(None), &[never, follows(3, 1, 7)]));
        assert!(e.reason.contains("witness 3 nothing yet"), "{e}");
        // Witness 3 silent and behind: it will not catch up by waiting.
        let lagging = leads_with(1, 7, Some(5), &[(OWN, Some(10)), (3, Some(8))]);
        let e = refusal(vote_floor(&restoring(Some(60_000)), &[lagging, silent(3)]));
        assert!(!e.transient, "{e}");
    }

    #[test]
    fn the_leader_alone_will_do_when_its_quorum_acked_after_our_last_write() {
        let r = restoring(Some(60_000));
        assert_eq!(
            vote_floor(&r, &[leads(1, 7, Some(100)), silent(3)]),
            Ok(VoteFloor { term: 7, leader: 1 })
        );
        // Acknowledged only before (or about when) this witness last wrote.
        for ack in [Some(60_000), Some(59_600), None] {
            let e = refusal(vote_floor(&r, &[leads(1, 7, ack), silent(3)]));
            assert!(e.reason.contains("not clearly younger"), "{ack:?}: {e}");
            assert!(!e.transient);
        }
        // No store (a lost disk): nothing to compare with.
        let e = refusal(vote_floor(
            &restoring(None),
            &[leads(1, 7, Some(10)), silent(3)],
        ));
        assert!(e.reason.contains("missing or its age unknown"), "{e}");
    }

    #[test]
    fn five_witnesses_need_every_answer() {
        let r = Restoring {
            cluster_size: 5,
            ..restoring(Some(60_000))
        };
        let all_matched = [(OWN, Some(10)), (3, Some(10)), (4, Some(10)), (5, Some(10))];
        let e = refusal(vote_floor(
            &r,
            &[
                leads_with(1, 3, Some(5), &all_matched),
                follows(3, 1, 3),
                follows(4, 1, 3),
                silent(5),
            ],
        ));
        assert!(e.reason.contains("only 3 of the 4"), "{e}");
        let all = [
            leads_with(1, 3, Some(5), &all_matched),
            follows(3, 1, 3),
            follows(4, 1, 3),
            follows(5, 1, 3),
        ];
        assert_eq!(vote_floor(&r, &all), Ok(VoteFloor { term: 3, leader: 1 }));
        // Two of the four others holding the applied entries, with the
        // leader, are a quorum of five without this witness.
        let some_matched = [(OWN, Some(10)), (3, Some(10)), (4, Some(10)), (5, Some(2))];
        let mut some = all.clone();
        some[0] = leads_with(1, 3, Some(5), &some_matched);
        assert_eq!(vote_floor(&r, &some), Ok(VoteFloor { term: 3, leader: 1 }));
        let few_matched = [(OWN, Some(10)), (3, Some(10)), (4, None), (5, Some(2))];
        some[0] = leads_with(1, 3, Some(5), &few_matched);
        let e = refusal(vote_floor(&r, &some));
        assert!(
            e.reason
                .contains("witness 4 nothing yet, witness 5 up to index 2"),
            "{e}"
        );
    }

    #[test]
    fn the_restored_vote_is_never_lower_than_the_floor_or_a_kept_vote() {
        let floor = VoteFloor { term: 7, leader: 1 };
        let v = |term, node, committed| VoteRecord {
            term,
            node,
            committed,
        };
        // An older backup: raised to the floor, not committed.
        assert_eq!(restored_vote([v(5, 1, true)], floor), v(7, 1, false));
        // An empty store.
        assert_eq!(restored_vote([], floor), v(7, 1, false));
        // Already at the floor, committed: kept.
        assert_eq!(restored_vote([v(7, 1, true)], floor), v(7, 1, true));
        // A higher vote (kept from the replaced store) is never lowered.
        assert_eq!(
            restored_vote([v(5, 1, true), v(8, 3, false)], floor),
            v(8, 3, false)
        );
        // openraft's order: a higher candidate id at the same term is higher.
        assert_eq!(restored_vote([v(7, 3, false)], floor), v(7, 3, false));
        assert_eq!(restored_vote([v(7, 0, true)], floor), v(7, 1, false));
    }

    #[test]
    fn the_answers_read_as_words() {
        assert_eq!(
            describe(&[leads(1, 7, Some(12)), follows(3, 1, 7), silent(4)]),
            "witness 1: leads at term 7, applied index 10, quorum acknowledged 12 ms ago; \
             witness 3: follows 1 at term 7, applied index 10; witness 4: no answer (connection refused)"
        );
    }
}
