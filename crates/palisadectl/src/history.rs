//! `history` for people: the finished operations, the one in progress,
//! the recorded drills, pauses, resumes and notes; and `history --request
//! ID`, what one request did.

use palisade_api::v1::control_client::ControlClient;
use palisade_api::v1::{DrillSummary, FailoverSummary, HistoryReply, HistoryRequest};
use tonic::transport::Channel;

use crate::client::{Failure, Target};
use crate::durations::human_ms;
use crate::json::{self, RequestLookupJson};
use crate::output::Out;
use crate::rfc3339::rfc3339_millis;
use crate::table::{
    cell, clip, kind_label, millis, progress_step, render_table, text_or_none, MAX_LINE,
};

/// Shown as the outcome of the operation in progress.
const IN_PROGRESS: &str = "in progress";

/// The `history` table: operations oldest first (the one in progress
/// last), then rejoins, then drills. With `steps`, each operation's steps and each
/// drill's phases follow its row, indented.
pub fn history_table(r: &HistoryReply, steps: bool) -> String {
    let mut out = String::from("operations\n");
    let ops: Vec<&FailoverSummary> = r.operations.iter().chain(&r.in_progress).collect();
    if ops.is_empty() {
        out.push_str("  none\n");
    } else {
        let rows: Vec<Vec<String>> = ops.iter().map(|f| operation_row(f)).collect();
        let below: Vec<String> = ops
            .iter()
            .map(|f| {
                if steps {
                    operation_steps(f)
                } else {
                    String::new()
                }
            })
            .collect();
        out.push_str(&with_blocks(
            &render_table(
                &[
                    "EPOCH", "KIND", "FROM", "TO", "TRIGGER", "STARTED", "TOOK", "OUTCOME",
                ],
                &rows,
            ),
            &below,
        ));
    }

    if !r.rejoins.is_empty() {
        out.push_str("\nrejoins\n");
        let rows: Vec<Vec<String>> = r
            .rejoins
            .iter()
            .map(|j| {
                vec![
                    j.epoch.to_string(),
                    text_or_none(&j.site),
                    text_or_none(&j.primary_site),
                    rfc3339_millis(j.at_ms),
                ]
            })
            .collect();
        out.push_str(&render_table(
            &["EPOCH", "SITE", "STREAMS FROM", "AT"],
            &rows,
        ));
    }

    out.push_str("\ndrills\n");
    if r.drills.is_empty() {
        out.push_str("  none\n");
    } else {
        let rows: Vec<Vec<String>> = r.drills.iter().map(drill_row).collect();
        let below: Vec<String> = r
            .drills
            .iter()
            .map(|d| {
                if steps {
                    drill_phases(d)
                } else {
                    String::new()
                }
            })
            .collect();
        out.push_str(&with_blocks(
            &render_table(
                &["NAME", "WHO", "STARTED", "TOOK", "OUTCOME", "PHASES"],
                &rows,
            ),
            &below,
        ));
    }

    if !r.maintenance.is_empty() {
        out.push_str("\npauses and resumes\n");
        let rows: Vec<Vec<String>> = r
            .maintenance
            .iter()
            .map(|m| {
                vec![
                    rfc3339_millis(m.at_ms),
                    text_or_none(&m.kind),
                    text_or_none(&m.by),
                    match (m.kind.as_str(), m.until_ms) {
                        ("paused", Some(u)) => rfc3339_millis(u),
                        ("paused", None) => "until resumed".to_owned(),
                        _ => "-".to_owned(),
                    },
                    text_or_none(&m.request_id),
                    text_or_none(&m.reason),
                ]
            })
            .collect();
        out.push_str(&render_table(
            &["WHEN", "WHAT", "BY", "UNTIL", "REQUEST", "REASON"],
            &rows,
        ));
    }

    if !r.notes.is_empty() {
        out.push_str("\nnotes\n");
        let rows: Vec<Vec<String>> = r
            .notes
            .iter()
            .map(|n| {
                vec![
                    n.log_index.to_string(),
                    rfc3339_millis(n.at_unix_ms),
                    text_or_none(&n.author),
                    text_or_none(&n.request_id),
                    cell(&n.text),
                ]
            })
            .collect();
        out.push_str(&render_table(
            &["INDEX", "WHEN", "AUTHOR", "REQUEST", "TEXT"],
            &rows,
        ));
    }
    out.lines()
        .map(|l| clip(l, MAX_LINE) + "\n")
        .collect::<String>()
}

