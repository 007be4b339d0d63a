//! What a drill run came to: the report's data (which is also the stable
//! JSON schema of `drill run --output json` and of the `.json` report), its
//! Markdown rendering, and writing both files.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::durations::human_ms;
use crate::json::OperationJson;
use crate::rfc3339::{compact_utc, rfc3339_millis};

/// Outcome of a step or check that ran and passed.
pub const PASSED: &str = "passed";
/// Outcome of a step or check that ran and failed.
pub const FAILED: &str = "failed";
/// Outcome of anything not run because an earlier failure stopped the
/// drill.
pub const SKIPPED: &str = "skipped";

/// The whole drill.
#[derive(Debug, Serialize)]
pub struct DrillReport {
    /// The plan's `name`.
    pub name: String,
    /// The plan's `description`; may be empty.
    pub description: String,
    /// The plan file as given on the command line.
    pub plan: String,
    /// Who ran it (`--who`).
    pub who: String,
    /// The witness palisadectl talked to.
    pub endpoint: String,
    /// Local wall clock when the drill started, Unix ms.
    pub started_at_ms: i64,
    /// Local wall clock when it ended, Unix ms.
    pub finished_at_ms: i64,
    /// `finished_at_ms - started_at_ms`.
    pub duration_ms: i64,
    /// `passed`, or `failed: phase N (NAME): why`.
    pub outcome: String,
    /// Whether every phase passed.
    pub passed: bool,
    /// Whether RecordDrill put it in the cluster history.
    pub recorded: bool,
    /// Why recording failed; `null` when it did not.
    pub record_error: Option<String>,
    /// The Markdown report's path.
    pub report_markdown: String,
    /// The JSON report's path.
    pub report_json: String,
    /// Every phase of the plan, in order.
    pub phases: Vec<PhaseReport>,
}

/// One phase.
#[derive(Debug, Serialize)]
pub struct PhaseReport {
    /// 1-based position in the plan.
    pub index: usize,
    /// The phase's name.
    pub name: String,
    /// `passed`, `failed: why` or `skipped`, as recorded in the history.
    pub outcome: String,
    /// When it started, Unix ms; `null` when skipped.
    pub started_at_ms: Option<i64>,
    /// How long it took, ms; 0 when skipped.
    pub duration_ms: u64,
    /// Every step of the phase, in order.
    pub steps: Vec<StepReport>,
    /// Every check of the phase, in order.
    pub checks: Vec<CheckReport>,
}

/// One step.
#[derive(Debug, Serialize)]
pub struct StepReport {
    /// 1-based position in the phase.
    pub index: usize,
    /// The action key: `annotate`, `pause`, `resume`, `switchover`,
    /// `failover`, `failback`, `wait_rejoined`, `run`, `manual`.
    pub action: String,
    /// What the step does, in words.
    pub description: String,
    /// `passed`, `failed` or `skipped`.
    pub outcome: String,
    /// What happened (or why it failed); empty when skipped.
    pub detail: String,
    /// When it started, Unix ms; `null` when skipped.
    pub started_at_ms: Option<i64>,
    /// How long it took, ms.
    pub duration_ms: u64,
    /// For `switchover`, `failover` and `failback`: the operation as
    /// `switchover --output json` prints it; `null` otherwise or when the
    /// request itself failed.
    pub operation: Option<OperationJson>,
}

/// One check, as last evaluated.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    /// The check's name (`leader`, `one-primary`, ...).
    pub check: String,
    /// `passed`, `failed` or `skipped`.
    pub outcome: String,
    /// What was seen; empty when skipped.
    pub detail: String,
}

/// The two report paths for a drill `name` started at `started_at_ms`:
/// `DIR/<name>-<UTC timestamp>.md` and `.json`, with `-2`, `-3`, ... added
/// when a report of that name and second already exists.
pub fn report_paths(dir: &Path, name: &str, started_at_ms: i64) -> (PathBuf, PathBuf) {
    let stem = format!("{name}-{}", compact_utc(started_at_ms));
    let mut n = 1;
    loop {
        let base = if n == 1 {
            stem.clone()
        } else {
            format!("{stem}-{n}")
        };
        let md = dir.join(format!("{base}.md"));
        let json = dir.join(format!("{base}.json"));
        if !md.exists() && !json.exists() {
            return (md, json);
        }
        n += 1;
    }
}

/// Writes both reports, refusing to overwrite a file.
pub fn write_reports(report: &DrillReport) -> Result<(), String> {
    let mut json = serde_json::to_string_pretty(report).expect("report types always serialise");
    json.push('\n');
    write_new(Path::new(&report.report_json), &json)?;
    write_new(Path::new(&report.report_markdown), &markdown(report))
}

fn write_new(path: &Path, text: &str) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
        .map_err(|e| format!("cannot write report {}: {e}", path.display()))
}

