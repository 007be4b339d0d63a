//! Operator operations (`switchover`, `failover`, `failback`) and
//! maintenance mode (`pause`, `resume`): send the request, then, for an
//! operation, follow it by its epoch until it finishes.
//!
//! The server replies once the operation is committed, not finished, so
//! finishing is observed: [`locate`] finds the operation in a `Status`
//! reply (pure, unit-tested), [`wait_for`] polls until it has an outcome.
//!
//! Every request carries a [`Sent`]: who asks, the request id that makes
//! it exactly-once, and the command line that retries it safely, for the
//! message when its outcome is unknown (exit 9).

use std::time::Duration;

use palisade_api::v1::control_client::ControlClient;
use palisade_api::v1::{
    FailbackRequest, FailoverRequest, FailoverSummary, HistoryRequest, MaintenanceReply,
    OperationReply, PauseRequest, ResumeRequest, StatusReply, StatusRequest, SwitchoverRequest,
};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::client::{Failure, Target};
use crate::durations::{as_ms, human, human_ms};
use crate::json::{self, FailoverJson, MaintenanceReplyJson, OperationJson};
use crate::output::Out;
use crate::rfc3339::rfc3339_millis;
use crate::table;

/// How often a wait asks for `Status`: a step takes hundreds of
/// milliseconds, so this shows each within a fifth of a second without
/// loading the witness.
pub const POLL_EVERY: Duration = Duration::from_millis(200);

/// The outcome a finished operation has when everything went right.
pub const COMPLETED: &str = "completed";

/// Who sends a request that changes the cluster, under which request id.
#[derive(Debug, Clone)]
pub struct Sent<'a> {
    /// `--who`.
    pub who: &'a str,
    /// The request id (new per invocation, or `--request-id`).
    pub request_id: &'a str,
    /// The command line that retries the request (without
    /// `--request-id`), for the unknown-outcome message.
    pub retry: &'a str,
}

/// An operation to request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Planned handover to `to` without data loss.
    Switchover { to: String },
    /// Failover to `to` now; `force` (with the data-loss confirmation)
    /// overrides the lag guard.
    Failover { to: String, force: bool },
    /// Switchover back to the configured primary site.
    Failback,
}

impl Operation {
    /// The RPC's name, for messages.
    pub fn rpc(&self) -> &'static str {
        match self {
            Operation::Switchover { .. } => "switchover",
            Operation::Failover { .. } => "failover",
            Operation::Failback => "failback",
        }
    }

    /// What the operation does, in words, for the confirmation prompt.
    pub fn describe(&self) -> String {
        match self {
            Operation::Switchover { to } => format!(
                "switch the primary over to {to}: the primary is shut down cleanly, {to} \
                 replays its WAL and is promoted, the apps and front doors follow"
            ),
            Operation::Failover { to, force: false } => format!(
                "fail the primary over to {to} now: the primary is fenced, {to} is promoted \
                 without waiting for it to catch up"
            ),
            Operation::Failover { to, force: true } => format!(
                "FORCE a failover to {to} now, even if it lags: committed writes it has not \
                 received are LOST"
            ),
            Operation::Failback => {
                "switch the primary back to the configured primary site (a switchover)".to_owned()
            }
        }
    }

    /// The command line of this operation, for messages (`--yes` included:
    /// a retry is not asked again).
    pub fn command_line(&self) -> String {
        match self {
            Operation::Switchover { to } => format!("palisadectl switchover --to {to} --yes"),
            Operation::Failover { to, force: false } => {
                format!("palisadectl failover --to {to} --yes")
            }
            Operation::Failover { to, force: true } => {
                format!("palisadectl failover --to {to} --force --yes-i-accept-data-loss --yes")
            }
            Operation::Failback => "palisadectl failback --yes".to_owned(),
        }
    }

    /// Sends the request; the reply says the operation is committed (or,
    /// for a retry, that this request began it before).
    pub async fn send(
        &self,
        target: &Target,
        client: &mut ControlClient<Channel>,
        sent: &Sent<'_>,
    ) -> Result<OperationReply, Failure> {
        let who = sent.who.to_owned();
        let request_id = sent.request_id.to_owned();
        let reply = match self {
            Operation::Switchover { to } => {
                client
                    .switchover(SwitchoverRequest {
                        to_site: to.clone(),
                        who,
                        request_id,
                    })
                    .await
            }
            Operation::Failover { to, force } => {
                client
                    .failover(FailoverRequest {
                        to_site: to.clone(),
                        who,
                        force: *force,
                        // The CLI only sets `force` together with the
                        // confirmation flag (clap enforces both ways).
                        accept_data_loss: *force,
                        request_id,
                    })
                    .await
            }
            Operation::Failback => client.failback(FailbackRequest { who, request_id }).await,
        };
        reply
            .map(tonic::Response::into_inner)
            .map_err(|s| target.request_failure(self.rpc(), &s, sent.request_id, sent.retry))
    }
}

