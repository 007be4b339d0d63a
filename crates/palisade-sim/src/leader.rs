//! The leader's controller, carried out as the daemon's
//! (`crates/palisade/src/controller/`) carries it out: one controller per
//! term, started when the witness wins an election, with no reports and an
//! empty `Detector` (what the last leader saw is unknown); a loop that
//! sleeps `probe.interval_ms`, then ticks; a tick drives the failover in
//! progress from its record (`executor::next`), or confirms a rejoin, or
//! assesses the primary (`Detector::assess`) and begins a failover. Each
//! step's result goes through `executor::settle` and is committed before
//! the next step runs. The fence is a `FenceRound`: the old primary's agent
//! asked (3 s per ask), every witness asked each round whether it vouches
//! for the expiry (500 ms each, this one without the network), 50 ms
//! between rounds. The controller stops the moment its witness stops
//! leading; orders it gave run on at the agents.

use std::collections::{BTreeMap, BTreeSet};

use palisade_core::detector::{Assessment, Detector, Now, WitnessReport};
use palisade_core::executor::{
    self, FenceRound, FenceVerdict, FenceWork, MonitorRead, Next, Settle, StepResult, Work,
};
use palisade_core::{
    Check, ClusterState, Command, CommandResult, Failover, Kind, NodeId, Outcome, SiteId, Step,
    Trigger,
};

use crate::network::{
    node_id, site_id, site_index, site_name, CtlTag, Endpoint, Purpose, Report, Req, Resp,
    RpcError, SiteAction,
};
use crate::world::{WTimer, World};
use crate::Flaw;

/// How long the leader waits for a site agent to fence (`FENCE_RPC_TIMEOUT`).
const FENCE_RPC_TIMEOUT_MS: u64 = 3000;
/// How often the fence asks the witnesses (`EXPIRY_POLL`).
const EXPIRY_POLL_MS: u64 = 50;
/// Bound of one expiry answer (`EXPIRY_RPC_TIMEOUT`).
const EXPIRY_RPC_TIMEOUT_MS: u64 = 500;
/// Bound of the promotion order (`PROMOTE_RPC_TIMEOUT`).
const PROMOTE_RPC_TIMEOUT_MS: u64 = 30_000;
/// Bound of a `monitorsEnabled` order. The daemon's is the app's
/// `command_timeout` + 10 s (130 s by default), but its peer channels'
/// HTTP/2 keepalive (5 s interval, 5 s timeout) fails a call over a dead
/// connection within 10 s: that is the bound that matters.
const APP_RPC_TIMEOUT_MS: u64 = 10_000;
/// Bound of the front door's repointing.
const REPOINT_TIMEOUT_MS: u64 = 5000;

/// A controller timer.
#[derive(Clone, Copy, Debug)]
pub enum CtlTimer {
    /// The loop's next tick.
    Tick,
    /// The fence's next round.
    FenceIter,
    /// The verify step's next probe of the new primary.
    VerifyRetry,
}

/// What a commit the controller waits for leads to.
#[derive(Clone, Debug)]
pub enum After {
    /// A rejoin recorded: assess with the state read before it.
    Rejoined(Box<ClusterState>),
    /// A failover begun: drive it.
    Begin,
    /// A step recorded: drive on.
    StepRecorded(u64),
    /// A failover finished: the tick ends.
    Finished,
}

/// What the controller is doing.
#[derive(Debug)]
pub enum Task {
    /// Sleeping until its next tick.
    Idle,
    /// Waiting for a proposal to commit and apply here.
    Propose(After),
    /// Carrying out a step's work.
    Step(Box<StepRun>),
}

/// A step under way.
#[derive(Debug)]
pub struct StepRun {
    /// The record when the step began (what `settle` judges against).
    pub f: Failover,
    /// The step.
    pub step: Step,
    /// Wall clock when it began.
    pub started_at: i64,
    /// Its work.
    pub work: WorkRun,
}

