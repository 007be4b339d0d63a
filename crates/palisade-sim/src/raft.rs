//! The replicated log, modelled simply (openraft's own elections are not
//! simulated, only their outcome):
//!
//! * One log of committed entries. A leader's proposal commits when the
//!   leader, in the latest term, reaches a majority (itself and one
//!   follower) at the moment of the commit; a leader cut off from a
//!   majority, or deposed without knowing it, cannot commit (its proposal
//!   waits until it learns of the newer term, as openraft's `client_write`
//!   does).
//! * Followers reachable from the leader receive every committed entry at
//!   each heartbeat (50 ms) and apply them after a delay of their own (a
//!   few ms, now and then hundreds: a lagging witness). The controller's
//!   proposal completes when the leader has applied it.
//! * Elections with pre-vote (the daemon's `palisade_raft::election`): a
//!   witness that has not heard from a leader for its election timeout
//!   (200–400 ms) wins when a majority, itself included, is reachable, alive,
//!   has not heard from a leader for `election_min` (200 ms) and has a log
//!   no longer than its own. So a witness coming back from a partition
//!   never deposes a healthy leader. A deposed leader goes on believing it
//!   leads (and its controller runs) until it reaches a witness of a newer
//!   term.
//! * A leader change on purpose (a fault): the leader steps down and
//!   another is elected.

use std::collections::BTreeMap;

use palisade_core::{Command, CommandResult};
use rand::Rng;

use crate::network::{site_name, Node};
use crate::world::{Ev, WTimer, World};

/// The election timeout's lower bound (`raft.election_timeout_min_ms`).
pub const ELECTION_MIN_MS: u64 = 200;

/// A proposal waiting to commit.
#[derive(Clone, Debug)]
pub struct Proposal {
    /// The proposing leader.
    pub by: usize,
    /// Its term.
    pub term: u64,
    /// The controller that waits for it.
    pub ctl: u64,
    /// The command.
    pub cmd: Command,
}

/// The log and the election state.
#[derive(Clone, Debug)]
pub struct Raft {
    /// Committed entries; entry `i` has log index `i + 1`.
    pub log: Vec<Command>,
    /// The latest term.
    pub term: u64,
    /// The leader of the latest term (it may have crashed since).
    pub leader: Option<usize>,
    /// Proposals not committed yet.
    pub pending: Vec<Proposal>,
    /// Committed proposals whose controller waits for the leader's apply:
    /// log index → (leader, controller).
    pub waiting: BTreeMap<u64, (usize, u64)>,
}

impl Raft {
    /// A log of `log`, committed, with `leader` leading term 1.
    pub fn new(log: Vec<Command>, leader: usize) -> Self {
        Self {
            log,
            term: 1,
            leader: Some(leader),
            pending: Vec::new(),
            waiting: BTreeMap::new(),
        }
    }
}

impl World {
    /// Witness `w`'s process runs and is not stopped.
    pub fn awake(&self, w: usize) -> bool {
        let x = &self.witnesses[w];
        x.alive && x.paused_until <= self.now
    }

    /// The live followers witness `l` reaches now.
    fn reachable_from(&self, l: usize) -> Vec<usize> {
        (0..3)
            .filter(|&f| f != l && self.awake(f) && self.net.up(Node::W(l), Node::W(f)))
            .collect()
    }

    /// Leader `w`'s controller `ctl` proposes `cmd`.
    pub fn propose(&mut self, w: usize, ctl: u64, cmd: Command) {
        let term = self.witnesses[w].term;
        self.raft.pending.push(Proposal {
            by: w,
            term,
            ctl,
            cmd,
        });
        let at = self.now + self.rng.random_range(1..=5);
        self.push(at, Ev::RaftCommit);
    }