/// `history --request ID`: what the request with this id did, from the
/// answering witness's history. Exit 9 when it has no record of it: as
/// far as that witness knows it has not taken effect (yet).
pub async fn request(
    target: &Target,
    client: &mut ControlClient<Channel>,
    out: &Out,
    id: &str,
) -> Result<(), Failure> {
    let reply = client
        .history(HistoryRequest {})
        .await
        .map_err(|s| target.rpc_failure("history", &s))?
        .into_inner();
    let found = RequestLookupJson::find(&reply, id);
    if out.json() {
        out.emit(&json::to_json(&found))?;
    } else {
        out.emit(&request_text(&found))?;
    }
    if found.found {
        return Ok(());
    }
    let applied = reply
        .applied_index
        .map(|i| format!(" (it has applied the log up to index {i})"))
        .unwrap_or_default();
    Err(Failure::OutcomeUnknown(format!(
        "{} has no record of request {id}{applied}: as far as it knows, it has not taken effect; \
         sent while the cluster had no quorum, it may still; retrying it with --request-id {id} is \
         safe (it takes effect at most once); the cluster remembers request ids for {} after they \
         were issued",
        target.shown(),
        human_ms(i64::try_from(reply.request_retention_ms).unwrap_or(i64::MAX))
    )))
}

/// `history --request ID` for people.
pub fn request_text(r: &RequestLookupJson) -> String {
    if !r.found {
        return format!("request {}: no record\n", r.request_id);
    }
    let mut out = format!(
        "request {}: {} by {}\n",
        r.request_id,
        r.kind.as_deref().unwrap_or("-"),
        r.who.as_deref().unwrap_or("-")
    );
    if let Some(t) = r.issued_at_ms {
        out.push_str(&format!("  issued    {}\n", rfc3339_millis(t)));
    }
    if let Some(t) = r.at_ms {
        out.push_str(&format!(
            "  applied   {}{}\n",
            rfc3339_millis(t),
            r.log_index
                .map(|i| format!(" at log index {i}"))
                .unwrap_or_default()
        ));
    }
    if let Some(s) = &r.summary {
        out.push_str(&format!("  did       {}\n", cell(s)));
    }
    if let Some(o) = &r.outcome {
        out.push_str(&format!("  outcome   {}\n", cell(o)));
    }
    if let Some(op) = &r.operation {
        out.push_str(&format!(
            "  epoch {}  {} {} -> {}: {}\n",
            op.epoch,
            op.kind.as_deref().unwrap_or("failover"),
            op.from_site,
            op.to_site,
            op.outcome.as_deref().unwrap_or(IN_PROGRESS)
        ));
    }
    out.lines()
        .map(|l| clip(l, MAX_LINE) + "\n")
        .collect::<String>()
}

fn operation_row(f: &FailoverSummary) -> Vec<String> {
    let (took, outcome) = match f.finished_at_ms {
        Some(end) if !f.outcome.is_empty() => (
            millis(end.saturating_sub(f.started_at_ms)),
            cell(&f.outcome),
        ),
        _ => ("-".to_owned(), IN_PROGRESS.to_owned()),
    };
    vec![
        f.epoch.to_string(),
        kind_label(&f.kind),
        text_or_none(&f.from_site),
        text_or_none(&f.to_site),
        text_or_none(&f.trigger),
        rfc3339_millis(f.started_at_ms),
        took,
        outcome,
    ]
}

/// The steps under an operation's row, as `switchover` prints them while
/// it waits.
fn operation_steps(f: &FailoverSummary) -> String {
    if f.steps.is_empty() {
        return "  no step done\n".to_owned();
    }
    f.steps.iter().map(progress_step).collect()
}

fn drill_row(d: &DrillSummary) -> Vec<String> {
    vec![
        text_or_none(&d.name),
        text_or_none(&d.who),
        rfc3339_millis(d.started_at_ms),
        human_ms(d.finished_at_ms.saturating_sub(d.started_at_ms)),
        text_or_none(&d.outcome),
        phase_counts(d),
    ]
}