/// The work of a step, in progress.
#[derive(Debug)]
pub enum WorkRun {
    /// The fence round.
    Fence(FenceRun),
    /// Waiting for the promotion.
    Promote,
    /// The flip: what was said so far.
    Flip(Vec<String>),
    /// Waiting for the front door.
    Repoint,
    /// The checks.
    Verify(VerifyRun),
}

/// The fence, as `controller/fence.rs` runs it.
#[derive(Debug)]
pub struct FenceRun {
    /// The core's round.
    pub round: FenceRound,
    /// The agent's answer, once its task finished (looked at on the next
    /// round, as `take_if(is_finished)` does).
    pub agent_result: Option<Result<String, String>>,
    /// Witnesses asked this round, not answered yet.
    pub asking: BTreeSet<usize>,
}

/// The verify step's checks.
#[derive(Debug, Default)]
pub struct VerifyRun {
    /// Probes of the new primary so far.
    pub tries: u32,
    /// What the last one saw.
    pub last: String,
    /// Checks done.
    pub checks: Vec<Check>,
    /// Monitors read so far.
    pub reads: Vec<(SiteId, MonitorRead)>,
}

/// The leader's controller of one term.
#[derive(Debug)]
pub struct Controller {
    /// Its incarnation.
    pub id: u64,
    /// The latest report of each witness.
    pub reports: BTreeMap<NodeId, WitnessReport>,
    /// The failure detector's memory.
    pub detector: Detector,
    /// What it does now.
    pub task: Task,
    /// The last assessment traced (its kind), to trace changes only.
    pub last_assessment: String,
}

impl World {
    /// The wall clock (Unix ms, shared by every host, as NTP keeps it).
    pub fn wall_ms(&self) -> i64 {
        self.now as i64
    }

    fn witness_sites(&self) -> BTreeMap<NodeId, SiteId> {
        (0..3).map(|s| (node_id(s), site_id(s))).collect()
    }

    fn ctl(&mut self, w: usize) -> &mut Controller {
        self.witnesses[w]
            .ctl
            .as_mut()
            .expect("a controller timer or answer runs only while it exists")
    }

    fn ctl_timer_in(&mut self, w: usize, ms: u64, t: CtlTimer) {
        let ctl = self.ctl(w).id;
        self.w_timer(w, ms, WTimer::Ctl { ctl, t });
    }

    /// Witness `w` won the election of `term`: a controller starts (no
    /// reports, an empty detector) and sleeps one interval before its
    /// first tick.
    pub fn leader_start(&mut self, w: usize, term: u64) {
        let x = &self.witnesses[w];
        if !x.leads || x.term != term || x.ctl.is_some() {
            return;
        }
        let id = self.next_id();
        self.witnesses[w].ctl = Some(Controller {
            id,
            reports: BTreeMap::new(),
            detector: Detector::default(),
            task: Task::Idle,
            last_assessment: String::new(),
        });
        self.trace(format!(
            "W{} leading term {term}: controller started",
            site_name(w)
        ));
        let interval = self.settings.probe_interval_ms;
        self.ctl_timer_in(w, interval, CtlTimer::Tick);
    }

    /// A witness's report reached witness `w` (kept only while it leads).
    pub fn receive_report(&mut self, w: usize, report: Report) {
        let now = self.local(w);
        if let Some(ctl) = self.witnesses[w].ctl.as_mut() {
            ctl.reports.insert(
                report.witness,
                WitnessReport {
                    received_at_ms: now,
                    dbs: report.dbs,
                    last_writable: report.last_writable,
                    unreachable_for: report.unreachable_for,
                },
            );
        }
    }

    /// A controller timer fired.
    pub fn ctl_timer(&mut self, w: usize, t: CtlTimer) {
        match t {
            CtlTimer::Tick => self.ctl_tick(w),
            CtlTimer::FenceIter => self.fence_iter(w),
            CtlTimer::VerifyRetry => self.verify_probe(w),
        }
    }

    fn end_tick(&mut self, w: usize) {
        self.ctl(w).task = Task::Idle;
        let interval = self.settings.probe_interval_ms;
        self.ctl_timer_in(w, interval, CtlTimer::Tick);
    }