/// The report for people, as Markdown.
pub fn markdown(r: &DrillReport) -> String {
    let verdict = if r.passed { "PASSED" } else { "FAILED" };
    let mut out = format!("# DR drill `{}`: {verdict}\n\n", r.name);
    if !r.description.is_empty() {
        out.push_str(&format!("{}\n\n", r.description.trim_end()));
    }
    let recorded = if r.recorded {
        "yes".to_owned()
    } else {
        format!(
            "**no**: {}",
            r.record_error.as_deref().unwrap_or("not attempted")
        )
    };
    out.push_str("| | |\n|---|---|\n");
    for (k, v) in [
        ("Outcome", r.outcome.clone()),
        ("Plan", format!("`{}`", r.plan)),
        ("Run by", r.who.clone()),
        ("Endpoint", r.endpoint.clone()),
        ("Started", rfc3339_millis(r.started_at_ms)),
        ("Finished", rfc3339_millis(r.finished_at_ms)),
        ("Duration", human_ms(r.duration_ms)),
        ("Recorded in the cluster history", recorded),
    ] {
        out.push_str(&format!("| {k} | {} |\n", md_cell(&v)));
    }

    out.push_str("\n## Phases\n\n| # | Phase | Outcome | Duration |\n|---|---|---|---|\n");
    for p in &r.phases {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            p.index,
            p.name,
            md_cell(&p.outcome),
            duration(p.duration_ms)
        ));
    }

    for p in &r.phases {
        out.push_str(&format!(
            "\n## {}. {} — {}\n",
            p.index,
            p.name,
            md_cell(&p.outcome)
        ));
        if let Some(at) = p.started_at_ms {
            out.push_str(&format!(
                "\nStarted {}, took {}.\n",
                rfc3339_millis(at),
                duration(p.duration_ms)
            ));
        }
        if !p.steps.is_empty() {
            out.push_str("\n| # | Step | Outcome | Duration | Detail |\n|---|---|---|---|---|\n");
            for s in &p.steps {
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} |\n",
                    s.index,
                    md_cell(&s.description),
                    s.outcome,
                    duration(s.duration_ms),
                    md_cell(&s.detail)
                ));
            }
            for s in &p.steps {
                if let Some(summary) = s.operation.as_ref().and_then(|o| o.summary.as_ref()) {
                    out.push_str(&format!(
                        "\nStep {}: {} epoch {}, {} → {}, outcome {}:\n\n| Server step | Took | Detail |\n|---|---|---|\n",
                        s.index,
                        summary.kind.as_deref().unwrap_or("failover"),
                        summary.epoch,
                        summary.from_site,
                        summary.to_site,
                        md_cell(summary.outcome.as_deref().unwrap_or("still in progress")),
                    ));
                    for st in &summary.steps {
                        out.push_str(&format!(
                            "| {} | {} ms | {} |\n",
                            md_cell(&st.step),
                            st.duration_ms,
                            md_cell(&st.detail)
                        ));
                    }
                    for st in summary.steps.iter().filter(|st| !st.checks.is_empty()) {
                        out.push_str(&format!(
                            "\nStep {}: checks of server step `{}`:\n\n| Check | Result | Detail |\n|---|---|---|\n",
                            s.index,
                            md_cell(&st.step),
                        ));
                        for c in &st.checks {
                            out.push_str(&format!(
                                "| {} | {} | {} |\n",
                                md_cell(&c.name),
                                if c.ok { "ok" } else { "**FAILED**" },
                                md_cell(&c.detail)
                            ));
                        }
                    }
                }
            }
        }
        if !p.checks.is_empty() {
            out.push_str("\n| Check | Outcome | Detail |\n|---|---|---|\n");
            for c in &p.checks {
                out.push_str(&format!(
                    "| {} | {} | {} |\n",
                    c.check,
                    c.outcome,
                    md_cell(&c.detail)
                ));
            }
        }
    }
    out
}