/// `7 passed`, or `3 passed, 1 failed, 3 skipped`.
fn phase_counts(d: &DrillSummary) -> String {
    if d.phases.is_empty() {
        return "none".to_owned();
    }
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for p in &d.phases {
        let class = p.outcome.split(':').next().unwrap_or("").trim();
        let class = if class.is_empty() { "unknown" } else { class };
        match counts.iter_mut().find(|(c, _)| *c == class) {
            Some((_, n)) => *n += 1,
            None => counts.push((class, 1)),
        }
    }
    counts
        .iter()
        .map(|(c, n)| format!("{n} {}", cell(c)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The phases under a drill's row.
fn drill_phases(d: &DrillSummary) -> String {
    d.phases
        .iter()
        .map(|p| {
            let took = human_ms(i64::try_from(p.duration_ms).unwrap_or(i64::MAX));
            format!(
                "  {:<15} {took:>8}  {}\n",
                text_or_none(&p.name),
                text_or_none(&p.outcome)
            )
        })
        .collect()
}

/// `table` with `blocks[i]` inserted after its row `i` (the header is line
/// 0): render_table writes exactly one line per row.
fn with_blocks(table: &str, blocks: &[String]) -> String {
    let mut lines = table.lines();
    let mut out = String::new();
    if let Some(header) = lines.next() {
        out.push_str(header);
        out.push('\n');
    }
    for (line, block) in lines.zip(blocks) {
        out.push_str(line);
        out.push('\n');
        out.push_str(block);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use palisade_api::v1::{DrillPhase, RejoinSummary};

    fn history() -> HistoryReply {
        let mut switchover = fixtures::finished_failover();
        switchover.epoch = 4;
        switchover.kind = "switchover".to_owned();
        switchover.from_site = "b".to_owned();
        switchover.to_site = "a".to_owned();
        switchover.trigger = "operator:alice@ops".to_owned();
        switchover.outcome = "aborted: standby a did not catch up within 10000 ms".to_owned();
        switchover.steps.truncate(1);
        switchover.finished_at_ms = Some(switchover.started_at_ms + 10_500);
        let mut running = fixtures::finished_failover();
        running.epoch = 5;
        running.kind = "failback".to_owned();
        running.outcome.clear();
        running.finished_at_ms = None;
        running.steps.clear();
        let phase = |name: &str, outcome: &str, ms: u64| DrillPhase {
            name: name.to_owned(),
            outcome: outcome.to_owned(),
            duration_ms: ms,
        };
        HistoryReply {
            rejoins: vec![RejoinSummary {
                site: "a".to_owned(),
                epoch: 3,
                at_ms: 1_700_000_060_000,
                primary_site: "b".to_owned(),
            }],
            operations: vec![fixtures::finished_failover(), switchover],
            in_progress: Some(running),
            drills: vec![DrillSummary {
                name: "quarterly".to_owned(),
                who: "alice@ops".to_owned(),
                started_at_ms: 1_700_000_000_000,
                finished_at_ms: 1_700_003_723_000,
                outcome: "failed: phase 2 (failover): switchover epoch 4 did not succeed"
                    .to_owned(),
                phases: vec![
                    phase("checkpoint", "passed", 1200),
                    phase(
                        "failover",
                        "failed: switchover epoch 4 did not succeed",
                        3_600_000,
                    ),
                    phase("failover-check", "skipped", 0),
                ],
            }],
            ..Default::default()
        }
    }

    #[test]
    fn history_table_lists_operations_then_drills() {
        let got = history_table(&history(), false);
        assert_eq!(
            got,
            "\
operations
EPOCH  KIND        FROM  TO  TRIGGER             STARTED                   TOOK      OUTCOME
3      failover    a     b   automatic           2023-11-14T22:13:20.000Z  4230 ms   completed
4      switchover  b     a   operator:alice@ops  2023-11-14T22:13:20.000Z  10500 ms  aborted: standby a did not catch up within 10000 ms
5      failback    a     b   automatic           2023-11-14T22:13:20.000Z  -         in progress

rejoins
EPOCH  SITE  STREAMS FROM  AT
3      a     b             2023-11-14T22:14:20.000Z

drills
NAME       WHO        STARTED                   TOOK      OUTCOME                                                         PHASES
quarterly  alice@ops  2023-11-14T22:13:20.000Z  1h 2m 3s  failed: phase 2 (failover): switchover epoch 4 did not succeed  1 passed, 1 failed, 1 skipped
"
        );
    }

    #[test]
    fn with_steps_each_row_is_followed_by_its_steps_or_phases() {
        let got = history_table(&history(), true);
        assert!(
            got.contains(
                "4      switchover  b     a   operator:alice@ops  2023-11-14T22:13:20.000Z  10500 ms  aborted: standby a did not catch up within 10000 ms\n\
                 \x20 fenced        210 ms  fenced by agent: stopped (fast) in 210 ms\n\
                 5      failback"
            ),
            "got:\n{got}"
        );
        assert!(
            got.contains(
                "  verified     1800 ms  3 checks passed:\n    ok      database at b writable"
            ),
            "got:\n{got}"
        );
        assert!(got.contains("in progress\n  no step done\n"), "got:\n{got}");
        assert!(
            got.ends_with(
                "\
  checkpoint       1200 ms  passed
  failover              1h  failed: switchover epoch 4 did not succeed
  failover-check      0 ms  skipped
"
            ),
            "got:\n{got}"
        );
    }

    #[test]
    fn empty_history_says_none() {
        assert_eq!(
            history_table(&HistoryReply::default(), true),
            "operations\n  none\n\ndrills\n  none\n"
        );
    }
}