    fn propose_for(&mut self, w: usize, cmd: Command, after: After) {
        let ctl = self.ctl(w);
        ctl.task = Task::Propose(after);
        let id = ctl.id;
        self.propose(w, id, cmd);
    }

    fn ctl_tick(&mut self, w: usize) {
        let state = self.witnesses[w].state.clone();
        if state.db.is_none() {
            return self.end_tick(w);
        }
        if let Some(f) = &state.failover {
            return self.drive(w, f.epoch);
        }
        if let Some(cmd) = self.rejoin_seen(w, &state) {
            return self.propose_for(w, cmd, After::Rejoined(Box::new(state)));
        }
        self.assess(w, state);
    }

    /// `confirm_rejoin`: the old primary, now in recovery, streams from the
    /// primary in a fresh report.
    fn rejoin_seen(&mut self, w: usize, state: &ClusterState) -> Option<Command> {
        let db = state.db.as_ref()?;
        if !db.standby_needs_rejoin {
            return None;
        }
        let now = self.local(w);
        let ttl = self.settings.detector.report_ttl_ms;
        let name = db.standby.0.clone();
        let ctl = self.witnesses[w].ctl.as_ref()?;
        let streaming = ctl.reports.values().any(|r| {
            now.saturating_sub(r.received_at_ms) <= ttl
                && r.dbs.get(&db.primary).is_some_and(|o| {
                    o.is_writable_primary()
                        && o.replicas
                            .iter()
                            .any(|x| x.application_name == name && x.state == "streaming")
                })
                && r.dbs
                    .get(&db.standby)
                    .is_some_and(|o| o.reachability.is_up() && o.in_recovery == Some(true))
        });
        streaming.then(|| Command::StandbyRejoined {
            site: db.standby.clone(),
            epoch: state.epoch,
            at_ms: self.wall_ms(),
        })
    }

    fn assess(&mut self, w: usize, state: ClusterState) {
        let now = Now {
            mono_ms: self.local(w),
            wall_ms: self.wall_ms(),
        };
        let witnesses = self.witness_sites();
        let cfg = self.settings.detector.clone();
        let ctl = self.ctl(w);
        let a = ctl
            .detector
            .assess(now, &state, &witnesses, &ctl.reports, &cfg);
        let kind = match &a {
            Assessment::NotConfigured => "not configured".to_string(),
            Assessment::FailoverInProgress => "failover in progress".to_string(),
            Assessment::Healthy { .. } => "healthy".to_string(),
            Assessment::Suspect { rule, .. } => format!("suspect ({rule})"),
            Assessment::Blocked { reason, .. } => format!("blocked: {reason}"),
            Assessment::FailOver { reason, .. } => format!("failing over: {reason}"),
        };
        if kind != ctl.last_assessment {
            ctl.last_assessment = kind.clone();
            self.trace(format!("W{} detector: {kind}", site_name(w)));
        }
        let Assessment::FailOver {
            from,
            to,
            reason,
            evidence,
        } = a
        else {
            return self.end_tick(w);
        };
        let failover = Failover {
            kind: Kind::Failover,
            epoch: state.epoch + 1,
            from,
            to,
            trigger: Trigger::Automatic,
            reason,
            evidence,
            started_at_ms: self.wall_ms(),
            steps: vec![],
            outcome: None,
            finished_at_ms: None,
        };
        self.propose_for(w, Command::BeginFailover(Box::new(failover)), After::Begin);
    }

    /// The leader applied a proposal of controller `ctl`.
    pub fn proposal_applied(&mut self, w: usize, ctl: u64, result: CommandResult) {
        let Some(c) = self.witnesses[w].ctl.as_mut().filter(|c| c.id == ctl) else {
            return;
        };
        let Task::Propose(after) = std::mem::replace(&mut c.task, Task::Idle) else {
            return;
        };
        let rejected = matches!(result, CommandResult::Rejected { .. });
        match after {
            After::Rejoined(state) => self.assess(w, *state),
            After::Begin if !rejected => match self.witnesses[w].state.failover.clone() {
                Some(f) => self.drive(w, f.epoch),
                None => self.end_tick(w),
            },
            After::StepRecorded(epoch) if !rejected => self.drive(w, epoch),
            _ => self.end_tick(w),
        }
    }

