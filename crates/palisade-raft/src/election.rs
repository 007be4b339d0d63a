//! Elections with a pre-vote (Raft thesis §9.6), on top of openraft 0.9,
//! which has none.
//!
//! Without it, a witness cut off from the others keeps standing for
//! election and raises its term each time (to 150–262 in a long site
//! isolation); when the link heals, that term reaches the leader (in a vote
//! request, or in the reply to its next heartbeat) and deposes it: an
//! election, and an outage of everything that waits on the leader, caused
//! by a heal. With a pre-vote a witness raises its term only once a
//! majority said they would vote for it: none of them hears from a live
//! leader, and its log is at least as up to date as theirs. A cut-off
//! witness never gets that, so it never raises its term.
//!
//! openraft's own election timer is switched off (`enable_elect = false`);
//! [`campaign`] is the timer: after a randomized election timeout without
//! hearing from a leader it asks every peer `PreVote`, and triggers
//! openraft's election (`raft.trigger().elect()`) only on a majority. The
//! election itself, and so Raft's safety, is openraft's unchanged; the
//! pre-vote only decides *when* to start one.
//!
//! This also takes openraft 0.9's sticky smaller-log backoff out of the
//! way. A candidate refused by a peer with a longer log sets the engine's
//! `seen_greater_log` (openraft 0.9.25 `engine/engine_impl.rs:389-395`);
//! while it is set, openraft's election timer waits `smaller_log_timeout`
//! (2 × `election_timeout_max`) longer (`core/raft_core.rs:1481-1483`),
//! and only that timer clears it, when it fires (`raft_core.rs:1503`). So a
//! witness that once lost to a longer log, caught up and followed, loses
//! every later race to a survivor whose timer is shorter, and never wins
//! until it restarts (openraft pull request 2087, in 0.10, applies the
//! backoff only while the log is still behind). With `enable_elect =
//! false` that timer returns before it reads the flag
//! (`raft_core.rs:1457`), and `trigger().elect()` never reads it; the
//! pre-vote's own log check holds a witness back only while its log is
//! behind. `tests/election_backoff.rs` reproduces the stuck witness under
//! openraft's elections and pins that it wins under these.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::{CommittedLeaderId, LogId, ServerState};
use palisade_api::v1::raft_peer_client::RaftPeerClient;
use palisade_api::v1::{PreVoteReply, PreVoteRequest};
use palisade_core::NodeId;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::members::Members;
use crate::store::LogStore;
use crate::transport::Transport;
use crate::Raft;

/// When this node last heard from a leader (an `AppendEntries` it
/// accepted): written by the peer service, read by the pre-vote.
#[derive(Clone, Default)]
pub struct LeaderContact {
    at: Arc<Mutex<Option<Instant>>>,
}

impl LeaderContact {
    /// A leader's `AppendEntries` was accepted now.
    pub fn touch(&self) {
        *self.at.lock().expect("leader contact lock poisoned") = Some(Instant::now());
    }

    /// Time since then, `None` if never.
    pub fn age(&self) -> Option<Duration> {
        self.at
            .lock()
            .expect("leader contact lock poisoned")
            .map(|t| t.elapsed())
    }
}

/// What a node knows when it answers a pre-vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Voter {
    /// It leads, and a quorum acknowledged it this long ago.
    pub leading_acked: Option<Duration>,
    /// It follows, and last heard from its leader this long ago.
    pub leader_heard: Option<Duration>,
    /// Its last log id.
    pub last_log: Option<LogId<NodeId>>,
}

/// Whether a node in the state `voter` would vote for a candidate whose last
/// log id is `candidate_log`, in words when not. A node that hears from a
/// live leader (within `leader_timeout`) or is one says no: there is
/// nothing to elect. A candidate with an older log would lose the election
/// anyway.
///
/// `leader_timeout` is the maximum election timeout: openraft itself
/// refuses a real vote that long after its last contact with the leader
/// (its "leader lease"), so a pre-vote granted sooner would only raise a
/// term in vain.
pub fn pre_vote(
    voter: &Voter,
    candidate_log: Option<LogId<NodeId>>,
    leader_timeout: Duration,
) -> Result<(), String> {
    if let Some(acked) = voter.leading_acked.filter(|a| *a < leader_timeout) {
        return Err(format!(
            "I lead, with a quorum's acknowledgement {} ms ago",
            acked.as_millis()
        ));
    }
    if let Some(heard) = voter.leader_heard.filter(|h| *h < leader_timeout) {
        return Err(format!(
            "I heard from the leader {} ms ago",
            heard.as_millis()
        ));
    }
    if candidate_log < voter.last_log {
        return Err(format!(
            "your log ({candidate_log:?}) is behind mine ({:?})",
            voter.last_log
        ));
    }
    Ok(())
}

