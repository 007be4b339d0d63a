//! `drill run`: executes a validated [`Plan`] phase by phase against one
//! witness, then records the drill in the cluster history and writes the
//! reports.
//!
//! Nothing here ends the process half-way: a failed step fails its phase,
//! the remaining phases are skipped, and the report is still written. Only
//! a report that cannot be written is worse than a failed drill (exit 1).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use palisade_api::v1::control_client::ControlClient;
use palisade_api::v1::{
    AnnotateRequest, DrillPhase, DrillSummary, Maintenance, RecordDrillRequest, StatusReply,
    StatusRequest,
};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tonic::transport::Channel;

use super::checks::{evaluate, CheckResult};
use super::plan::{Check, Phase, Plan, Step};
use super::report::{
    report_paths, write_reports, CheckReport, DrillReport, PhaseReport, StepReport, FAILED, PASSED,
    SKIPPED,
};
use crate::client::{Failure, Target};
use crate::durations::{human, human_ms};
use crate::json::{self, OperationJson};
use crate::operations::{self, Operation, Sent};
use crate::output::{warn, Out};
use crate::request_id::{new_request_id, shell_quote};
use crate::table;

/// How often `wait_rejoined` and the checks ask for `Status`: they wait
/// for seconds to minutes, so twice a second is plenty.
const RECHECK_EVERY: Duration = Duration::from_millis(500);

/// Longest outcome text sent to RecordDrill per phase; the reports keep
/// the full text.
const MAX_RECORDED_OUTCOME: usize = 1024;

/// Indent of a step's own lines under its heading.
const STEP_INDENT: &str = "     ";

/// How `drill run` was asked to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The plan file as given, for the report.
    pub plan_file: String,
    /// Do not wait for Enter at `manual` steps.
    pub yes: bool,
    /// Ask for Enter before each phase after the first.
    pub pause_between: bool,
    /// Where the reports go.
    pub report_dir: PathBuf,
    /// How long an operation step waits unless it says `timeout`.
    pub wait_timeout: Duration,
}

/// What one step came to.
struct StepDone {
    passed: bool,
    detail: String,
    operation: Option<OperationJson>,
}

impl StepDone {
    fn passed(detail: impl Into<String>) -> Self {
        Self {
            passed: true,
            detail: detail.into(),
            operation: None,
        }
    }

    fn failed(detail: impl Into<String>) -> Self {
        Self {
            passed: false,
            detail: detail.into(),
            operation: None,
        }
    }
}

/// One drill run's connections and settings.
struct Runner<'a> {
    target: &'a Target,
    client: ControlClient<Channel>,
    out: &'a Out,
    who: &'a str,
    opts: &'a RunOptions,
    /// Set by the first Ctrl-C: every later step fails at once.
    interrupted: bool,
    /// The pause a `pause` step of this drill put in force (or may have:
    /// its answer was lost) and no `resume` step ended. A drill that fails
    /// ends it again ([`Runner::undo_pause`]), or says that it could not.
    paused: Option<OwnPause>,
}

/// A pause this drill set: how to recognise it in `Status`.
struct OwnPause {
    reason: String,
    /// The leader's `since_ms` of the pause; `None` when the pause's answer
    /// was lost (then `who` and `reason` recognise it).
    since_ms: Option<i64>,
}