    /// The step loop: what the record says comes next.
    fn drive(&mut self, w: usize, epoch: u64) {
        let state = &self.witnesses[w].state;
        let Some(f) = state.failover.clone().filter(|f| f.epoch == epoch) else {
            return self.end_tick(w);
        };
        match executor::next(&f) {
            Next::Finish(outcome) => self.finish(w, &f, outcome),
            Next::Abort { reason } => self.finish(w, &f, Outcome::Aborted { reason }),
            Next::Run { step, work } => self.start_work(w, f, step, work),
        }
    }

    fn finish(&mut self, w: usize, f: &Failover, outcome: Outcome) {
        let cmd = Command::FinishFailover {
            epoch: f.epoch,
            outcome,
            at_ms: self.wall_ms(),
        };
        self.propose_for(w, cmd, After::Finished);
    }

    fn start_work(&mut self, w: usize, f: Failover, step: Step, work: Work) {
        let started_at = self.wall_ms();
        let from = site_index(&f.from);
        let to = site_index(&f.to);
        let epoch = f.epoch;
        let run = match work {
            Work::Fence { .. } => {
                let witnesses = if self.minority_proof() { 1 } else { 3 };
                let round = FenceRound::new(f.from.clone(), epoch, self.local(w), witnesses, false);
                WorkRun::Fence(FenceRun {
                    round,
                    agent_result: None,
                    asking: BTreeSet::new(),
                })
            }
            Work::Promote { .. } => WorkRun::Promote,
            Work::FlipApps { .. } => WorkRun::Flip(Vec::new()),
            Work::Repoint { .. } => WorkRun::Repoint,
            Work::Verify { .. } => WorkRun::Verify(VerifyRun::default()),
            Work::ShutDownCleanly { .. } | Work::CatchUpThenPromote { .. } => {
                panic!("the simulation runs no planned handover")
            }
        };
        self.ctl(w).task = Task::Step(Box::new(StepRun {
            f,
            step,
            started_at,
            work: run,
        }));
        match step {
            Step::Fenced if self.flaw == Flaw::SkipFence => {
                self.step_result(w, StepResult::done("NOT FENCED: flaw SkipFence"))
            }
            Step::Fenced => self.fence_iter(w),
            Step::Promoted => self.ctl_call(
                w,
                Endpoint::Witness(to),
                Req::Action(SiteAction::Promote { epoch }),
                PROMOTE_RPC_TIMEOUT_MS,
                CtlTag::Promote,
            ),
            Step::AppFlipped => self.ctl_call(
                w,
                Endpoint::Witness(from),
                Req::Action(SiteAction::SetMonitors {
                    epoch,
                    enabled: false,
                }),
                APP_RPC_TIMEOUT_MS,
                CtlTag::FlipOff,
            ),
            Step::Repointed => self.ctl_call(
                w,
                Endpoint::Client,
                Req::Repoint { to },
                REPOINT_TIMEOUT_MS,
                CtlTag::Repoint,
            ),
            Step::Verified => self.verify_probe(w),
        }
    }

    fn ctl_call(&mut self, w: usize, to: Endpoint, req: Req, timeout: u64, tag: CtlTag) {
        let ctl = self.ctl(w).id;
        self.call(
            Endpoint::Witness(w),
            to,
            req,
            timeout,
            Purpose::Ctl { w, ctl, tag },
        );
    }

    fn run_mut(&mut self, w: usize) -> Option<&mut StepRun> {
        match &mut self.witnesses[w].ctl.as_mut()?.task {
            Task::Step(run) => Some(run),
            _ => None,
        }
    }

