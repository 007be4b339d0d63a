//! A DR-test plan: the TOML file `drill run` executes, parsed and checked
//! completely before anything runs, so a typo in phase 6 is found before
//! phase 1 has paused the cluster.
//!
//! Parsing is in two stages: serde reads the file into raw types with
//! `deny_unknown_fields` (through `serde_path_to_error`, so a bad key is
//! reported with its place), then [`validate`] turns them into a [`Plan`]
//! and enforces what serde cannot (one action per step, phase order, ...).
//! Every error is one line: `drill plan FILE: phase N (NAME), step M: why`.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

use crate::durations::{human, parse_duration};

/// Longest drill name: it becomes part of the report's file name.
pub const MAX_NAME_CHARS: usize = 64;
/// The server's limit on note text (`annotate`) and pause reasons, bytes.
pub const MAX_TEXT_BYTES: usize = 4096;
/// How long a `run` command may take unless the step says `timeout`.
pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a phase's checks may take to pass unless it says
/// `checks_timeout`: probes are a few hundred milliseconds old, and the
/// views settle a moment after an operation.
pub const DEFAULT_CHECKS_TIMEOUT: Duration = Duration::from_secs(30);

/// The phases of a DR test, in the order the HA/DR guide runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseName {
    /// Maintenance mode on, backups and snapshots taken.
    Checkpoint,
    /// The primary site's servers restarted to see that they come back.
    PreReboot,
    /// The primary site checked before failing over.
    Check,
    /// Service moved to the secondary site.
    Failover,
    /// The secondary site checked.
    FailoverCheck,
    /// Service moved back to the primary site.
    Failback,
    /// The primary site checked again.
    FailbackCheck,
}

impl PhaseName {
    /// Every phase, in the guide's order.
    pub const ALL: [PhaseName; 7] = [
        PhaseName::Checkpoint,
        PhaseName::PreReboot,
        PhaseName::Check,
        PhaseName::Failover,
        PhaseName::FailoverCheck,
        PhaseName::Failback,
        PhaseName::FailbackCheck,
    ];

    /// The name as plans write it.
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseName::Checkpoint => "checkpoint",
            PhaseName::PreReboot => "pre-reboot",
            PhaseName::Check => "check",
            PhaseName::Failover => "failover",
            PhaseName::FailoverCheck => "failover-check",
            PhaseName::Failback => "failback",
            PhaseName::FailbackCheck => "failback-check",
        }
    }
}

impl fmt::Display for PhaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A condition on the cluster's `Status`, evaluated after a phase's steps
/// (see `checks.rs` for exactly what each means).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// A leader is known and no witness is unreachable.
    Leader,
    /// Exactly one site's database is seen writable.
    OnePrimary,
    /// The recorded standby is seen streaming.
    StandbyStreaming,
    /// Exactly one site's app has `monitorsEnabled=true`.
    MonitorsOne,
    /// No operation is in progress.
    NotInProgress,
    /// Maintenance mode is on.
    Paused,
    /// Maintenance mode is off.
    NotPaused,
    /// Every Elasticsearch view is reachable and green or yellow.
    SearchHealthy,
}

impl Check {
    /// The name as plans write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Leader => "leader",
            Check::OnePrimary => "one-primary",
            Check::StandbyStreaming => "standby-streaming",
            Check::MonitorsOne => "monitors-one",
            Check::NotInProgress => "not-in-progress",
            Check::Paused => "paused",
            Check::NotPaused => "not-paused",
            Check::SearchHealthy => "search-healthy",
        }
    }
}