/// Runs `plan`; exit 0 when every phase passed, 6 when one failed.
pub async fn run(
    plan: &Plan,
    target: &Target,
    out: &Out,
    who: &str,
    opts: &RunOptions,
) -> Result<(), Failure> {
    check_report_dir(&opts.report_dir)?;
    let client = target.connect().await?;
    // SIGINT, handled for the whole run: Ctrl-C fails the current step and
    // skips the rest instead of killing palisadectl before it writes the
    // report.
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|e| Failure::Output(format!("cannot handle Ctrl-C: {e}")))?;
    let mut runner = Runner {
        target,
        client,
        out,
        who,
        opts,
        interrupted: false,
        paused: None,
    };
    let started_at_ms = now_ms();
    let started = Instant::now();
    runner.say(&format!(
        "drill {}: {} phase(s) from {}, run by {who} via {}\n",
        plan.name,
        plan.phases.len(),
        opts.plan_file,
        target.shown()
    ));

    let total = plan.phases.len();
    let mut phases = Vec::with_capacity(total);
    let mut failure: Option<String> = None;
    for (i, phase) in plan.phases.iter().enumerate() {
        let n = i + 1;
        if failure.is_none() && opts.pause_between && i > 0 {
            if let Err(why) = runner.confirm_next(n, total, phase, &mut interrupt).await {
                failure = Some(format!("stopped before phase {n} ({}): {why}", phase.name));
            }
        }
        if failure.is_some() {
            phases.push(skipped_phase(n, phase));
            continue;
        }
        let report = runner.run_phase(n, total, phase, &mut interrupt).await;
        if report.outcome != PASSED {
            failure = Some(format!(
                "phase {n} ({}): {}",
                phase.name,
                report
                    .outcome
                    .strip_prefix("failed: ")
                    .unwrap_or(&report.outcome)
            ));
        }
        phases.push(report);
    }

    // A failed drill does not leave automatic failover off behind it.
    if let Some(why) = failure.take() {
        failure = Some(match runner.undo_pause().await {
            Some(note) => format!("{why}; {note}"),
            None => why,
        });
    }

    let finished_at_ms = now_ms().max(started_at_ms);
    let passed = failure.is_none();
    let outcome = match &failure {
        None => PASSED.to_owned(),
        Some(why) => format!("failed: {why}"),
    };
    runner.say(&format!(
        "\ndrill {} {} in {}\n",
        plan.name,
        table::clip(&outcome, table::MAX_LINE),
        human_ms(i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX))
    ));

    let summary = DrillSummary {
        name: plan.name.clone(),
        who: who.to_owned(),
        started_at_ms,
        finished_at_ms,
        outcome: clip_bytes(&outcome, MAX_RECORDED_OUTCOME),
        phases: phases
            .iter()
            .map(|p| DrillPhase {
                name: p.name.clone(),
                outcome: clip_bytes(&p.outcome, MAX_RECORDED_OUTCOME),
                duration_ms: p.duration_ms,
            })
            .collect(),
    };
    let request_id = new_request_id();
    let record_error = match runner
        .client
        .record_drill(RecordDrillRequest {
            drill: Some(summary),
            request_id: request_id.clone(),
        })
        .await
    {
        Ok(reply) => {
            runner.say(&format!(
                "recorded in the cluster history (leader {})\n",
                reply.into_inner().leader_id
            ));
            None
        }
        Err(status) => {
            // Unknown outcome: it may still be recorded; say how to check
            // (the record cannot be re-sent by hand, so no retry advice).
            let why = match target.request_failure("record_drill", &status, &request_id, "") {
                Failure::OutcomeUnknown(_) => format!(
                    "record_drill request {request_id} to {} got no answer; it may still be \
                     recorded: check with `palisadectl history --request {request_id}`",
                    target.shown()
                ),
                other => other.message().to_owned(),
            };
            warn(&format!(
                "could not record the drill in the cluster history ({why}); the report is still written"
            ));
            Some(why)
        }
    };

    let (md, json_path) = report_paths(&opts.report_dir, &plan.name, started_at_ms);
    let report = DrillReport {
        name: plan.name.clone(),
        description: plan.description.clone(),
        plan: opts.plan_file.clone(),
        who: who.to_owned(),
        endpoint: target.shown().to_owned(),
        started_at_ms,
        finished_at_ms,
        duration_ms: finished_at_ms - started_at_ms,
        outcome: outcome.clone(),
        passed,
        recorded: record_error.is_none(),
        record_error,
        report_markdown: md.display().to_string(),
        report_json: json_path.display().to_string(),
        phases,
    };
    write_reports(&report).map_err(|why| {
        Failure::Output(format!(
            "drill {} {}, but {why}",
            plan.name,
            if passed { "passed" } else { "failed" }
        ))
    })?;
    runner.say(&format!(
        "report: {} and {}\n",
        report.report_markdown, report.report_json
    ));
    if out.json() {
        out.emit(&json::to_json(&report))?;
    }
    match failure {
        None => Ok(()),
        Some(why) => Err(Failure::NotSucceeded(format!(
            "drill {} failed: {why} (report: {})",
            plan.name, report.report_markdown
        ))),
    }
}