    /// The step's work gave `result`: settle it and commit.
    fn step_result(&mut self, w: usize, result: StepResult) {
        let wall = self.wall_ms();
        let Some(c) = self.witnesses[w].ctl.as_mut() else {
            return;
        };
        let Task::Step(run) = std::mem::replace(&mut c.task, Task::Idle) else {
            return;
        };
        let epoch = run.f.epoch;
        match executor::settle(&run.f, run.step, run.started_at, wall, result) {
            Settle::Record(record) => self.propose_for(
                w,
                Command::StepDone { epoch, record },
                After::StepRecorded(epoch),
            ),
            Settle::Finish(outcome) => {
                let f = run.f.clone();
                self.finish(w, &f, outcome)
            }
            Settle::RetryLater { reason } => {
                self.trace(format!(
                    "W{} step {} not done: {reason}",
                    site_name(w),
                    run.step.name()
                ));
                self.end_tick(w)
            }
        }
    }

    /// One round of the fence (`Controller::fence`'s loop body).
    fn fence_iter(&mut self, w: usize) {
        let own = w;
        let now = self.local(w);
        let (site, epoch, from) = {
            let Some(run) = self.run_mut(w) else { return };
            let WorkRun::Fence(fr) = &mut run.work else {
                return;
            };
            (
                fr.round.site().clone(),
                fr.round.epoch(),
                site_index(fr.round.site()),
            )
        };
        let work = match self.run_mut(w).map(|r| &mut r.work) {
            Some(WorkRun::Fence(fr)) => fr.round.work(now),
            _ => return,
        };
        for job in work {
            match job {
                FenceWork::AskAgent => self.ctl_call(
                    w,
                    Endpoint::Witness(from),
                    Req::Action(SiteAction::Fence { epoch }),
                    FENCE_RPC_TIMEOUT_MS,
                    CtlTag::FenceAgent,
                ),
                FenceWork::FireStonith => unreachable!("no STONITH hook is configured"),
            }
        }
        let own_answer = self.witness_expiry(own, site_index(&site), epoch);
        let Some(WorkRun::Fence(fr)) = self.run_mut(w).map(|r| &mut r.work) else {
            return;
        };
        if let Some(answer) = fr.agent_result.take() {
            fr.round.agent_answered(now, answer);
        }
        if fr.round.verdict().is_none() {
            fr.round.expiry(node_id(own), own_answer);
        }
        if fr.round.verdict().is_some() {
            return self.fence_check(w);
        }
        let peers: Vec<usize> = (0..3).filter(|p| *p != own).collect();
        fr.asking = peers.iter().copied().collect();
        for p in peers {
            self.ctl_call(
                w,
                Endpoint::Witness(p),
                Req::Expiry {
                    site: site_index(&site),
                    epoch,
                },
                EXPIRY_RPC_TIMEOUT_MS,
                CtlTag::Expiry(p),
            );
        }
    }

    /// After a round's questions: done when proven, else again in 50 ms.
    fn fence_check(&mut self, w: usize) {
        let now = self.local(w);
        let wait = self.settings.lease.witness_wait_ms();
        let Some(WorkRun::Fence(fr)) = self.run_mut(w).map(|r| &mut r.work) else {
            return;
        };
        fr.asking.clear();
        match fr.round.detail(now, wait) {
            Some(detail) => {
                let verdict = fr.round.verdict().cloned().expect("a detail has a verdict");
                let site = site_index(fr.round.site());
                let epoch = fr.round.epoch();
                self.fence_proven(w, site, epoch, &verdict);
                self.step_result(w, StepResult::done(detail));
            }
            None => self.ctl_timer_in(w, EXPIRY_POLL_MS, CtlTimer::FenceIter),
        }
    }