/// One step of a phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Append a note to the replicated journal.
    Annotate(String),
    /// Maintenance mode on for `for_`: a drill's pause always ends on its
    /// own, so a drill abandoned half-way does not leave automatic
    /// failover off for good.
    Pause { for_: Duration, reason: String },
    /// Maintenance mode off.
    Resume,
    /// Switchover to a site, waiting up to `timeout` (default: the run's
    /// `--wait-timeout`) for it to finish.
    Switchover {
        to: String,
        timeout: Option<Duration>,
    },
    /// Failover (not forced) to a site, waiting like a switchover.
    Failover {
        to: String,
        timeout: Option<Duration>,
    },
    /// Failback to the configured primary, waiting like a switchover.
    Failback { timeout: Option<Duration> },
    /// Wait up to this long until the standby has rejoined and streams.
    WaitRejoined(Duration),
    /// A local shell command (`sh -c`) that must exit 0 within `timeout`.
    Run { command: String, timeout: Duration },
    /// An instruction for the operator, confirmed with Enter (or not
    /// waited for with `--yes`).
    Manual(String),
}

impl Step {
    /// The action's key, as the plan writes it and the report names it.
    pub fn action(&self) -> &'static str {
        match self {
            Step::Annotate(_) => "annotate",
            Step::Pause { .. } => "pause",
            Step::Resume => "resume",
            Step::Switchover { .. } => "switchover",
            Step::Failover { .. } => "failover",
            Step::Failback { .. } => "failback",
            Step::WaitRejoined(_) => "wait_rejoined",
            Step::Run { .. } => "run",
            Step::Manual(_) => "manual",
        }
    }

    /// What the step does, on one line, for the dry run and the report.
    pub fn describe(&self) -> String {
        let wait = |t: &Option<Duration>| match t {
            Some(t) => format!(" (wait up to {})", human(*t)),
            None => String::new(),
        };
        match self {
            Step::Annotate(text) => format!("annotate {text:?}"),
            Step::Pause { for_, reason } if reason.is_empty() => {
                format!("pause automatic failover for {}", human(*for_))
            }
            Step::Pause { for_, reason } => {
                format!("pause automatic failover for {}: {reason}", human(*for_))
            }
            Step::Resume => "resume automatic failover".to_owned(),
            Step::Switchover { to, timeout } => format!("switchover to {to}{}", wait(timeout)),
            Step::Failover { to, timeout } => format!("failover to {to}{}", wait(timeout)),
            Step::Failback { timeout } => format!("failback{}", wait(timeout)),
            Step::WaitRejoined(t) => format!(
                "wait until the standby has rejoined and streams (up to {})",
                human(*t)
            ),
            Step::Run { command, timeout } => {
                format!("run `{command}` (timeout {})", human(*timeout))
            }
            Step::Manual(text) => format!("manual: {text}"),
        }
    }
}

/// One phase: steps, then checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    pub name: PhaseName,
    pub steps: Vec<Step>,
    pub checks: Vec<Check>,
    /// How long the checks may take to all pass.
    pub checks_timeout: Duration,
}

/// A validated plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `name`: part of the report's file name and the history record.
    pub name: String,
    /// `description`, free text; may be empty.
    pub description: String,
    /// The phases, in the guide's order, each at most once.
    pub phases: Vec<Phase>,
}

/// Why a plan was refused, with where: one line via `Display`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    /// The file as the operator named it.
    pub file: String,
    /// 1-based phase number and its name as written (`?` when unknown).
    pub phase: Option<(usize, String)>,
    /// Where inside the phase (`step 2`, `check 1`, `checks_timeout`), or
    /// the top-level key.
    pub place: Option<String>,
    pub reason: String,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "drill plan {}: ", self.file)?;
        let mut wrote = false;
        if let Some((n, name)) = &self.phase {
            write!(f, "phase {n} ({name})")?;
            wrote = true;
        }
        if let Some(place) = &self.place {
            if wrote {
                f.write_str(", ")?;
            }
            f.write_str(place)?;
            wrote = true;
        }
        if wrote {
            f.write_str(": ")?;
        }
        f.write_str(&self.reason)
    }
}

/// Reads and validates the plan at `path`.
pub fn load(path: &Path) -> Result<Plan, PlanError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| PlanError {
        file: file.clone(),
        phase: None,
        place: None,
        reason: format!("cannot read: {e}"),
    })?;
    parse(&file, &text)
}