/// A report directory that does not exist is a usage error found before
/// the drill changes anything, not after it.
fn check_report_dir(dir: &std::path::Path) -> Result<(), Failure> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Failure::Usage(format!(
            "invalid --report-dir {}: not a directory",
            dir.display()
        ))),
        Err(e) => Err(Failure::Usage(format!(
            "invalid --report-dir {}: {e}",
            dir.display()
        ))),
    }
}

fn skipped_phase(n: usize, phase: &Phase) -> PhaseReport {
    PhaseReport {
        index: n,
        name: phase.name.to_string(),
        outcome: SKIPPED.to_owned(),
        started_at_ms: None,
        duration_ms: 0,
        steps: phase
            .steps
            .iter()
            .enumerate()
            .map(|(j, s)| skipped_step(j + 1, s))
            .collect(),
        checks: phase.checks.iter().map(|c| skipped_check(*c)).collect(),
    }
}

fn skipped_step(index: usize, s: &Step) -> StepReport {
    StepReport {
        index,
        action: s.action().to_owned(),
        description: s.describe(),
        outcome: SKIPPED.to_owned(),
        detail: String::new(),
        started_at_ms: None,
        duration_ms: 0,
        operation: None,
    }
}

fn skipped_check(c: Check) -> CheckReport {
    CheckReport {
        check: c.as_str().to_owned(),
        outcome: SKIPPED.to_owned(),
        detail: String::new(),
    }
}