    /// Commits what the current leader proposed, if it reaches a majority.
    pub fn try_commit(&mut self) {
        let Some(l) = self.raft.leader else { return };
        let lw = &self.witnesses[l];
        if !self.awake(l) || !lw.leads || lw.term != self.raft.term {
            return;
        }
        let followers = self.reachable_from(l);
        if followers.is_empty() {
            return;
        }
        let term = self.raft.term;
        let (mine, rest): (Vec<Proposal>, Vec<Proposal>) = std::mem::take(&mut self.raft.pending)
            .into_iter()
            .partition(|p| p.by == l && p.term == term);
        self.raft.pending = rest;
        if mine.is_empty() {
            return;
        }
        for p in mine {
            self.raft.log.push(p.cmd.clone());
            let index = self.raft.log.len() as u64;
            self.raft.waiting.insert(index, (l, p.ctl));
            let result = self.truth.apply(index, &p.cmd);
            self.committed(index, &p.cmd, &result);
        }
        self.replicate(l, &followers);
    }

    /// The leader `l` and `followers` receive every committed entry.
    fn replicate(&mut self, l: usize, followers: &[usize]) {
        let len = self.raft.log.len();
        for &w in std::iter::once(&l).chain(followers) {
            if self.witnesses[w].have < len {
                self.witnesses[w].have = len;
                let delay = if w == l {
                    self.rng.random_range(1..=3)
                } else if self.rng.random_range(0..10) == 0 {
                    self.rng.random_range(20..=400)
                } else {
                    self.rng.random_range(1..=6)
                };
                self.schedule_apply(w, delay);
            }
        }
    }

    fn schedule_apply(&mut self, w: usize, delay: u64) {
        if self.witnesses[w]
            .apply_at
            .is_some_and(|t| t <= self.now + delay)
        {
            return;
        }
        self.witnesses[w].apply_at = Some(self.now + delay);
        let inc = self.witnesses[w].inc;
        self.push(
            self.now + delay,
            Ev::W {
                w,
                inc,
                t: WTimer::Apply,
            },
        );
    }

    /// Witness `w` applies the committed entries it has.
    pub fn apply_committed(&mut self, w: usize) {
        self.witnesses[w].apply_at = None;
        if self.witnesses[w].apply_blocked || !self.witnesses[w].alive {
            return;
        }
        while self.witnesses[w].applied < self.witnesses[w].have {
            let index = self.witnesses[w].applied as u64 + 1;
            let cmd = self.raft.log[index as usize - 1].clone();
            let result = self.witnesses[w].state.apply(index, &cmd);
            self.witnesses[w].applied += 1;
            if let Some(&(l, ctl)) = self.raft.waiting.get(&index) {
                if l == w {
                    self.raft.waiting.remove(&index);
                    self.proposal_applied(w, ctl, result);
                }
            }
        }
    }

    /// Raft's heartbeat: the leader replicates, deposed leaders that hear
    /// of a newer term step down, followers that lost their leader elect
    /// another.
    pub fn raft_tick(&mut self) {
        for w in 0..3 {
            if !self.awake(w) || !self.witnesses[w].leads {
                continue;
            }
            let mine = self.witnesses[w].term;
            if mine < self.raft.term {
                let newer = (0..3).find(|&v| {
                    v != w
                        && self.awake(v)
                        && self.witnesses[v].term > mine
                        && self.net.up(Node::W(w), Node::W(v))
                });
                if let Some(v) = newer {
                    let term = self.witnesses[v].term;
                    self.witnesses[w].term = term;
                    self.witnesses[w].leader_known = self.witnesses[v].leader_known;
                    self.step_down(w, &format!("learned of term {term}"));
                }
                continue;
            }
            if self.raft.leader != Some(w) {
                continue;
            }
            let followers = self.reachable_from(w);
            let term = self.raft.term;
            for &f in &followers {
                let x = &mut self.witnesses[f];
                x.heard_leader_at = self.now;
                x.leader_known = Some(w);
                x.term = x.term.max(term);
            }
            self.witnesses[w].heard_leader_at = self.now;
            self.replicate(w, &followers);
        }
        self.try_commit();
        self.elect();
    }

    /// Witness `w` no longer leads: its controller stops, its proposals
    /// never commit.
    pub fn step_down(&mut self, w: usize, why: &str) {
        if !self.witnesses[w].leads {
            return;
        }
        self.witnesses[w].leads = false;
        self.witnesses[w].ctl = None;
        self.raft.pending.retain(|p| p.by != w);
        self.raft.waiting.retain(|_, (l, _)| *l != w);
        self.trace(format!("W{} steps down as leader: {why}", site_name(w)));
    }