/// Parses and validates plan `text`; `file` is for messages.
pub fn parse(file: &str, text: &str) -> Result<Plan, PlanError> {
    let raw: RawPlan = deserialize(file, text)?;
    validate(file, raw)
}

/// A duration written as a string (`"30s"`, `"1h30m"`).
#[derive(Debug, Clone, Copy)]
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        parse_duration(&raw)
            .map(Dur)
            .map_err(|why| de::Error::custom(format!("invalid duration {raw:?}: {why}")))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    phase: Vec<RawPhase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPhase {
    name: PhaseName,
    #[serde(default)]
    steps: Vec<RawStep>,
    #[serde(default)]
    checks: Vec<Check>,
    checks_timeout: Option<Dur>,
}

/// One step as written: exactly one action key plus the modifiers that
/// action takes. Kept as optional fields rather than a serde enum so that
/// a wrong key is named in the error instead of "no variant matched".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    annotate: Option<String>,
    pause: Option<Dur>,
    reason: Option<String>,
    resume: Option<bool>,
    switchover: Option<String>,
    failover: Option<String>,
    failback: Option<bool>,
    wait_rejoined: Option<Dur>,
    run: Option<String>,
    timeout: Option<Dur>,
    manual: Option<String>,
}

/// The action keys, in the order messages list them.
const ACTIONS: [&str; 9] = [
    "annotate",
    "pause",
    "resume",
    "switchover",
    "failover",
    "failback",
    "wait_rejoined",
    "run",
    "manual",
];

fn deserialize(file: &str, text: &str) -> Result<RawPlan, PlanError> {
    let line_of = |span: Option<std::ops::Range<usize>>| {
        span.map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
    };
    let at = |span| {
        line_of(span)
            .map(|l| format!(" (line {l})"))
            .unwrap_or_default()
    };
    let de = toml::de::Deserializer::parse(text).map_err(|e| PlanError {
        file: file.to_owned(),
        phase: None,
        place: None,
        reason: format!("not valid TOML: {}{}", one_line(e.message()), at(e.span())),
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let segments: Vec<String> = e
            .path()
            .iter()
            .filter(|s| !matches!(s, serde_path_to_error::Segment::Unknown))
            .map(|s| s.to_string())
            .collect();
        let inner = e.into_inner();
        let reason = format!("{}{}", one_line(inner.message()), at(inner.span()));
        locate_error(file, text, &segments, reason)
    })
}

/// Turns serde_path_to_error's path (`phase`, `[2]`, `steps`, `[0]`, ...)
/// into the phase number and name and a place inside the phase.
fn locate_error(file: &str, text: &str, segments: &[String], reason: String) -> PlanError {
    let index = |s: &String| {
        s.strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|s| s.parse::<usize>().ok())
    };
    let mut phase = None;
    let mut rest: &[String] = segments;
    if let [first, second, tail @ ..] = segments {
        if first == "phase" {
            if let Some(i) = index(second) {
                phase = Some((i + 1, phase_name_as_written(text, i)));
                rest = tail;
            }
        }
    }
    // For an unknown key the path ends in the key, which the reason
    // names already.
    if let [init @ .., last] = rest {
        if reason.starts_with(&format!("unknown field `{last}`")) {
            rest = init;
        }
    }
    let mut place = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        let seg = &rest[i];
        match (seg.as_str(), rest.get(i + 1).and_then(index)) {
            ("steps", Some(n)) => {
                place.push(format!("step {}", n + 1));
                i += 2;
            }
            ("checks", Some(n)) => {
                place.push(format!("check {}", n + 1));
                i += 2;
            }
            _ => {
                place.push(seg.clone());
                i += 1;
            }
        }
    }
    PlanError {
        file: file.to_owned(),
        phase,
        place: (!place.is_empty()).then(|| place.join(", ")),
        reason,
    }
}