impl Runner<'_> {
    /// Progress, best effort: a drill half-way through a failover must not
    /// stop because a terminal went away.
    fn say(&self, text: &str) {
        let _ = self.out.progress(text);
    }

    async fn run_phase(
        &mut self,
        n: usize,
        total: usize,
        phase: &Phase,
        interrupt: &mut Signal,
    ) -> PhaseReport {
        let started_at_ms = now_ms();
        let started = Instant::now();
        self.say(&format!("\nphase {n}/{total}: {}\n", phase.name));
        let mut steps = Vec::with_capacity(phase.steps.len());
        let mut failed: Option<String> = None;
        for (j, step) in phase.steps.iter().enumerate() {
            if failed.is_some() {
                steps.push(skipped_step(j + 1, step));
                continue;
            }
            self.say(&format!("  {}. {}\n", j + 1, step.describe()));
            let step_started_at_ms = now_ms();
            let step_started = Instant::now();
            let done = self.run_step(step, interrupt).await;
            let took = elapsed_ms(step_started);
            self.say(&format!(
                "{STEP_INDENT}{} ({}){}\n",
                if done.passed { PASSED } else { "FAILED" },
                human_ms(i64::try_from(took).unwrap_or(i64::MAX)),
                if done.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", one_line(&done.detail))
                }
            ));
            if !done.passed {
                failed = Some(format!(
                    "step {} ({}): {}",
                    j + 1,
                    step.action(),
                    one_line(&done.detail)
                ));
            }
            steps.push(StepReport {
                index: j + 1,
                action: step.action().to_owned(),
                description: step.describe(),
                outcome: if done.passed { PASSED } else { FAILED }.to_owned(),
                detail: done.detail,
                started_at_ms: Some(step_started_at_ms),
                duration_ms: took,
                operation: done.operation,
            });
        }
        let checks = if failed.is_some() || phase.checks.is_empty() {
            phase.checks.iter().map(|c| skipped_check(*c)).collect()
        } else {
            let results = self.run_checks(phase, interrupt).await;
            let failing: Vec<&CheckResult> = results.iter().filter(|r| !r.passed).collect();
            if let Some(first) = failing.first() {
                failed = Some(format!(
                    "check(s) {} failed: {}",
                    failing
                        .iter()
                        .map(|r| r.check.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    first.detail
                ));
            }
            results
                .into_iter()
                .map(|r| CheckReport {
                    check: r.check.as_str().to_owned(),
                    outcome: if r.passed { PASSED } else { FAILED }.to_owned(),
                    detail: r.detail,
                })
                .collect()
        };
        let duration_ms = elapsed_ms(started);
        let outcome = match failed {
            None => PASSED.to_owned(),
            Some(why) => format!("failed: {why}"),
        };
        self.say(&format!(
            "phase {n}/{total}: {} {} ({})\n",
            phase.name,
            table::clip(&outcome, table::MAX_LINE),
            human_ms(i64::try_from(duration_ms).unwrap_or(i64::MAX))
        ));
        PhaseReport {
            index: n,
            name: phase.name.to_string(),
            outcome,
            started_at_ms: Some(started_at_ms),
            duration_ms,
            steps,
            checks,
        }
    }

    /// Runs one step unless Ctrl-C comes first (then the step, and with it
    /// a `run` command's whole process group, is dropped).
    async fn run_step(&mut self, step: &Step, interrupt: &mut Signal) -> StepDone {
        if self.interrupted {
            return StepDone::failed("interrupted (Ctrl-C)");
        }
        let done = tokio::select! {
            done = self.step_inner(step) => Some(done),
            _ = interrupt.recv() => None,
        };
        done.unwrap_or_else(|| {
            self.interrupted = true;
            StepDone::failed(
                "interrupted (Ctrl-C); an operation already committed goes on on the leader",
            )
        })
    }

    async fn step_inner(&mut self, step: &Step) -> StepDone {
        let target = self.target;
        let who = self.who;
        // A new request id per step: each step is one operator request.
        let request_id = new_request_id();
        match step {
            Step::Annotate(text) => match self
                .client
                .annotate(AnnotateRequest {
                    text: text.clone(),
                    author: who.to_owned(),
                    request_id: request_id.clone(),
                })
                .await
            {
                Ok(r) => StepDone::passed(table::annotate_text(&r.into_inner()).trim_end()),
                Err(s) => StepDone::failed(
                    target
                        .request_failure(
                            "annotate",
                            &s,
                            &request_id,
                            &format!("palisadectl annotate {}", shell_quote(text)),
                        )
                        .message(),
                ),
            },
            Step::Pause { for_, reason } => {
                let retry = format!(
                    "palisadectl pause --for {} --reason {}",
                    human(*for_).replace(' ', ""),
                    shell_quote(reason)
                );
                let sent = Sent {
                    who,
                    request_id: &request_id,
                    retry: &retry,
                };
                match operations::pause(target, &mut self.client, &sent, Some(*for_), reason, false)
                    .await
                {
                    Ok(r) => {
                        self.paused = r.maintenance.as_ref().map(|m| OwnPause {
                            reason: reason.clone(),
                            since_ms: Some(m.since_ms),
                        });
                        StepDone::passed(
                            r.maintenance
                                .as_ref()
                                .map_or_else(|| "not paused".to_owned(), table::maintenance_line),
                        )
                    }
                    Err(f) => {
                        if matches!(f, Failure::OutcomeUnknown(_)) {
                            self.paused = Some(OwnPause {
                                reason: reason.clone(),
                                since_ms: None,
                            });
                        }
                        StepDone::failed(f.message())
                    }
                }
            }
            Step::Resume => match operations::resume(
                target,
                &mut self.client,
                &Sent {
                    who,
                    request_id: &request_id,
                    retry: "palisadectl resume",
                },
            )
            .await
            {
                Ok(r) => {
                    self.paused = None;
                    StepDone::passed(format!("resumed (leader {})", r.leader_id))
                }
                Err(f) => StepDone::failed(f.message()),
            },
            Step::Switchover { to, timeout } => {
                let op = Operation::Switchover { to: to.clone() };
                self.operation(&op, *timeout).await
            }
            Step::Failover { to, timeout } => {
                let op = Operation::Failover {
                    to: to.clone(),
                    force: false,
                };
                self.operation(&op, *timeout).await
            }
            Step::Failback { timeout } => self.operation(&Operation::Failback, *timeout).await,
            Step::WaitRejoined(within) => self.wait_rejoined(*within).await,
            Step::Run { command, timeout } => run_command(command, *timeout, self.out).await,
            Step::Manual(text) => self.manual(text).await,
        }
    }

    async fn operation(&mut self, op: &Operation, timeout: Option<Duration>) -> StepDone {
        let timeout = timeout.unwrap_or(self.opts.wait_timeout);
        let indent = format!("{STEP_INDENT}  ");
        let request_id = new_request_id();
        let retry = op.command_line();
        let sent = Sent {
            who: self.who,
            request_id: &request_id,
            retry: &retry,
        };
        match operations::run_operation(
            self.target,
            &mut self.client,
            self.out,
            &sent,
            op,
            Some(timeout),
            &indent,
        )
        .await
        {
            Err(f) => StepDone::failed(f.message()),
            Ok(result) => {
                let json = result.to_json();
                let detail = match result.failure(timeout) {
                    Some(f) => f.message().to_owned(),
                    None => format!(
                        "{} epoch {} completed{}",
                        result.reply.kind,
                        result.reply.epoch,
                        json.summary
                            .as_ref()
                            .and_then(|s| s.duration_ms)
                            .map(|ms| format!(" in {}", human_ms(ms)))
                            .unwrap_or_default()
                    ),
                };
                StepDone {
                    passed: json.succeeded == Some(true),
                    detail,
                    operation: Some(json),
                }
            }
        }
    }

    /// After a failed drill: ends the pause this drill set and did not end,
    /// if it is still the one in force. Returns what became of it, for the
    /// drill's outcome and last line; `None` when the drill set none, or
    /// it has ended already.
    async fn undo_pause(&mut self) -> Option<String> {
        let own = self.paused.take()?;
        let resume = format!("palisadectl --endpoint {} resume", self.target.shown());
        let deadline = Instant::now() + self.target.timeout();
        // Without a status this drill's pause may still be in force: resume.
        if let Ok(r) = self.status(deadline).await {
            let ours = |m: &Maintenance| {
                m.by == self.who
                    && m.reason == own.reason
                    && own.since_ms.is_none_or(|s| s == m.since_ms)
            };
            match r.maintenance {
                None => return None,
                Some(m) if !ours(&m) => {
                    let until = paused_until(m.until_ms);
                    return Some(format!(
                        "the cluster is still paused by {}{until} (not by this drill, so left as \
                         it is); resume it with `{resume}`",
                        m.by
                    ));
                }
                Some(_) => {}
            }
        }
        let request_id = new_request_id();
        let sent = Sent {
            who: self.who,
            request_id: &request_id,
            retry: &resume,
        };
        let note = match operations::resume(self.target, &mut self.client, &sent).await {
            Ok(_) => "the drill resumed the cluster it had paused".to_owned(),
            Err(f @ Failure::OutcomeUnknown(_)) => format!(
                "the cluster may still be paused (the drill's resume got no answer: {}); \
                 check with `palisadectl --endpoint {} status` and resume it with `{resume}`",
                f.message(),
                self.target.shown()
            ),
            Err(f) => format!(
                "the cluster is still paused by this drill (its resume failed: {}); resume it \
                 with `{resume}`",
                f.message()
            ),
        };
        self.say(&format!("\n{note}\n"));
        Some(note)
    }

    /// Waits until the cluster no longer records that the standby must
    /// rejoin and it is seen streaming.
    async fn wait_rejoined(&mut self, within: Duration) -> StepDone {
        let deadline = Instant::now() + within;
        let started = Instant::now();
        let mut last: String;
        loop {
            match self.status(deadline).await {
                Ok(r) => {
                    let streaming = evaluate(Check::StandbyStreaming, &r);
                    if streaming.passed {
                        return StepDone::passed(format!(
                            "standby {} rejoined and streams (after {})",
                            r.standby_site,
                            human_ms(i64::try_from(elapsed_ms(started)).unwrap_or(i64::MAX))
                        ));
                    }
                    last = streaming.detail;
                }
                Err(e) => last = e,
            }
            if Instant::now() + RECHECK_EVERY >= deadline {
                return StepDone::failed(format!(
                    "the standby has not rejoined within {}: {last}",
                    human(within)
                ));
            }
            tokio::time::sleep(RECHECK_EVERY).await;
        }
    }

    /// Evaluates the phase's checks until all pass or its
    /// `checks_timeout` passes; returns the last evaluation.
    async fn run_checks(&mut self, phase: &Phase, interrupt: &mut Signal) -> Vec<CheckResult> {
        let deadline = Instant::now() + phase.checks_timeout;
        let results = loop {
            let results: Vec<CheckResult> = match self.status(deadline).await {
                Ok(r) => phase.checks.iter().map(|c| evaluate(*c, &r)).collect(),
                Err(e) => phase
                    .checks
                    .iter()
                    .map(|c| CheckResult {
                        check: *c,
                        passed: false,
                        detail: format!("no status: {e}"),
                    })
                    .collect(),
            };
            let all = results.iter().all(|r| r.passed);
            if all || self.interrupted || Instant::now() + RECHECK_EVERY >= deadline {
                break results;
            }
            tokio::select! {
                () = tokio::time::sleep(RECHECK_EVERY) => {}
                _ = interrupt.recv() => self.interrupted = true,
            }
        };
        for r in &results {
            self.say(&format!(
                "  check {:<17} {:<6}  {}\n",
                r.check.as_str(),
                if r.passed { "ok" } else { "FAILED" },
                table::clip(&table::cell(&r.detail), table::MAX_LINE)
            ));
        }
        results
    }

    /// One `Status`, bounded by `deadline` as well as the request timeout.
    async fn status(&mut self, deadline: Instant) -> Result<StatusReply, String> {
        let target = self.target;
        match tokio::time::timeout_at(deadline, self.client.status(StatusRequest {})).await {
            Err(_) => Err("status did not answer in time".to_owned()),
            Ok(Err(s)) => Err(target.rpc_failure("status", &s).message().to_owned()),
            Ok(Ok(r)) => Ok(r.into_inner()),
        }
    }

    /// A `manual` step: the operator does it and presses Enter, or types
    /// `fail` and a reason.
    async fn manual(&mut self, text: &str) -> StepDone {
        if self.opts.yes {
            return StepDone::passed("not waited for (--yes)");
        }
        self.say(&format!(
            "{STEP_INDENT}>>> {text}\n{STEP_INDENT}press Enter when done, or type `fail` and a reason: "
        ));
        match read_line().await {
            Err(e) => StepDone::failed(format!("cannot read the confirmation: {e}")),
            Ok(None) => StepDone::failed(
                "stdin closed before the step was confirmed (use --yes to run unattended)",
            ),
            Ok(Some(line)) => {
                let line = line.trim();
                // `fail` alone or followed by a reason; "failover done" is a note.
                let failed = if line == "fail" {
                    Some("")
                } else {
                    line.strip_prefix("fail ")
                };
                match failed {
                    Some(why) => StepDone::failed(format!(
                        "marked failed by {}{}",
                        self.who,
                        match why.trim() {
                            "" => String::new(),
                            why => format!(": {why}"),
                        }
                    )),
                    None if line.is_empty() => {
                        StepDone::passed(format!("confirmed by {}", self.who))
                    }
                    None => StepDone::passed(format!("confirmed by {}: {line}", self.who)),
                }
            }
        }
    }

    /// `--pause-between`: Enter goes on; `stop`, end of input or Ctrl-C
    /// end the drill here.
    async fn confirm_next(
        &mut self,
        n: usize,
        total: usize,
        phase: &Phase,
        interrupt: &mut Signal,
    ) -> Result<(), String> {
        self.say(&format!(
            "\nnext: phase {n}/{total} ({}). Press Enter to start it, or type `stop` to end the drill here: ",
            phase.name
        ));
        let answer = tokio::select! {
            line = read_line() => line,
            _ = interrupt.recv() => {
                self.interrupted = true;
                Ok(Some("stop (Ctrl-C)".to_owned()))
            }
        };
        match answer {
            Err(e) => Err(format!("cannot read the confirmation: {e}")),
            Ok(None) => Err("stdin closed".to_owned()),
            Ok(Some(line)) if line.trim().is_empty() => Ok(()),
            Ok(Some(line)) => Err(format!("the operator answered {:?}", line.trim())),
        }
    }
}