    fn elect(&mut self) {
        let mut candidates: Vec<usize> = (0..3)
            .filter(|&c| {
                let x = &self.witnesses[c];
                self.awake(c)
                    && !x.leads
                    && self.now.saturating_sub(x.heard_leader_at) >= x.election_timeout
            })
            .collect();
        candidates.sort_by_key(|&c| {
            (
                std::cmp::Reverse(self.witnesses[c].have),
                self.witnesses[c].election_timeout,
                c,
            )
        });
        for c in candidates {
            let have = self.witnesses[c].have;
            let voters: Vec<usize> = (0..3)
                .filter(|&v| {
                    let x = &self.witnesses[v];
                    v == c
                        || (self.awake(v)
                            && self.net.up(Node::W(c), Node::W(v))
                            && !x.leads
                            && self.now.saturating_sub(x.heard_leader_at) >= ELECTION_MIN_MS
                            && x.have <= have)
                })
                .collect();
            if voters.len() >= 2 {
                self.won(c, &voters);
                return;
            }
        }
    }

    fn won(&mut self, c: usize, voters: &[usize]) {
        assert_eq!(
            self.witnesses[c].have,
            self.raft.log.len(),
            "a majority's candidate holds every committed entry"
        );
        self.raft.term += 1;
        let term = self.raft.term;
        self.raft.leader = Some(c);
        for &v in voters {
            let timeout = self.rng.random_range(ELECTION_MIN_MS..=400);
            let x = &mut self.witnesses[v];
            x.term = term;
            x.leader_known = Some(c);
            x.heard_leader_at = self.now;
            x.election_timeout = timeout;
        }
        self.witnesses[c].leads = true;
        self.trace(format!(
            "W{} elected leader of term {term} (voters {})",
            site_name(c),
            voters
                .iter()
                .map(|v| site_name(*v))
                .collect::<Vec<_>>()
                .join(",")
        ));
        self.w_timer(c, 10, WTimer::LeaderStart { term });
    }

    /// A leader change on purpose: the leader steps down; another one is
    /// elected by the next heartbeats.
    pub fn force_leader_change(&mut self) {
        let Some(l) = self.raft.leader else { return };
        if !self.witnesses[l].leads {
            return;
        }
        self.step_down(l, "leader change (fault)");
        self.raft.leader = None;
        let now = self.now;
        for w in 0..3 {
            let x = &mut self.witnesses[w];
            if w == l {
                x.heard_leader_at = now;
                x.election_timeout = 1000;
            } else {
                x.heard_leader_at = now.saturating_sub(1000);
            }
        }
    }

    /// Records a committed entry for the trace and the validators.
    fn committed(&mut self, index: u64, cmd: &Command, result: &CommandResult) {
        let what = match cmd {
            Command::BeginFailover(f) => {
                if *result == CommandResult::Applied {
                    self.hist.begun.push((self.now, (**f).clone()));
                }
                format!(
                    "BeginFailover epoch {} {}→{}: {}",
                    f.epoch, f.from, f.to, f.reason
                )
            }
            Command::StepDone { epoch, record } => {
                if *result == CommandResult::Applied {
                    self.hist
                        .steps
                        .push((self.now, *epoch, record.step, record.detail.clone()));
                }
                format!(
                    "StepDone epoch {epoch} {}: {}",
                    record.step.name(),
                    record.detail
                )
            }
            Command::FinishFailover { epoch, outcome, .. } => {
                if *result == CommandResult::Applied {
                    self.hist.finished.push((self.now, *epoch));
                }
                format!("FinishFailover epoch {epoch}: {outcome:?}")
            }
            Command::StandbyRejoined { site, epoch, .. } => {
                format!("StandbyRejoined {site} in epoch {epoch}")
            }
            other => format!("{other:?}"),
        };
        let result = match result {
            CommandResult::Rejected { reason } => format!(" REJECTED: {reason}"),
            _ => String::new(),
        };
        self.trace(format!("commit #{index}: {what}{result}"));
    }
}