/// The `name` of the `i`th `[[phase]]` as written, from a loose parse of
/// the file: the strict parse failed, maybe on the name itself.
fn phase_name_as_written(text: &str, i: usize) -> String {
    let table: Option<toml::Table> = toml::from_str(text).ok();
    table
        .as_ref()
        .and_then(|t| t.get("phase"))
        .and_then(|p| p.as_array())
        .and_then(|a| a.get(i))
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map_or_else(|| "?".to_owned(), str::to_owned)
}

fn validate(file: &str, raw: RawPlan) -> Result<Plan, PlanError> {
    let top = |place: &str, reason: String| PlanError {
        file: file.to_owned(),
        phase: None,
        place: Some(place.to_owned()),
        reason,
    };
    check_name(&raw.name).map_err(|why| top("name", why))?;
    if raw.phase.is_empty() {
        return Err(PlanError {
            file: file.to_owned(),
            phase: None,
            place: None,
            reason: "has no [[phase]]; a plan needs at least one".to_owned(),
        });
    }
    let mut phases = Vec::with_capacity(raw.phase.len());
    let mut previous: Option<(usize, PhaseName)> = None;
    for (i, p) in raw.phase.into_iter().enumerate() {
        let n = i + 1;
        let at = |place: Option<String>, reason: String| PlanError {
            file: file.to_owned(),
            phase: Some((n, p.name.to_string())),
            place,
            reason,
        };
        if let Some((prev_n, prev)) = previous {
            if p.name == prev || phases.iter().any(|q: &Phase| q.name == p.name) {
                let first = phases
                    .iter()
                    .position(|q: &Phase| q.name == p.name)
                    .map_or(prev_n, |k| k + 1);
                return Err(at(
                    None,
                    format!("appears twice (first as phase {first}); each phase runs at most once"),
                ));
            }
            if p.name < prev {
                return Err(at(
                    None,
                    format!(
                        "comes after {prev} (phase {prev_n}), but the guide's order is {}",
                        PhaseName::ALL.map(PhaseName::as_str).join(", ")
                    ),
                ));
            }
        }
        previous = Some((n, p.name));
        if p.steps.is_empty() && p.checks.is_empty() {
            return Err(at(None, "has no steps and no checks".to_owned()));
        }
        let mut steps = Vec::with_capacity(p.steps.len());
        for (j, s) in p.steps.into_iter().enumerate() {
            steps.push(step(s).map_err(|why| at(Some(format!("step {}", j + 1)), why))?);
        }
        for (j, c) in p.checks.iter().enumerate() {
            if p.checks[..j].contains(c) {
                return Err(at(
                    Some(format!("check {}", j + 1)),
                    format!("{} is listed twice", c.as_str()),
                ));
            }
        }
        if p.checks_timeout.is_some() && p.checks.is_empty() {
            return Err(at(
                Some("checks_timeout".to_owned()),
                "is set but the phase has no checks".to_owned(),
            ));
        }
        phases.push(Phase {
            name: p.name,
            steps,
            checks: p.checks,
            checks_timeout: p.checks_timeout.map_or(DEFAULT_CHECKS_TIMEOUT, |d| d.0),
        });
    }
    Ok(Plan {
        name: raw.name,
        description: raw.description,
        phases,
    })
}

/// A drill name: it ends up in a file name, so only a safe alphabet.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("is longer than {MAX_NAME_CHARS} characters"));
    }
    if name.starts_with(['.', '-'])
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(format!(
            "{name:?} must be letters, digits, '.', '_' and '-', not starting with '.' or '-' \
             (it becomes part of the report's file name)"
        ));
    }
    Ok(())
}