/// Runs `command` with `sh -c` in its own process group, stdin closed; it
/// passes when it exits 0 within `timeout`. On timeout, or when the step
/// is dropped (Ctrl-C), the whole group is killed, so a script's children
/// do not outlive the drill.
async fn run_command(command: &str, timeout: Duration, out: &Out) -> StepDone {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    if out.json() {
        // stdout carries only the JSON report.
        cmd.stdout(std::io::stderr());
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return StepDone::failed(format!("cannot start sh: {e}")),
    };
    let mut group = GroupKill(child.id());
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => {
            group.0 = None;
            if status.success() {
                StepDone::passed("exited 0")
            } else {
                StepDone::failed(format!("{status}"))
            }
        }
        Ok(Err(e)) => StepDone::failed(format!("cannot wait for the command: {e}")),
        Err(_) => StepDone::failed(format!("did not finish within {}; killed", human(timeout))),
    }
}

/// Kills a process group when dropped, unless disarmed (`.0 = None`).
struct GroupKill(Option<u32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            // The group may be gone already; nothing to do about an error.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// One line from stdin, `None` at end of input. Read on a plain thread,
/// not tokio's blocking pool: the runtime waits for its blocking tasks at
/// exit, and a read nobody answers would hang palisadectl after Ctrl-C.
async fn read_line() -> std::io::Result<Option<String>> {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = std::io::stdin()
            .read_line(&mut line)
            .map(|n| (n > 0).then_some(line));
        let _ = tx.send(read);
    });
    rx.await
        .unwrap_or_else(|_| Err(std::io::Error::other("the stdin reader went away")))
}