/// A log id from the wire.
pub fn log_id_from(
    term: Option<u64>,
    node: Option<u64>,
    index: Option<u64>,
) -> Option<LogId<NodeId>> {
    Some(LogId::new(CommittedLeaderId::new(term?, node?), index?))
}

/// This node's own state for a pre-vote answer: its role and contact from
/// openraft's metrics, its last log id from the log store.
pub async fn voter(raft: &Raft, log: &LogStore, contact: &LeaderContact) -> Voter {
    use openraft::storage::RaftLogStorage as _;
    let m = raft.metrics().borrow().clone();
    let last_log = match log.clone().get_log_state().await {
        Ok(state) => state.last_log_id,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the log state for a pre-vote");
            None
        }
    };
    Voter {
        leading_acked: (m.state == ServerState::Leader)
            .then(|| m.millis_since_quorum_ack.map(Duration::from_millis))
            .flatten(),
        leader_heard: (m.state != ServerState::Leader)
            .then(|| contact.age())
            .flatten(),
        last_log,
    }
}

/// Runs elections for this node until `cancel`: every randomized timeout in
/// `[election_min, election_max)`, if no leader was heard from for
/// `election_max` (openraft's own leader lease), a pre-vote; on a majority,
/// openraft's election. Cancelled (the witness stops), it returns at once,
/// even in the middle of a pre-vote round, and never starts an election
/// after: a stopping witness must not become a leader nobody can reach.
#[allow(clippy::too_many_arguments)]
pub async fn campaign(
    raft: Raft,
    log: LogStore,
    members: Members,
    contact: LeaderContact,
    election_min: Duration,
    election_max: Duration,
    transport: Transport,
    connect_timeout: Duration,
    cancel: CancellationToken,
) {
    // Clients by peer and address, rebuilt when the membership changes.
    let mut peers: BTreeMap<NodeId, (String, RaftPeerClient<Channel>)> = BTreeMap::new();
    let mut last_refusals = String::new();
    loop {
        let timeout = random_between(election_min, election_max);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(timeout) => {}
        }
        let me = voter(&raft, &log, &contact).await;
        let m = raft.metrics().borrow().clone();
        if m.state == ServerState::Leader
            || me.leader_heard.is_some_and(|h| h < election_max)
            || m.state == ServerState::Shutdown
        {
            continue;
        }
        let topology = members.topology();
        if !topology.is_voter() {
            // A learner catching up, or a witness removed from the cluster.
            continue;
        }
        peers.retain(|id, (addr, _)| {
            topology
                .witnesses
                .get(id)
                .is_some_and(|w| &w.raft_addr == addr)
        });
        for (id, w) in topology.peers() {
            if peers.contains_key(&id) {
                continue;
            }
            match transport.channel(id, &w.raft_addr, connect_timeout) {
                Ok(ch) => {
                    peers.insert(id, (w.raft_addr.clone(), RaftPeerClient::new(ch)));
                }
                Err(e) => {
                    tracing::error!(peer = id, addr = %w.raft_addr, error = %e, "bad peer address: it takes no part in pre-votes")
                }
            }
        }
        let quorum = topology.majority();
        let req = PreVoteRequest {
            candidate: topology.own_id,
            term: m.current_term,
            last_log_term: me.last_log.map(|l| l.leader_id.term),
            last_log_node: me.last_log.map(|l| l.leader_id.node_id),
            last_log_index: me.last_log.map(|l| l.index),
        };
        let mut asks = tokio::task::JoinSet::new();
        for (id, (_, client)) in &peers {
            let (id, mut client) = (*id, client.clone());
            asks.spawn(async move {
                let reply = tokio::time::timeout(election_min, client.pre_vote(req)).await;
                (id, reply)
            });
        }
        let mut granted = 1; // its own
        let mut refusals = Vec::new();
        loop {
            // A witness that is stopping stands for nothing: the round is
            // dropped (its asks with it) and no election starts.
            let done = tokio::select! {
                _ = cancel.cancelled() => return,
                done = asks.join_next() => done,
            };
            let Some(done) = done else { break };
            match done {
                Ok((_, Ok(Ok(r)))) if r.get_ref().granted => granted += 1,
                Ok((id, Ok(Ok(r)))) => {
                    let PreVoteReply { reason, .. } = r.into_inner();
                    refusals.push(format!("witness {id}: {reason}"));
                }
                Ok((id, Ok(Err(status)))) => {
                    refusals.push(format!("witness {id}: {}", status.message()))
                }
                Ok((id, Err(_))) => refusals.push(format!("witness {id}: no answer")),
                Err(e) => refusals.push(format!("pre-vote task failed: {e}")),
            }
        }
        if granted >= quorum && !cancel.is_cancelled() {
            tracing::info!(
                term = m.current_term,
                granted,
                "pre-vote won: standing for election"
            );
            if let Err(e) = raft.trigger().elect().await {
                tracing::warn!(error = %e, "could not start the election");
            }
        } else {
            let now = refusals.join("; ");
            if now != last_refusals {
                tracing::info!(granted, needed = quorum, refusals = %now, "pre-vote lost: not standing for election");
                last_refusals = now;
            }
        }
    }
}