    /// Records the proof for the validators (what the world was like at
    /// that instant).
    fn fence_proven(&mut self, w: usize, site: usize, epoch: u64, verdict: &FenceVerdict) {
        let basis = match verdict {
            FenceVerdict::ByAgent { detail } => format!("by agent: {detail}"),
            FenceVerdict::ByStonith { detail } => format!("by STONITH: {detail}"),
            FenceVerdict::ByLeaseExpiry { vouching, .. } => {
                format!("by lease expiry, vouching {vouching:?}")
            }
        };
        self.trace(format!(
            "W{} fence of {} for epoch {epoch} proven {basis}",
            site_name(w),
            site_name(site)
        ));
        self.hist_fence_proven(site, epoch, verdict);
    }

    /// A controller call's result.
    pub fn ctl_answer(&mut self, w: usize, ctl: u64, tag: CtlTag, result: Result<Resp, RpcError>) {
        if !self.witnesses[w].alive || self.witnesses[w].ctl.as_ref().is_none_or(|c| c.id != ctl) {
            return;
        }
        let done = |r: &Result<Resp, RpcError>| -> Result<String, String> {
            match r {
                Ok(Resp::Done(d)) => d.clone(),
                Ok(Resp::Refused) => Err("connection refused".into()),
                Ok(other) => Err(format!("unexpected answer {other:?}")),
                Err(RpcError::Timeout) => Err("timed out".into()),
            }
        };
        match tag {
            CtlTag::FenceAgent => {
                if let Some(WorkRun::Fence(fr)) = self.run_mut(w).map(|r| &mut r.work) {
                    fr.agent_result = Some(done(&result));
                }
            }
            CtlTag::Expiry(p) => {
                let Some(WorkRun::Fence(fr)) = self.run_mut(w).map(|r| &mut r.work) else {
                    return;
                };
                if !fr.asking.remove(&p) {
                    return;
                }
                if let Ok(Resp::Expiry(e)) = result {
                    fr.round.expiry(node_id(p), e);
                }
                if fr.round.verdict().is_some() || fr.asking.is_empty() {
                    self.fence_check(w);
                }
            }
            CtlTag::Promote => {
                if !matches!(self.run_mut(w).map(|r| &r.work), Some(WorkRun::Promote)) {
                    return;
                }
                let r = match done(&result) {
                    Ok(detail) => StepResult::done(detail),
                    Err(e) => StepResult::Retry {
                        reason: format!("promoting: {e}"),
                    },
                };
                self.step_result(w, r);
            }
            CtlTag::FlipOff => {
                let Some(run) = self.run_mut(w) else { return };
                let (from, to, epoch) = (run.f.from.clone(), run.f.to.clone(), run.f.epoch);
                let WorkRun::Flip(notes) = &mut run.work else {
                    return;
                };
                match done(&result) {
                    Ok(d) => notes.push(format!("{from}: {d}")),
                    Err(e) => {
                        notes.push(format!("{from}: not reachable ({e}); its agent sets monitorsEnabled=false when it returns, before anything else"));
                        self.hist.flip_off_failed.insert(epoch);
                    }
                }
                self.ctl_call(
                    w,
                    Endpoint::Witness(site_index(&to)),
                    Req::Action(SiteAction::SetMonitors {
                        epoch,
                        enabled: true,
                    }),
                    APP_RPC_TIMEOUT_MS,
                    CtlTag::FlipOn,
                );
            }
            CtlTag::FlipOn => {
                let Some(run) = self.run_mut(w) else { return };
                let to = run.f.to.clone();
                let WorkRun::Flip(notes) = &mut run.work else {
                    return;
                };
                let r = match done(&result) {
                    Ok(d) => {
                        notes.push(format!("{to}: {d}"));
                        StepResult::done(notes.join("; "))
                    }
                    Err(e) => StepResult::Retry {
                        reason: format!("switching monitorsEnabled on at {to}: {e}"),
                    },
                };
                self.step_result(w, r);
            }
            CtlTag::Repoint => {
                if !matches!(self.run_mut(w).map(|r| &r.work), Some(WorkRun::Repoint)) {
                    return;
                }
                let r = match result {
                    Ok(Resp::Ack) => StepResult::done("front door repointed"),
                    _ => StepResult::Retry {
                        reason: "the front door did not answer".into(),
                    },
                };
                self.step_result(w, r);
            }
            CtlTag::VerifyProbe => self.verify_probed(w, result),
            CtlTag::ReadMonitors(site) => self.monitors_read(w, site, done(&result)),
            CtlTag::SwitchOff(site) => {
                let read = match done(&result) {
                    Ok(d) => MonitorRead::SwitchedOff(d),
                    Err(_) => MonitorRead::On,
                };
                self.monitor_read_done(w, site, read);
            }
        }
    }