/// `, until <time>` for a pause that ends on its own, empty for one that
/// lasts until resumed.
fn paused_until(until_ms: Option<i64>) -> String {
    until_ms
        .map(|u| format!(" until {}", crate::rfc3339::rfc3339_millis(u)))
        .unwrap_or_default()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `s` cut to at most `max` bytes on a char boundary, `…` marking a cut.
fn clip_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_bytes_cuts_on_a_char_boundary() {
        assert_eq!(clip_bytes("abc", 3), "abc");
        let cut = clip_bytes(&"é".repeat(10), 8);
        assert!(cut.len() <= 8, "{cut}");
        assert!(cut.ends_with('…'));
    }

    #[tokio::test]
    async fn run_command_passes_on_exit_0_and_fails_otherwise() {
        let out = Out {
            format: crate::Format::Json,
        };
        let t = Duration::from_secs(10);
        assert!(run_command("true", t, &out).await.passed);
        let failed = run_command("exit 3", t, &out).await;
        assert!(!failed.passed);
        assert_eq!(failed.detail, "exit status: 3");
    }

    /// Whether `pid` is gone or a zombie (killed, not yet reaped).
    fn dead(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            // The state follows the parenthesised command name.
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        }
    }

    #[tokio::test]
    async fn run_command_kills_the_whole_group_on_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("grandchild.pid");
        let out = Out {
            format: crate::Format::Json,
        };
        // A background grandchild that would outlive a kill of `sh` alone;
        // the pid file is written before the command blocks in `wait`.
        let cmd = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
        let done = run_command(&cmd, Duration::from_millis(500), &out).await;
        assert!(!done.passed);
        assert_eq!(done.detail, "did not finish within 500ms; killed");
        let pid = std::fs::read_to_string(&pidfile).expect("pid file");
        let pid = pid.trim();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !dead(pid) {
            assert!(
                Instant::now() < deadline,
                "grandchild {pid} still alive 5 s after the timeout"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