/// A duration in `[min, max)`, from the clock's nanoseconds (an election
/// timeout needs spread between nodes, not cryptographic randomness).
fn random_between(min: Duration, max: Duration) -> Duration {
    let span = max.saturating_sub(min).as_nanos().max(1) as u64;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64 ^ (std::process::id() as u64).rotate_left(17))
        .unwrap_or(0);
    // splitmix64: spreads nearby seeds over the whole range.
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    min + Duration::from_nanos(z % span)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(300); // the leader timeout

    fn log(term: u64, index: u64) -> Option<LogId<NodeId>> {
        log_id_from(Some(term), Some(1), Some(index))
    }

    #[test]
    fn no_vote_while_a_leader_is_heard_from() {
        let v = Voter {
            leading_acked: None,
            leader_heard: Some(Duration::from_millis(50)),
            last_log: log(3, 10),
        };
        assert!(pre_vote(&v, log(3, 10), MIN).is_err());
        let quiet = Voter {
            leader_heard: Some(Duration::from_millis(400)),
            ..v
        };
        assert_eq!(pre_vote(&quiet, log(3, 10), MIN), Ok(()));
    }

    #[test]
    fn a_leader_with_a_fresh_quorum_votes_for_nobody() {
        let v = Voter {
            leading_acked: Some(Duration::from_millis(20)),
            leader_heard: None,
            last_log: log(3, 10),
        };
        assert!(pre_vote(&v, log(9, 99), MIN).is_err());
        let stale = Voter {
            leading_acked: Some(Duration::from_millis(900)),
            ..v
        };
        assert_eq!(pre_vote(&stale, log(9, 99), MIN), Ok(()));
    }

    #[test]
    fn an_older_log_gets_no_vote() {
        let v = Voter {
            leading_acked: None,
            leader_heard: None,
            last_log: log(3, 10),
        };
        assert!(pre_vote(&v, log(3, 9), MIN).is_err());
        assert!(pre_vote(&v, log(2, 50), MIN).is_err());
        assert!(pre_vote(&v, None, MIN).is_err());
        assert_eq!(pre_vote(&v, log(4, 1), MIN), Ok(()));
        assert_eq!(
            pre_vote(
                &Voter {
                    last_log: None,
                    ..v
                },
                None,
                MIN
            ),
            Ok(()),
            "a new cluster elects its first leader"
        );
    }

    #[test]
    fn timeouts_spread_within_the_bounds() {
        let (min, max) = (Duration::from_millis(300), Duration::from_millis(600));
        for _ in 0..1000 {
            let t = random_between(min, max);
            assert!(t >= min && t < max, "{t:?}");
        }
    }
}