    /// The verify step probes the new primary (up to ten times).
    fn verify_probe(&mut self, w: usize) {
        let Some(run) = self.run_mut(w) else { return };
        let to = site_index(&run.f.to);
        let timeout = self.settings.probe_timeout_ms;
        self.ctl_call(
            w,
            Endpoint::Db(to),
            Req::Probe,
            timeout,
            CtlTag::VerifyProbe,
        );
    }

    fn verify_probed(&mut self, w: usize, result: Result<Resp, RpcError>) {
        let interval = self.settings.probe_interval_ms;
        let Some(run) = self.run_mut(w) else { return };
        let to = run.f.to.clone();
        let WorkRun::Verify(v) = &mut run.work else {
            return;
        };
        let name = format!("database at {to} writable");
        match result {
            Ok(Resp::Obs(o)) if o.is_writable_primary() => {
                let lsn = o
                    .current_lsn
                    .map(palisade_core::observe::format_lsn)
                    .unwrap_or_default();
                v.checks.push(Check::pass(name, format!("lsn {lsn}")));
            }
            other => {
                v.last = format!("{other:?}");
                v.tries += 1;
                if v.tries < 10 {
                    return self.ctl_timer_in(w, interval, CtlTimer::VerifyRetry);
                }
                let last = v.last.clone();
                v.checks.push(Check::fail(name, last));
            }
        }
        self.read_next_monitor(w);
    }

    fn read_next_monitor(&mut self, w: usize) {
        let Some(run) = self.run_mut(w) else { return };
        let epoch = run.f.epoch;
        let WorkRun::Verify(v) = &mut run.work else {
            return;
        };
        let next = v.reads.len();
        if next < 2 {
            return self.ctl_call(
                w,
                Endpoint::Witness(next),
                Req::Action(SiteAction::ReadMonitors { epoch }),
                FENCE_RPC_TIMEOUT_MS,
                CtlTag::ReadMonitors(next),
            );
        }
        let to = run.f.to.clone();
        let mut checks = std::mem::take(&mut v.checks);
        checks.push(executor::one_monitor(&to, &v.reads));
        let r = StepResult::Done {
            detail: executor::checks_summary(&checks),
            lsn: None,
            checks,
        };
        self.step_result(w, r);
    }

    fn monitors_read(&mut self, w: usize, site: usize, said: Result<String, String>) {
        let Some(run) = self.run_mut(w) else { return };
        let (from, epoch) = (site_index(&run.f.from), run.f.epoch);
        let read = match said {
            Ok(d) if d == "true" && site == from => {
                return self.ctl_call(
                    w,
                    Endpoint::Witness(site),
                    Req::Action(SiteAction::SetMonitors {
                        epoch,
                        enabled: false,
                    }),
                    FENCE_RPC_TIMEOUT_MS,
                    CtlTag::SwitchOff(site),
                );
            }
            Ok(d) if d == "true" => MonitorRead::On,
            Ok(d) if d == "false" => MonitorRead::Off,
            Ok(_) => MonitorRead::Absent,
            Err(e) => MonitorRead::Unreadable(e),
        };
        self.monitor_read_done(w, site, read);
    }

    fn monitor_read_done(&mut self, w: usize, site: usize, read: MonitorRead) {
        let Some(run) = self.run_mut(w) else { return };
        let WorkRun::Verify(v) = &mut run.work else {
            return;
        };
        if v.reads.len() != site {
            return;
        }
        v.reads.push((site_id(site), read));
        self.read_next_monitor(w);
    }
}