fn duration(ms: u64) -> String {
    human_ms(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// Text made safe for one Markdown table cell: `|` escaped, line breaks
/// flattened.
fn md_cell(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::operations::{OperationResult, WaitEnd};
    use palisade_api::v1::OperationReply;

    fn sample() -> DrillReport {
        DrillReport {
            name: "q3".to_owned(),
            description: "Quarterly test".to_owned(),
            plan: "dr.toml".to_owned(),
            who: "alice@ops".to_owned(),
            endpoint: "http://127.0.0.1:7401".to_owned(),
            started_at_ms: 1_700_000_000_000,
            finished_at_ms: 1_700_000_090_000,
            duration_ms: 90_000,
            outcome: "failed: phase 2 (failover): step 1: exit status 3".to_owned(),
            passed: false,
            recorded: false,
            record_error: Some("rejected: no leader".to_owned()),
            report_markdown: "q3.md".to_owned(),
            report_json: "q3.json".to_owned(),
            phases: vec![
                PhaseReport {
                    index: 1,
                    name: "checkpoint".to_owned(),
                    outcome: PASSED.to_owned(),
                    started_at_ms: Some(1_700_000_000_000),
                    duration_ms: 1200,
                    steps: vec![StepReport {
                        index: 1,
                        action: "annotate".to_owned(),
                        description: "annotate \"a | b\"".to_owned(),
                        outcome: PASSED.to_owned(),
                        detail: "noted at log index 4\n(leader 1)".to_owned(),
                        started_at_ms: Some(1_700_000_000_000),
                        duration_ms: 12,
                        operation: None,
                    }],
                    checks: vec![CheckReport {
                        check: "leader".to_owned(),
                        outcome: PASSED.to_owned(),
                        detail: "leader 1; all 3 witnesses reachable".to_owned(),
                    }],
                },
                PhaseReport {
                    index: 2,
                    name: "failover".to_owned(),
                    outcome: SKIPPED.to_owned(),
                    started_at_ms: None,
                    duration_ms: 0,
                    steps: vec![],
                    checks: vec![],
                },
            ],
        }
    }

    #[test]
    fn markdown_has_the_summary_phase_table_and_escaped_cells() {
        let md = markdown(&sample());
        assert!(
            md.starts_with("# DR drill `q3`: FAILED\n\nQuarterly test\n\n"),
            "{md}"
        );
        for line in [
            "| Outcome | failed: phase 2 (failover): step 1: exit status 3 |",
            "| Duration | 1m 30s |",
            "| Recorded in the cluster history | **no**: rejected: no leader |",
            "| 1 | checkpoint | passed | 1200 ms |",
            "| 2 | failover | skipped | 0 ms |",
            "## 1. checkpoint — passed",
            "| 1 | annotate \"a \\| b\" | passed | 12 ms | noted at log index 4 (leader 1) |",
            "| leader | passed | leader 1; all 3 witnesses reachable |",
            "## 2. failover — skipped",
        ] {
            assert!(md.lines().any(|l| l == line), "missing {line:?} in:\n{md}");
        }
    }

    #[test]
    fn markdown_lists_an_operations_server_steps_and_their_checks() {
        let mut f = fixtures::finished_failover();
        f.outcome = "completed_with_failed_checks: exactly one monitorsEnabled=true: \
                     on at [a, b]"
            .to_owned();
        let verified = f.steps.last_mut().expect("verified step");
        verified.detail = "3 checks, 1 failed".to_owned();
        verified.checks[2] =
            fixtures::check("exactly one monitorsEnabled=true", false, "on at [a, b]");
        let operation = OperationResult {
            reply: OperationReply {
                epoch: 3,
                kind: "failover".to_owned(),
                from_site: "a".to_owned(),
                to_site: "b".to_owned(),
                leader_id: 1,
                data_loss_bound: String::new(),
                ..Default::default()
            },
            end: Some(WaitEnd::Finished(f)),
        }
        .to_json();
        let mut r = sample();
        r.phases[1] = PhaseReport {
            index: 2,
            name: "failover".to_owned(),
            outcome: "failed: step 1 (failover): failover epoch 3 did not succeed".to_owned(),
            started_at_ms: Some(1_700_000_001_200),
            duration_ms: 4300,
            steps: vec![StepReport {
                index: 1,
                action: "failover".to_owned(),
                description: "failover to b".to_owned(),
                outcome: FAILED.to_owned(),
                detail: "failover epoch 3 did not succeed".to_owned(),
                started_at_ms: Some(1_700_000_001_200),
                duration_ms: 4300,
                operation: Some(operation),
            }],
            checks: vec![],
        };
        let md = markdown(&r);
        let expected = "
| verified | 1800 ms | 3 checks, 1 failed |

Step 1: checks of server step `verified`:

| Check | Result | Detail |
|---|---|---|
| database at b writable | ok | lsn 0/3000148 |
| elasticsearch at b green | ok | 3 nodes |
| exactly one monitorsEnabled=true | **FAILED** | on at [a, b] |
";
        assert!(md.contains(expected), "missing {expected:?} in:\n{md}");
    }

    #[test]
    fn report_paths_never_reuse_a_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (md, json) = report_paths(dir.path(), "q3", 1_700_000_000_000);
        assert_eq!(md, dir.path().join("q3-20231114T221320Z.md"));
        assert_eq!(json, dir.path().join("q3-20231114T221320Z.json"));
        std::fs::write(&json, "x").expect("write");
        let (md2, json2) = report_paths(dir.path(), "q3", 1_700_000_000_000);
        assert_eq!(md2, dir.path().join("q3-20231114T221320Z-2.md"));
        assert_eq!(json2, dir.path().join("q3-20231114T221320Z-2.json"));
    }

    #[test]
    fn write_reports_writes_both_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = sample();
        r.report_markdown = dir.path().join("r.md").display().to_string();
        r.report_json = dir.path().join("r.json").display().to_string();
        write_reports(&r).expect("written");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&r.report_json).expect("read"))
                .expect("json");
        assert_eq!(v["phases"][1]["outcome"], "skipped");
        assert!(v["phases"][1]["started_at_ms"].is_null());
        assert!(std::fs::read_to_string(&r.report_markdown)
            .expect("read")
            .starts_with("# DR drill"));
        let again = write_reports(&r).expect_err("exists");
        assert!(again.contains("r.json"), "{again}");
    }
}