/// Checks one raw step: exactly one action, only the modifiers it takes,
/// and values the server will accept.
fn step(s: RawStep) -> Result<Step, String> {
    let present: Vec<&str> = [
        s.annotate.is_some(),
        s.pause.is_some(),
        s.resume.is_some(),
        s.switchover.is_some(),
        s.failover.is_some(),
        s.failback.is_some(),
        s.wait_rejoined.is_some(),
        s.run.is_some(),
        s.manual.is_some(),
    ]
    .iter()
    .zip(ACTIONS)
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    let action = match present.as_slice() {
        [one] => *one,
        [] => {
            return Err(format!(
                "has no action; give one of {}",
                ACTIONS.map(|a| format!("`{a}`")).join(", ")
            ))
        }
        [first, second, ..] => {
            return Err(format!(
                "has both `{first}` and `{second}`; give one action per step"
            ))
        }
    };
    if s.reason.is_some() && action != "pause" {
        return Err(format!("`reason` goes with `pause`, not `{action}`"));
    }
    let takes_timeout = matches!(action, "switchover" | "failover" | "failback" | "run");
    if s.timeout.is_some() && !takes_timeout {
        return Err(format!(
            "`timeout` goes with `switchover`, `failover`, `failback` or `run`, not `{action}`"
        ));
    }
    let timeout = s.timeout.map(|d| d.0);
    let text = |value: Option<String>, what: &str| -> Result<String, String> {
        let value = value.unwrap_or_default();
        if value.trim().is_empty() {
            return Err(format!("`{action}` needs {what}"));
        }
        if value.len() > MAX_TEXT_BYTES {
            return Err(format!(
                "`{action}` is {} bytes; at most {MAX_TEXT_BYTES} are allowed",
                value.len()
            ));
        }
        Ok(value)
    };
    let yes = |value: Option<bool>| -> Result<(), String> {
        if value == Some(true) {
            Ok(())
        } else {
            Err(format!(
                "`{action} = false` does nothing; write `{action} = true` or leave the step out"
            ))
        }
    };
    Ok(match action {
        "annotate" => Step::Annotate(text(s.annotate, "the note's text")?),
        "pause" => {
            let reason = s.reason.unwrap_or_default();
            if reason.len() > MAX_TEXT_BYTES {
                return Err(format!(
                    "`reason` is {} bytes; at most {MAX_TEXT_BYTES} are allowed",
                    reason.len()
                ));
            }
            Step::Pause {
                for_: s.pause.map(|d| d.0).expect("pause is the action"),
                reason,
            }
        }
        "resume" => {
            yes(s.resume)?;
            Step::Resume
        }
        "switchover" => Step::Switchover {
            to: text(s.switchover, "a site")?,
            timeout,
        },
        "failover" => Step::Failover {
            to: text(s.failover, "a site")?,
            timeout,
        },
        "failback" => {
            yes(s.failback)?;
            Step::Failback { timeout }
        }
        "wait_rejoined" => Step::WaitRejoined(s.wait_rejoined.map(|d| d.0).expect("the action")),
        "run" => Step::Run {
            command: text(s.run, "a command")?,
            timeout: timeout.unwrap_or(DEFAULT_RUN_TIMEOUT),
        },
        "manual" => Step::Manual(text(s.manual, "an instruction")?),
        other => unreachable!("{other} is in ACTIONS"),
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `drill run --dry-run --output json`: the plan as palisadectl read it.
#[derive(Debug, serde::Serialize)]
pub struct PlanJson {
    /// The plan's `name`.
    pub name: String,
    /// The plan's `description`; may be empty.
    pub description: String,
    /// The phases, in order.
    pub phases: Vec<PhaseJson>,
}

/// One phase in [`PlanJson::phases`].
#[derive(Debug, serde::Serialize)]
pub struct PhaseJson {
    /// 1-based position.
    pub index: usize,
    /// The phase's name.
    pub name: String,
    /// Its steps, in order.
    pub steps: Vec<StepJson>,
    /// Its checks' names, in order.
    pub checks: Vec<String>,
    /// How long the checks may take to pass, ms.
    pub checks_timeout_ms: u64,
}

/// One step in [`PhaseJson::steps`].
#[derive(Debug, serde::Serialize)]
pub struct StepJson {
    /// 1-based position in the phase.
    pub index: usize,
    /// The action key.
    pub action: String,
    /// What it does, in words.
    pub description: String,
}

impl From<&Plan> for PlanJson {
    fn from(p: &Plan) -> Self {
        Self {
            name: p.name.clone(),
            description: p.description.clone(),
            phases: p
                .phases
                .iter()
                .enumerate()
                .map(|(i, ph)| PhaseJson {
                    index: i + 1,
                    name: ph.name.to_string(),
                    steps: ph
                        .steps
                        .iter()
                        .enumerate()
                        .map(|(j, s)| StepJson {
                            index: j + 1,
                            action: s.action().to_owned(),
                            description: s.describe(),
                        })
                        .collect(),
                    checks: ph.checks.iter().map(|c| c.as_str().to_owned()).collect(),
                    checks_timeout_ms: crate::durations::as_ms(ph.checks_timeout),
                })
                .collect(),
        }
    }
}

/// The plan for `--dry-run`: phases, steps and checks, nothing contacted.
pub fn describe(plan: &Plan, file: &str) -> String {
    let mut out = format!(
        "drill {} from {file}: {} phase(s)\n",
        plan.name,
        plan.phases.len()
    );
    if !plan.description.is_empty() {
        for line in plan.description.lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    for (i, p) in plan.phases.iter().enumerate() {
        out.push_str(&format!(
            "\nphase {}/{}: {}\n",
            i + 1,
            plan.phases.len(),
            p.name
        ));
        for (j, s) in p.steps.iter().enumerate() {
            out.push_str(&format!("  step {}: {}\n", j + 1, s.describe()));
        }
        if !p.checks.is_empty() {
            out.push_str(&format!(
                "  checks (within {}): {}\n",
                human(p.checks_timeout),
                p.checks
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "quarterly-dr-test"
description = "Q3 test"

[[phase]]
name = "checkpoint"
steps = [
  { annotate = "DR test: checkpoint" },
  { pause = "2h", reason = "DR test" },
  { run = "true", timeout = "30m" },
  { manual = "Reboot the standby servers now" },
]
checks = ["leader", "paused"]

[[phase]]
name = "failover"
steps = [
  { resume = true },
  { switchover = "b", timeout = "5m" },
]

[[phase]]
name = "failback"
steps = [{ wait_rejoined = "5m" }, { failback = true }, { failover = "a" }]
checks = ["one-primary"]
checks_timeout = "10s"
"#;

    fn err(text: &str) -> String {
        parse("plan.toml", text).expect_err("invalid").to_string()
    }

    #[test]
    fn a_good_plan_parses_into_phases_steps_and_checks() {
        let plan = parse("plan.toml", GOOD).expect("valid");
        assert_eq!(plan.name, "quarterly-dr-test");
        assert_eq!(plan.description, "Q3 test");
        let names: Vec<PhaseName> = plan.phases.iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                PhaseName::Checkpoint,
                PhaseName::Failover,
                PhaseName::Failback
            ]
        );
        assert_eq!(
            plan.phases[0].steps,
            [
                Step::Annotate("DR test: checkpoint".to_owned()),
                Step::Pause {
                    for_: Duration::from_secs(7200),
                    reason: "DR test".to_owned()
                },
                Step::Run {
                    command: "true".to_owned(),
                    timeout: Duration::from_secs(1800)
                },
                Step::Manual("Reboot the standby servers now".to_owned()),
            ]
        );
        assert_eq!(plan.phases[0].checks, [Check::Leader, Check::Paused]);
        assert_eq!(plan.phases[0].checks_timeout, DEFAULT_CHECKS_TIMEOUT);
        assert_eq!(
            plan.phases[1].steps,
            [
                Step::Resume,
                Step::Switchover {
                    to: "b".to_owned(),
                    timeout: Some(Duration::from_secs(300))
                }
            ]
        );
        assert_eq!(
            plan.phases[2].steps,
            [
                Step::WaitRejoined(Duration::from_secs(300)),
                Step::Failback { timeout: None },
                Step::Failover {
                    to: "a".to_owned(),
                    timeout: None
                }
            ]
        );
        assert_eq!(plan.phases[2].checks_timeout, Duration::from_secs(10));
    }

    #[test]
    fn every_check_name_parses() {
        let plan = parse(
            "p",
            r#"
name = "x"
[[phase]]
name = "check"
checks = ["leader", "one-primary", "standby-streaming", "monitors-one",
          "not-in-progress", "paused", "not-paused", "search-healthy"]
"#,
        )
        .expect("valid");
        let names: Vec<&str> = plan.phases[0].checks.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "leader",
                "one-primary",
                "standby-streaming",
                "monitors-one",
                "not-in-progress",
                "paused",
                "not-paused",
                "search-healthy"
            ]
        );
    }

    #[test]
    fn unknown_phase_name_names_file_phase_and_choices() {
        let e = err("name = \"x\"\n[[phase]]\nname = \"checkpoint\"\nchecks = [\"leader\"]\n[[phase]]\nname = \"prereboot\"\nchecks = [\"leader\"]\n");
        assert!(
            e.starts_with("drill plan plan.toml: phase 2 (prereboot), name: unknown variant `prereboot`, expected one of `checkpoint`, `pre-reboot`"),
            "{e}"
        );
        assert!(e.ends_with("(line 6)"), "{e}");
    }

    #[test]
    fn unknown_step_key_names_the_phase_step_and_key() {
        let e = err(
            "name = \"x\"\n[[phase]]\nname = \"checkpoint\"\nsteps = [{ annotate = \"a\" }, { pauze = \"2h\" }]\n",
        );
        assert!(
            e.starts_with("drill plan plan.toml: phase 1 (checkpoint), step 2: unknown field `pauze`, expected one of `annotate`, `pause`"),
            "{e}"
        );
        assert!(e.contains("(line 4)"), "{e}");
    }

    #[test]
    fn unknown_check_and_phase_key_are_named() {
        let e =
            err("name = \"x\"\n[[phase]]\nname = \"check\"\nchecks = [\"leader\", \"leaderr\"]\n");
        assert!(
            e.starts_with(
                "drill plan plan.toml: phase 1 (check), check 2: unknown variant `leaderr`"
            ),
            "{e}"
        );
        let e = err("name = \"x\"\n[[phase]]\nname = \"check\"\nchecks = [\"leader\"]\nnote = 1\n");
        assert!(
            e.starts_with("drill plan plan.toml: phase 1 (check): unknown field `note`"),
            "{e}"
        );
        let e = err("name = \"x\"\ncolour = 1\n");
        assert!(
            e.starts_with("drill plan plan.toml: unknown field `colour`"),
            "{e}"
        );
    }

    #[test]
    fn malformed_toml_names_the_file_and_line() {
        let e = err("name = \"x\"\n[[phase]\nname = \"check\"\n");
        assert!(
            e.starts_with("drill plan plan.toml: not valid TOML: "),
            "{e}"
        );
        assert!(e.contains("(line 2)"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }

    #[test]
    fn bad_durations_name_the_step_and_value() {
        let e = err("name = \"x\"\n[[phase]]\nname = \"checkpoint\"\nsteps = [{ pause = \"2 fortnights\" }]\n");
        assert!(
            e.starts_with(
                "drill plan plan.toml: phase 1 (checkpoint), step 1, pause: invalid duration \"2 fortnights\""
            ),
            "{e}"
        );
    }

    #[test]
    fn phases_must_follow_the_guide_once_each() {
        let e = err("name = \"x\"\n[[phase]]\nname = \"failover\"\nchecks = [\"leader\"]\n[[phase]]\nname = \"check\"\nchecks = [\"leader\"]\n");
        assert_eq!(
            e,
            "drill plan plan.toml: phase 2 (check): comes after failover (phase 1), but the guide's \
             order is checkpoint, pre-reboot, check, failover, failover-check, failback, failback-check"
        );
        let e = err("name = \"x\"\n[[phase]]\nname = \"check\"\nchecks = [\"leader\"]\n[[phase]]\nname = \"check\"\nchecks = [\"leader\"]\n");
        assert_eq!(
            e,
            "drill plan plan.toml: phase 2 (check): appears twice (first as phase 1); each phase runs at most once"
        );
    }

    #[test]
    fn steps_need_exactly_one_action_and_fitting_modifiers() {
        let phase = |steps: &str| {
            err(&format!(
                "name = \"x\"\n[[phase]]\nname = \"failover\"\nsteps = [{steps}]\n"
            ))
        };
        for (steps, reason) in [
            ("{}", "step 1: has no action; give one of `annotate`"),
            (
                "{ pause = \"1h\", run = \"x\" }",
                "step 1: has both `pause` and `run`; give one action per step",
            ),
            (
                "{ annotate = \"x\", reason = \"y\" }",
                "step 1: `reason` goes with `pause`, not `annotate`",
            ),
            (
                "{ manual = \"x\", timeout = \"1m\" }",
                "step 1: `timeout` goes with `switchover`, `failover`, `failback` or `run`, not `manual`",
            ),
            (
                "{ resume = false }",
                "step 1: `resume = false` does nothing",
            ),
            ("{ switchover = \"\" }", "step 1: `switchover` needs a site"),
            ("{ annotate = \" \" }", "step 1: `annotate` needs the note's text"),
        ] {
            let e = phase(steps);
            assert!(
                e.starts_with(&format!("drill plan plan.toml: phase 1 (failover), {reason}")),
                "{steps}: {e}"
            );
        }
    }

    #[test]
    fn plan_level_mistakes() {
        assert_eq!(
            err("name = \"x\"\n"),
            "drill plan plan.toml: has no [[phase]]; a plan needs at least one"
        );
        assert!(
            err("name = \"../etc\"\n[[phase]]\nname = \"check\"\nchecks = [\"leader\"]\n")
                .starts_with("drill plan plan.toml: name: \"../etc\" must be letters")
        );
        assert!(err("[[phase]]\nname = \"check\"\nchecks = [\"leader\"]\n")
            .contains("missing field `name`"));
        assert_eq!(
            err("name = \"x\"\n[[phase]]\nname = \"check\"\n"),
            "drill plan plan.toml: phase 1 (check): has no steps and no checks"
        );
        assert_eq!(
            err("name = \"x\"\n[[phase]]\nname = \"check\"\nchecks = [\"leader\", \"leader\"]\n"),
            "drill plan plan.toml: phase 1 (check), check 2: leader is listed twice"
        );
        assert_eq!(
            err("name = \"x\"\n[[phase]]\nname = \"check\"\nsteps = [{ annotate = \"x\" }]\nchecks_timeout = \"1m\"\n"),
            "drill plan plan.toml: phase 1 (check), checks_timeout: is set but the phase has no checks"
        );
    }

    #[test]
    fn describe_lists_phases_steps_and_checks() {
        let plan = parse("plan.toml", GOOD).expect("valid");
        let text = describe(&plan, "plan.toml");
        assert!(
            text.starts_with("drill quarterly-dr-test from plan.toml: 3 phase(s)\n  Q3 test\n\nphase 1/3: checkpoint\n  step 1: annotate \"DR test: checkpoint\"\n  step 2: pause automatic failover for 2h: DR test\n  step 3: run `true` (timeout 30m)\n  step 4: manual: Reboot the standby servers now\n  checks (within 30s): leader, paused\n"),
            "{text}"
        );
        assert!(
            text.contains("  step 2: switchover to b (wait up to 5m)\n"),
            "{text}"
        );
        assert!(
            text.ends_with("  step 1: wait until the standby has rejoined and streams (up to 5m)\n  step 2: failback\n  step 3: failover to a\n  checks (within 10s): one-primary\n"),
            "{text}"
        );
    }
}