/// Where an operation stands in one `Status` reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Located {
    /// It has an outcome.
    Finished(FailoverSummary),
    /// It is under way with the steps so far.
    Running(FailoverSummary),
    /// The reply does not show it, though the answering witness has applied
    /// its epoch: a later operation has replaced it as the last one, so
    /// only `History` can tell how it ended.
    Superseded,
    /// The answering witness has not applied the epoch yet (a lagging
    /// follower), or it is not visible yet: ask again.
    NotYet,
}

/// Finds the operation that raised the cluster to `epoch` in a `Status`
/// reply.
pub fn locate(r: &StatusReply, epoch: u64) -> Located {
    for f in [&r.failover_in_progress, &r.last_failover]
        .into_iter()
        .flatten()
    {
        if f.epoch == epoch {
            return if f.outcome.is_empty() {
                Located::Running(f.clone())
            } else {
                Located::Finished(f.clone())
            };
        }
    }
    let later = [&r.failover_in_progress, &r.last_failover]
        .into_iter()
        .flatten()
        .any(|f| f.epoch > epoch);
    if later {
        Located::Superseded
    } else {
        Located::NotYet
    }
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitEnd {
    /// The operation finished: its summary with the outcome.
    Finished(FailoverSummary),
    /// The deadline passed first.
    TimedOut {
        /// The operation as last seen in progress; `None` if never seen.
        last: Option<FailoverSummary>,
        /// The last error asking for it, if the last attempt failed.
        last_error: Option<String>,
    },
}

/// Polls `Status` every [`POLL_EVERY`] until the operation of `epoch`
/// finishes or `timeout` passes, calling `on_step` once for each step as it
/// is first seen done. Errors asking (no leader, the witness briefly
/// unreachable, a request timeout) are retried until the deadline: the
/// operation runs on the leader whatever this witness is going through.
pub async fn wait_for(
    target: &Target,
    client: &mut ControlClient<Channel>,
    epoch: u64,
    timeout: Duration,
    mut on_step: impl FnMut(&palisade_api::v1::StepTiming) -> Result<(), Failure>,
) -> Result<WaitEnd, Failure> {
    let deadline = Instant::now() + timeout;
    let mut shown = 0;
    let mut last: Option<FailoverSummary> = None;
    let mut last_error: Option<String> = None;
    loop {
        let seen = match tokio::time::timeout_at(deadline, ask(target, client, epoch)).await {
            Err(_elapsed) => None,
            Ok(Ok(seen)) => {
                last_error = None;
                seen
            }
            Ok(Err(e)) => {
                last_error = Some(e);
                None
            }
        };
        if let Some(f) = seen {
            for step in f.steps.iter().skip(shown) {
                on_step(step)?;
            }
            shown = shown.max(f.steps.len());
            if !f.outcome.is_empty() {
                return Ok(WaitEnd::Finished(f));
            }
            last = Some(f);
        }
        if Instant::now() + POLL_EVERY >= deadline {
            return Ok(WaitEnd::TimedOut { last, last_error });
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// One look for the operation of `epoch`: `Status`, and `History` when a
/// later operation has pushed it out of `Status`.
async fn ask(
    target: &Target,
    client: &mut ControlClient<Channel>,
    epoch: u64,
) -> Result<Option<FailoverSummary>, String> {
    let status = client
        .status(StatusRequest {})
        .await
        .map_err(|s| target.rpc_failure("status", &s).message().to_owned())?
        .into_inner();
    match locate(&status, epoch) {
        Located::Finished(f) | Located::Running(f) => Ok(Some(f)),
        Located::NotYet => Ok(None),
        Located::Superseded => {
            let history = client
                .history(HistoryRequest {})
                .await
                .map_err(|s| target.rpc_failure("history", &s).message().to_owned())?
                .into_inner();
            Ok(history
                .operations
                .into_iter()
                .chain(history.in_progress)
                .find(|f| f.epoch == epoch))
        }
    }
}

/// What one operation came to, for the command and for a drill step.
#[derive(Debug, Clone)]
pub struct OperationResult {
    /// The committed reply.
    pub reply: OperationReply,
    /// How the wait ended; `None` when not waited for.
    pub end: Option<WaitEnd>,
}

impl OperationResult {
    /// The stable JSON of this result.
    pub fn to_json(&self) -> OperationJson {
        let mut j = OperationJson::committed(&self.reply);
        match &self.end {
            None => {}
            Some(WaitEnd::Finished(f)) => {
                j.waited = true;
                j.finished = true;
                j.succeeded = Some(f.outcome == COMPLETED);
                j.summary = Some(FailoverJson::from(f));
            }
            Some(WaitEnd::TimedOut { last, .. }) => {
                j.waited = true;
                j.summary = last.as_ref().map(FailoverJson::from);
            }
        }
        j
    }

    /// `None` when the operation succeeded (or was not waited for); else
    /// the failure: finished otherwise ([`Failure::NotSucceeded`]) or not
    /// seen finishing in time ([`Failure::WaitTimedOut`]).
    pub fn failure(&self, timeout: Duration) -> Option<Failure> {
        let name = format!("{} epoch {}", self.reply.kind, self.reply.epoch);
        match &self.end {
            None => None,
            Some(WaitEnd::Finished(f)) if f.outcome == COMPLETED => None,
            Some(WaitEnd::Finished(f)) => Some(Failure::NotSucceeded(format!(
                "{name} did not succeed: {}",
                one_line(&f.outcome)
            ))),
            Some(WaitEnd::TimedOut { last, last_error }) => {
                let seen = match last {
                    Some(f) => format!("last seen in progress with {} step(s) done", f.steps.len()),
                    None => "never seen in progress".to_owned(),
                };
                let error = last_error
                    .as_ref()
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default();
                Some(Failure::WaitTimedOut(format!(
                    "gave up waiting for {name} after {} ({seen}{error}); it may still be running: \
                     follow it with `palisadectl status` or `palisadectl history`",
                    human(timeout)
                )))
            }
        }
    }
}

/// Sends `op` and, unless `timeout` is `None` (`--no-wait`), waits for it,
/// printing progress lines through `out`, each prefixed with `indent`.
pub async fn run_operation(
    target: &Target,
    client: &mut ControlClient<Channel>,
    out: &Out,
    sent: &Sent<'_>,
    op: &Operation,
    timeout: Option<Duration>,
    indent: &str,
) -> Result<OperationResult, Failure> {
    let reply = op.send(target, client, sent).await?;
    let say = |text: String| out.progress(&indented(&text, indent));
    if reply.duplicate {
        say(format!(
            "request {} was already applied: it began {} {} -> {} as epoch {} (nothing new begun; leader {})\n",
            reply.request_id,
            reply.kind,
            table::text_or_none(&reply.from_site),
            table::text_or_none(&reply.to_site),
            reply.epoch,
            reply.leader_id
        ))?;
    } else {
        say(format!(
            "{} {} -> {} committed: epoch {} (leader {})\n",
            table::kind_label(&reply.kind),
            table::text_or_none(&reply.from_site),
            table::text_or_none(&reply.to_site),
            reply.epoch,
            reply.leader_id
        ))?;
    }
    if !reply.data_loss_bound.is_empty() {
        say(format!(
            "WARNING: DATA MAY BE LOST: {}\n",
            table::cell(&reply.data_loss_bound)
        ))?;
    }
    let Some(timeout) = timeout else {
        return Ok(OperationResult { reply, end: None });
    };
    say(format!(
        "waiting for epoch {} to finish (up to {})\n",
        reply.epoch,
        human(timeout)
    ))?;
    let end = wait_for(target, client, reply.epoch, timeout, |step| {
        say(table::progress_step(step))
    })
    .await?;
    if let WaitEnd::Finished(f) = &end {
        let took = f
            .finished_at_ms
            .map(|end| human_ms(end.saturating_sub(f.started_at_ms)))
            .unwrap_or_else(|| "an unknown time".to_owned());
        say(format!(
            "{} epoch {} {} in {took}\n",
            table::kind_label(&f.kind),
            f.epoch,
            table::clip(&table::cell(&f.outcome), table::MAX_LINE),
        ))?;
    }
    Ok(OperationResult {
        reply,
        end: Some(end),
    })
}

/// `switchover`, `failover`, `failback`: run the operation, print the
/// result, map it to an exit code.
pub async fn command(
    target: &Target,
    client: &mut ControlClient<Channel>,
    out: &Out,
    sent: &Sent<'_>,
    op: &Operation,
    timeout: Option<Duration>,
) -> Result<(), Failure> {
    let result = run_operation(target, client, out, sent, op, timeout, "").await?;
    if out.json() {
        out.emit(&json::to_json(&result.to_json()))?;
    } else if timeout.is_none() {
        out.emit(&format!(
            "not waiting (--no-wait): follow epoch {} with `palisadectl status` or `palisadectl watch`\n",
            result.reply.epoch
        ))?;
    }
    match timeout.and_then(|t| result.failure(t)) {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

/// `pause`: automatic failover off, for `for_` or until `resume`.
/// Without `force`, a cluster already paused is refused (exit 5), naming
/// who paused it.
pub async fn pause(
    target: &Target,
    client: &mut ControlClient<Channel>,
    sent: &Sent<'_>,
    for_: Option<Duration>,
    reason: &str,
    force: bool,
) -> Result<MaintenanceReply, Failure> {
    let reply = client
        .pause(PauseRequest {
            who: sent.who.to_owned(),
            reason: reason.to_owned(),
            for_ms: for_.map(as_ms),
            request_id: sent.request_id.to_owned(),
            force,
        })
        .await
        .map_err(|s| target.request_failure("pause", &s, sent.request_id, sent.retry))?
        .into_inner();
    Ok(reply)
}

/// `resume`: automatic failover on again.
pub async fn resume(
    target: &Target,
    client: &mut ControlClient<Channel>,
    sent: &Sent<'_>,
) -> Result<MaintenanceReply, Failure> {
    let reply = client
        .resume(ResumeRequest {
            who: sent.who.to_owned(),
            request_id: sent.request_id.to_owned(),
        })
        .await
        .map_err(|s| target.request_failure("resume", &s, sent.request_id, sent.retry))?
        .into_inner();
    Ok(reply)
}

/// Prints a `pause` or `resume` reply.
pub fn print_maintenance(out: &Out, r: &MaintenanceReply) -> Result<(), Failure> {
    if out.json() {
        return out.emit(&json::to_json(&MaintenanceReplyJson::from(r)));
    }
    out.emit(&maintenance_text(r))
}

/// `pause` and `resume` for people.
pub fn maintenance_text(r: &MaintenanceReply) -> String {
    if !r.duplicate {
        return maintenance_state(r);
    }
    let now = match &r.maintenance {
        Some(_) => maintenance_state(r),
        None => format!(
            "not paused: automatic failover is on (leader {})\n",
            r.leader_id
        ),
    };
    format!(
        "request {} was already applied: nothing changed now; the cluster is now:\n{now}",
        r.request_id
    )
}

fn maintenance_state(r: &MaintenanceReply) -> String {
    match &r.maintenance {
        Some(m) => format!(
            "{} (leader {})\nautomatic failover is off; operations are refused until `palisadectl resume`{}\n",
            table::maintenance_line(m),
            r.leader_id,
            m.until_ms
                .map(|t| format!(" or {}", rfc3339_millis(t)))
                .unwrap_or_default()
        ),
        None => format!(
            "resumed: automatic failover is on again (leader {})\n",
            r.leader_id
        ),
    }
}

fn indented(text: &str, indent: &str) -> String {
    text.lines().map(|l| format!("{indent}{l}\n")).collect()
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use palisade_api::v1::Maintenance;

    fn running(epoch: u64) -> FailoverSummary {
        let mut f = fixtures::finished_failover();
        f.epoch = epoch;
        f.outcome.clear();
        f.finished_at_ms = None;
        f.steps.truncate(2);
        f
    }

    #[test]
    fn locate_finds_the_epoch_running_or_finished() {
        let mut r = fixtures::failed_over();
        assert_eq!(
            locate(&r, 3),
            Located::Finished(fixtures::finished_failover())
        );
        r.failover_in_progress = Some(running(4));
        r.epoch = 4;
        assert_eq!(locate(&r, 4), Located::Running(running(4)));
        // Epoch 3 is still the last finished one.
        assert!(matches!(locate(&r, 3), Located::Finished(_)));
    }

    #[test]
    fn locate_tells_a_lagging_witness_from_a_superseded_operation() {
        let r = fixtures::failed_over();
        // This witness has not applied epoch 4 yet.
        assert_eq!(locate(&r, 4), Located::NotYet);
        // Epoch 2 finished before epoch 3 replaced it in Status.
        assert_eq!(locate(&r, 2), Located::Superseded);
        let mut r = fixtures::status();
        r.last_failover = None;
        assert_eq!(locate(&r, 1), Located::NotYet);
    }

    fn result(end: Option<WaitEnd>) -> OperationResult {
        OperationResult {
            reply: OperationReply {
                epoch: 4,
                kind: "switchover".to_owned(),
                from_site: "a".to_owned(),
                to_site: "b".to_owned(),
                leader_id: 1,
                data_loss_bound: String::new(),
                ..Default::default()
            },
            end,
        }
    }

    #[test]
    fn completed_is_success_anything_else_is_exit_6() {
        let t = Duration::from_secs(120);
        let done = fixtures::finished_failover();
        assert_eq!(result(None).failure(t), None);
        assert_eq!(
            result(Some(WaitEnd::Finished(done.clone()))).failure(t),
            None
        );
        for outcome in [
            "aborted: standby b did not catch up within 10000 ms",
            "completed_with_failed_checks: webhook: HTTP 500",
        ] {
            let mut f = done.clone();
            f.outcome = outcome.to_owned();
            let failure = result(Some(WaitEnd::Finished(f)))
                .failure(t)
                .expect("failure");
            assert_eq!(failure.exit_code(), 6);
            assert_eq!(
                failure.message(),
                format!("switchover epoch 4 did not succeed: {outcome}")
            );
        }
    }

    #[test]
    fn a_timed_out_wait_is_exit_7_and_says_what_was_seen() {
        let t = Duration::from_secs(120);
        let f = result(Some(WaitEnd::TimedOut {
            last: Some(running(4)),
            last_error: Some("status request failed: refused".to_owned()),
        }))
        .failure(t)
        .expect("failure");
        assert_eq!(f.exit_code(), 7);
        assert!(
            f.message().starts_with(
                "gave up waiting for switchover epoch 4 after 2m \
                 (last seen in progress with 2 step(s) done; last error: status request failed: refused); \
                 it may still be running"
            ),
            "{}",
            f.message()
        );
        let f = result(Some(WaitEnd::TimedOut {
            last: None,
            last_error: None,
        }))
        .failure(t)
        .expect("failure");
        assert!(f.message().contains("(never seen in progress)"), "{f:?}");
    }

    #[test]
    fn operation_json_carries_the_reply_and_the_final_summary() {
        let v: serde_json::Value = serde_json::from_str(&json::to_json(
            &result(Some(WaitEnd::Finished(fixtures::finished_failover()))).to_json(),
        ))
        .expect("json");
        assert_eq!(v["epoch"], 4);
        assert_eq!(v["kind"], "switchover");
        assert!(v["data_loss_bound"].is_null());
        assert_eq!(v["waited"], true);
        assert_eq!(v["finished"], true);
        assert_eq!(v["succeeded"], true);
        assert_eq!(v["summary"]["duration_ms"], 4230);

        let v: serde_json::Value =
            serde_json::from_str(&json::to_json(&result(None).to_json())).expect("json");
        assert_eq!(v["waited"], false);
        assert!(v["succeeded"].is_null() && v["summary"].is_null());
    }

    #[test]
    fn maintenance_text_names_who_until_when_and_why() {
        let paused = MaintenanceReply {
            maintenance: Some(Maintenance {
                by: "alice@ops".to_owned(),
                reason: "DR test".to_owned(),
                since_ms: 1_700_000_000_000,
                until_ms: Some(1_700_007_200_000),
            }),
            leader_id: 2,
            ..Default::default()
        };
        assert_eq!(
            maintenance_text(&paused),
            "PAUSED by alice@ops until 2023-11-15T00:13:20.000Z: DR test (leader 2)\n\
             automatic failover is off; operations are refused until `palisadectl resume` \
             or 2023-11-15T00:13:20.000Z\n"
        );
        let resumed = MaintenanceReply {
            maintenance: None,
            leader_id: 2,
            ..Default::default()
        };
        assert_eq!(
            maintenance_text(&resumed),
            "resumed: automatic failover is on again (leader 2)\n"
        );
    }
}
