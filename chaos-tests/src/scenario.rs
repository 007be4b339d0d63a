//! The named scenarios, the runner that wraps each in a fresh world, a
//! workload, a heal, a settle and the checker, and the results table.

use std::future::Future;
use std::io::Write as _;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;
use serde_json::Value;

use crate::checker::{self, Availability, Expect, GapFrom, History, Report};
use crate::cluster::{read_monitors, Engine, Settings, World, SETTLE};
use crate::faults::Dir;
use crate::netns::SITES;
use crate::workload::Workload;
use crate::{fmt_ms, now_ms, procs, step};

/// The RTO bound for a lost site or a crashed primary under the default
/// crash policy `failover`, from the fault to the failover's end:
/// detection (probe timeout 1 s + `down_after` 1 s), the lease wait
/// (ttl 1.5 s × 1.1), promotion, the app flip, the HAProxy repoint and the
/// checks (about 1 s), with headroom for debug builds on two busy cores.
pub const RTO_MS: i64 = 20_000;

/// Rule (g)'s bound on the longest stretch without a front-door
/// acknowledgement, in a scenario that claims no outage (issue 10): no
/// fault that warrants no failover may cost users more than half a second.
pub const MAX_GAP_MS: i64 = 500;

/// Rule (g)'s bound where the fault cuts the sync standby off (`sync`
/// mode): every commit waits for the standby until the primary's agent
/// degrades replication to async. It does so once commits have waited for
/// `[failover] sync_degrade_after_ms` (3000 ms by default; a world may set
/// less, see `cluster.rs`; in builds before that setting, once the
/// walsender's `wal_sender_timeout` of 2 s dropped the standby), seen by
/// the next probe (200 ms interval), plus the `ALTER SYSTEM` and reload
/// and margin for debug builds on two cores: about 5000 ms, which holds
/// at the default. A write bound by the standby cannot do better.
pub const SYNC_DEGRADE_GAP_MS: i64 = 5_000;

/// A scenario body: injects its faults, heals, and returns when the fault
/// the RTO is counted from was injected.
pub type Body = for<'a> fn(&'a mut World) -> Fut<'a>;

/// What a body returns.
pub type Fut<'a> = Pin<Box<dyn Future<Output = Result<Option<i64>>> + 'a>>;

/// One named scenario.
pub struct Scenario {
    /// Its name, also the test's.
    pub name: &'static str,
    /// What the checker expects.
    pub expect: Expect,
    /// RTO bound for it, ms.
    pub rto_ms: i64,
    /// The world's settings.
    pub settings: fn() -> Settings,
    /// What it does.
    pub body: Body,
    /// Rule (g): no outage. By default every scenario that expects no
    /// failover claims one at [`MAX_GAP_MS`] from its first fault.
    pub availability: Option<Availability>,
    /// Rule (h): at most this share of the links' cut time without
    /// front-door service (link flapping).
    pub flap_share: Option<f64>,
}

impl Scenario {
    fn new(
        name: &'static str,
        expect: Expect,
        rto_ms: i64,
        settings: fn() -> Settings,
        body: Body,
    ) -> Self {
        let availability = (expect == Expect::NoFailover).then_some(Availability {
            max_gap_ms: MAX_GAP_MS,
            from: GapFrom::FirstFault,
        });
        Self {
            name,
            expect,
            rto_ms,
            settings,
            body,
            availability,
            flap_share: None,
        }
    }

    /// Claims rule (h): the front door unavailable for at most `share` of
    /// the time the links were cut.
    fn flap_share(mut self, share: f64) -> Self {
        self.flap_share = Some(share);
        self
    }

    /// Claims no outage with a bound other than [`MAX_GAP_MS`].
    fn max_gap(mut self, ms: i64) -> Self {
        self.availability = Some(Availability {
            max_gap_ms: ms,
            from: GapFrom::FirstFault,
        });
        self
    }

    /// Claims no outage after the last heal (the fault itself warranted a
    /// failover), at [`MAX_GAP_MS`].
    fn no_outage_after_heal(mut self) -> Self {
        self.availability = Some(Availability {
            max_gap_ms: MAX_GAP_MS,
            from: GapFrom::LastHeal,
        });
        self
    }
}

/// How long scenarios watch for a failover that must not happen: longer
/// than detection plus the lease wait (about 4 s) with margin.
const WATCH: Duration = Duration::from_secs(8);

/// How long the availability scenarios watch after a leader change: more
/// than two lease TTLs (1.5 s), so a lease that still depended on the old
/// leader would have run out, and the database been fenced, within it.
const LEASE_WATCH: Duration = Duration::from_secs(4);

/// A deliberate watch: nothing is awaited, the world is left alone for
/// `d` so that something that must not happen has the time to.
pub async fn watch(d: Duration, why: &str) {
    step(&format!("watch {d:?}: {why}"));
    tokio::time::sleep(d).await;
}

/// Waits until a finished failover is recorded; returns its record.
pub async fn wait_failover_done(w: &mut World, timeout: Duration) -> Result<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        for (_, s) in w.statuses().await {
            if let Some(s) = s {
                let f = &s["last_failover"];
                if !f.is_null() && !f["outcome"].is_null() {
                    return Ok(f.clone());
                }
            }
        }
        if Instant::now() > deadline {
            bail!("no finished failover recorded within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The leader's site, as the witnesses agree on it.
pub async fn leader_site(w: &mut World) -> Result<&'static str> {
    let s = w.wait_ready("a leader").await?;
    let id = s["leader_id"].as_u64().context("leader_id")?;
    Ok(SITES[(id - 1) as usize])
}

/// Gathers the history and runs the checker. Acks are read before the
/// final rows, so every ack counted was committed before the read began.
pub async fn collect_and_check(
    w: &mut World,
    wl: &Workload,
    expect: Expect,
    rto_ms: i64,
    fault_at_ms: Option<i64>,
    availability: Option<Availability>,
    flap_share: Option<f64>,
) -> Report {
    let end_ms = now_ms();
    let acks = wl.acks.lock().expect("acks").clone();
    let samples = wl.samples.lock().expect("samples").clone();
    let statuses = w.statuses().await;
    let primary = statuses
        .iter()
        .find_map(|(_, s)| s.as_ref()?["primary_site"].as_str().map(String::from))
        .unwrap_or_else(|| "a".into());
    let final_ids = if primary == "a" || primary == "b" {
        // A primary may be down for a moment even after the cluster
        // settled (restarted in place by its agent): what matters is what
        // it holds once it answers.
        let mut last = Err(String::new());
        for _ in 0..60 {
            last = w.stored_ids(&primary).await.map_err(|e| format!("{e:#}"));
            if last.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        last
    } else {
        Err(format!("no primary recorded ({primary:?})"))
    };
    let monitors = w
        .apps
        .iter()
        .map(|(site, f)| (*site, read_monitors(f).map_err(|e| format!("{e:#}"))))
        .collect();
    checker::check(&History {
        faults: w.log.events(),
        acks,
        samples,
        statuses,
        monitors,
        final_ids,
        fault_at_ms,
        expect,
        rto_ms,
        replication: w.settings.replication.to_string(),
        availability,
        end_ms,
        flap_share,
    })
}

/// `target/chaos-results.md`: the rows of this build's runs.
pub fn results_file() -> PathBuf {
    crate::build_dir()
        .ok()
        .and_then(|d| d.parent().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("chaos-results.md")
}

/// The results table's columns before the rules'.
const TABLE_COLUMNS: &str = "| scenario | outcome | failover time | longest front-door gap (bound) | writes acked (front door / all) | writes lost (allowed by the mode) | wall time |";

/// The header of the results table: the figures, then one column per
/// rule of the checker (`pass`, `FAIL (n)` with n violations, or `n/a`;
/// why a rule did not apply, and what each measured, is in the run's
/// [`rules_file`]).
pub fn table_header() -> String {
    let rules: String = checker::RULES
        .iter()
        .map(|r| format!(" {} {} |", r.id, r.short))
        .collect();
    let cols = TABLE_COLUMNS.matches('|').count() - 1 + checker::RULES.len();
    format!("{TABLE_COLUMNS}{rules}\n|{}", "---|".repeat(cols))
}

/// One row of the results table.
pub fn row(name: &str, r: &Report, wall: Duration, error: Option<&str>) -> String {
    let failed = r.failed_rules();
    let outcome = match (error, failed.is_empty()) {
        (Some(e), _) => format!("ERROR: {}", e.lines().next().unwrap_or("")),
        (None, true) => "pass".to_string(),
        (None, false) => format!(
            "FAIL: {} violation(s) of rule(s) {}",
            r.violations().count(),
            failed.join(",")
        ),
    };
    let fo = match (r.failovers, r.failover_ms, r.recovered_ms) {
        (0, _, Some(ms)) => format!(
            "none (restarted in place, writable after {:.1} s)",
            ms as f64 / 1000.0
        ),
        (0, _, None) => "none".to_string(),
        (n, Some(ms), _) => format!("{n}: {:.1} s after the fault", ms as f64 / 1000.0),
        (n, None, _) => format!("{n}"),
    };
    let gap = match (r.longest_gap, r.max_gap_ms) {
        (None, _) => "none measured".to_string(),
        (Some(g), Some(b)) => format!("{} ms (≤ {b})", g.ms()),
        (Some(g), None) => format!("{} ms (no bound)", g.ms()),
    };
    let gap = match r.flap {
        Some((cut, unavailable)) => {
            format!("{gap}; unavailable {unavailable} ms of {cut} ms cut")
        }
        None => gap,
    };
    let rules: String = checker::RULES
        .iter()
        .map(|rule| {
            let cell = r
                .result(rule.id)
                .map_or_else(|| "not run".to_string(), |x| x.cell());
            format!(" {cell} |")
        })
        .collect();
    format!(
        "| {name} | {outcome} | {fo} | {gap} | {} / {} | {} ({}) | {:.0} s |{rules}",
        r.acked_front_door,
        r.acked,
        r.lost,
        r.lost_allowed,
        wall.as_secs_f64()
    )
}

/// `target/chaos-rules/<name>.md`: every rule's result for the last run of
/// scenario `name`, with what it measured and why a rule did not apply.
pub fn rules_file(name: &str) -> PathBuf {
    results_file()
        .with_file_name("chaos-rules")
        .join(format!("{name}.md"))
}

/// The text of [`rules_file`]: a heading, then one row per rule.
pub fn rules_table(name: &str, r: &Report, error: Option<&str>) -> String {
    let mut out = format!(
        "# {name} ({})\n\n| rule | result | measured | why not applicable / first violation |\n|---|---|---|---|\n",
        stamp()
    );
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    for x in &r.results {
        let why = match &x.verdict {
            checker::Verdict::Pass => String::new(),
            checker::Verdict::NotApplicable(w) => w.clone(),
            checker::Verdict::Fail(v) => v[0].what.clone(),
        };
        out.push_str(&format!(
            "| {} {} | {} | {} | {} |\n",
            x.rule.id,
            x.rule.says,
            x.cell(),
            cell(&x.evidence),
            cell(&why)
        ));
    }
    for v in &r.harness {
        out.push_str(&format!("| settle | FAIL | | {} |\n", cell(&v.what)));
    }
    if let Some(e) = error {
        out.push_str(&format!("\nERROR: {}\n", cell(e)));
    }
    out
}

fn write_rules(name: &str, r: &Report, error: Option<&str>) {
    let f = rules_file(name);
    if let Some(dir) = f.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(&f, rules_table(name, r, error)) {
        eprintln!("could not write {}: {e}", f.display());
    }
}

fn append_row(line: &str) {
    let f = results_file();
    let new = !f.exists();
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&f)
    {
        if new {
            let _ = writeln!(file, "{}", table_header());
        }
        let _ = writeln!(file, "{line}");
    }
}

/// Runs `sc` in a fresh world: start, workload, body, heal, settle, check.
/// Prints the report (every rule's result) and appends its row to the
/// results table; an error or a violation is returned as `Err` with the
/// report and history slices.
pub async fn run(sc: &Scenario) -> Result<Report> {
    run_with(sc, (sc.settings)()).await
}

/// [`run`] with explicit settings.
pub async fn run_with(sc: &Scenario, settings: Settings) -> Result<Report> {
    let (report, error) = run_and_record(sc, settings).await?;
    if error.is_some() || !report.passed() {
        bail!(
            "scenario {} failed: {}\n{}",
            sc.name,
            error.unwrap_or_else(|| format!(
                "{} violation(s) of rule(s) {}",
                report.violations().count(),
                report.failed_rules().join(",")
            )),
            report.slices
        );
    }
    Ok(report)
}

/// [`run_with`], returning the report whatever it says, with the error
/// of the scenario's body or of the harness if there was one; only a
/// world that would not start is an `Err`. Writes the results row and
/// [`rules_file`], and keeps the world's logs if anything failed.
async fn run_and_record(sc: &Scenario, settings: Settings) -> Result<(Report, Option<String>)> {
    let started = Instant::now();
    step(&format!("scenario {}: start the world", sc.name));
    let mut w = World::start(settings).await?;
    let mut wl = w.workload()?;
    let outcome = drive(sc, &mut w, &mut wl).await;
    wl.stop().await;
    let (report, error) = match outcome {
        Ok(r) => (r, None),
        Err((r, e)) => (r, Some(format!("{e:#}"))),
    };
    let line = row(sc.name, &report, started.elapsed(), error.as_deref());
    eprintln!(
        "\n{}\n{line}\n\nscenario {}, rule by rule:\n{}",
        table_header(),
        sc.name,
        report.summary()
    );
    append_row(&line);
    write_rules(sc.name, &report, error.as_deref());
    if error.is_some() || !report.passed() {
        w.keep_logs_in = Some(results_file().with_file_name("chaos-logs").join(format!(
            "{}-{}",
            sc.name,
            now_ms()
        )));
        eprintln!("{}", report.slices);
    }
    Ok((report, error))
}

async fn drive(
    sc: &Scenario,
    w: &mut World,
    wl: &mut Workload,
) -> std::result::Result<Report, (Report, anyhow::Error)> {
    let fail = |e| (Report::default(), e);
    wl.wait_more_acks("front-door", 20, SETTLE)
        .await
        .map_err(fail)?;
    step(&format!("scenario {}: inject", sc.name));
    let body = (sc.body)(w).await;
    // Whatever the body did or failed to do, heal and bring every witness
    // back before judging.
    if w.net().is_cut() {
        w.net().heal().map_err(fail)?;
    }
    for site in SITES {
        if w.witness_pid(site).is_none() {
            w.start_witness(site).map_err(fail)?;
        }
    }
    // A body that failed (a wait that timed out) is still judged: the
    // checker's history slices show what happened instead.
    let (fault_at, body_error) = match body {
        Ok(t) => (t, None),
        Err(e) => (w.log.events().first().map(|e| e.at_ms), Some(e)),
    };
    step(&format!(
        "scenario {}: healed; wait for the cluster to settle",
        sc.name
    ));
    let settled = w.wait_ready("settle after the heal").await;
    let more = match &settled {
        Ok(_) => wl.wait_more_acks("front-door", 5, SETTLE).await,
        Err(_) => Ok(()),
    };
    let mut r = collect_and_check(
        w,
        wl,
        sc.expect,
        sc.rto_ms,
        fault_at,
        sc.availability,
        sc.flap_share,
    )
    .await;
    for (what, res) in [
        ("settle", settled.map(|_| ())),
        ("front door writable after settling", more),
    ] {
        if let Err(e) = res {
            r.harness_failure(what, &e);
        }
    }
    if let Some(e) = body_error {
        r.slices.push_str(&format!("scenario body failed: {e:#}\n"));
        return Err((r, e));
    }
    Ok(r)
}

fn default_settings() -> Settings {
    Settings::default()
}

/// Asynchronous replication (the HA/DR guide's choice): a commit never
/// waits on the standby, so what a flap costs is the lease's doing alone.
fn async_replication() -> Settings {
    Settings {
        replication: "async",
        ..Settings::default()
    }
}

fn failover_policy() -> Settings {
    Settings {
        on_primary_crash: "failover",
        ..Settings::default()
    }
}

fn leader_exits_after_fenced() -> Settings {
    Settings {
        on_primary_crash: "failover",
        failpoints: Some("after-step-fenced=exit".into()),
        ..Settings::default()
    }
}

/// A MariaDB world ([`crate::maria`]) with the default settings.
fn maria() -> Settings {
    Settings {
        engine: Engine::MariaDb,
        ..Settings::default()
    }
}

/// A MariaDB world in `async` replication (see [`async_replication`]).
fn maria_async() -> Settings {
    Settings {
        engine: Engine::MariaDb,
        ..async_replication()
    }
}

/// A MariaDB world whose crashed writer is failed over, not restarted.
fn maria_failover_policy() -> Settings {
    Settings {
        engine: Engine::MariaDb,
        ..failover_policy()
    }
}

/// How long the partition scenario keeps site a cut off from b and c
/// after the failover: the old writer, still reached by the front door
/// and its local writer, must take no write after b's promotion.
const PARTITION_AFTER_FAILOVER: Duration = Duration::from_secs(4);

/// Site a cut off from b and c (both ways), the front door still reaching
/// it: b and c no longer see the writer, fail over to b once its lease has
/// run out, and the old writer, fenced by its own agent, must take no
/// write after the promotion though clients still reach it.
fn partition_a_from_b_c(w: &mut World) -> Fut<'_> {
    Box::pin(async move {
        let t = w.net().cut("a", "b", Dir::Both)?;
        w.net().cut("a", "c", Dir::Both)?;
        let f = wait_failover_done(w, Duration::from_secs(40)).await?;
        step(&format!("failover recorded: {}", f["outcome"]));
        watch(
            PARTITION_AFTER_FAILOVER,
            "site a is still cut off from b and c, reachable from the front door: its old writer must take no write",
        )
        .await;
        w.net().heal()?;
        Ok(Some(t))
    })
}

/// Site a paused whole, as a VM pause would: its witness, the processes
/// the witness started (the lease guard) and its database, SIGSTOPped
/// together; thawed once the failover has begun. The thawed witness,
/// guard and server wake up with a lease long gone: the old writer must
/// take no write after b's promotion.
fn freeze_site_a(w: &mut World) -> Fut<'_> {
    Box::pin(async move {
        let witness = w
            .witness_pid("a")
            .context("witness a is not running, cannot freeze site a")?;
        let t = w.log.record(format!(
            "SIGSTOP site a: witness {witness}, its children (the lease guard) and database a, as a VM pause would"
        ));
        let mut frozen = procs::tree(witness);
        for p in &frozen {
            procs::signal(*p, Signal::SIGSTOP);
        }
        w.log
            .record(format!("SIGSTOP witness a and its children {frozen:?}"));
        let db = w.signal_db("a", Signal::SIGSTOP);
        let began = crate::wait_for("a failover begins", Duration::from_secs(40), || async {
            let s = w.status("c").await?;
            (!s["failover_in_progress"].is_null() || !s["last_failover"].is_null()).then_some(())
        })
        .await;
        // Thawed whatever happened (a frozen witness is not restarted by
        // the runner): the most dangerous moment is a thaw while the
        // failover runs.
        frozen.extend(db.iter().flatten());
        w.thaw("site a (witness, its children, database)", &frozen);
        began?;
        db?;
        let f = wait_failover_done(w, Duration::from_secs(40)).await?;
        step(&format!("failover recorded: {}", f["outcome"]));
        watch(
            Duration::from_secs(3),
            "the thawed old writer must stay fenced",
        )
        .await;
        Ok(Some(t))
    })
}

fn isolate_a(w: &mut World) -> Fut<'_> {
    Box::pin(async move {
        let t = w.net().isolate("a")?;
        let f = wait_failover_done(w, Duration::from_secs(40)).await?;
        step(&format!("failover recorded: {}", f["outcome"]));
        w.net().heal()?;
        Ok(Some(t))
    })
}

async fn isolate_and_watch(w: &mut World, site: &str) -> Result<Option<i64>> {
    let t = w.net().isolate(site)?;
    watch(
        WATCH,
        &format!("site {site} is isolated: no failover may start"),
    )
    .await;
    w.net().heal()?;
    Ok(Some(t))
}

fn isolate_b(w: &mut World) -> Fut<'_> {
    Box::pin(isolate_and_watch(w, "b"))
}

fn isolate_c(w: &mut World) -> Fut<'_> {
    Box::pin(isolate_and_watch(w, "c"))
}

/// How many leader restarts a scenario tries to put the leader at a site.
const MOVE_TRIES: usize = 20;

/// Puts the leader at `site`. Each restart of the leader hands leadership
/// to one of the other two at random (and openraft can keep one witness
/// from winning for a while after it saw a longer log): repeat until it
/// lands on `site`. Every restart is logged as a fault, since it is one.
pub async fn move_leadership_to(w: &mut World, site: &'static str) -> Result<()> {
    for _ in 0..MOVE_TRIES {
        let l = leader_site(w).await?;
        if l == site {
            return Ok(());
        }
        move_leadership_off(w, l).await?;
    }
    if leader_site(w).await? != site {
        bail!("could not move the leader to site {site} in {MOVE_TRIES} tries");
    }
    Ok(())
}

/// Cuts a↔`y`. Unless `leader_at_y`, the leader is first moved off `y`
/// (the plain case: the leader sees both ends); with `leader_at_y` it is
/// moved to `y`, so the primary's agent must renew its lease through the
/// third witness (docs/chaos.md, finding 1).
async fn cut_and_watch(
    w: &mut World,
    x: &'static str,
    y: &'static str,
    leader_at_y: bool,
) -> Result<Option<i64>> {
    if leader_at_y {
        move_leadership_to(w, y).await?;
    } else {
        move_leadership_off(w, y).await?;
    }
    step(&format!("leader at site {}", leader_site(w).await?));
    let t = w.net().cut(x, y, Dir::Both)?;
    watch(
        WATCH,
        &format!("{x}<->{y} cut, the third site sees both: no failover"),
    )
    .await;
    w.net().heal()?;
    Ok(Some(t))
}

fn cut_a_b(w: &mut World) -> Fut<'_> {
    Box::pin(cut_and_watch(w, "a", "b", false))
}

fn cut_a_c(w: &mut World) -> Fut<'_> {
    Box::pin(cut_and_watch(w, "a", "c", false))
}

fn cut_a_b_leader_b(w: &mut World) -> Fut<'_> {
    Box::pin(cut_and_watch(w, "a", "b", true))
}

fn cut_a_c_leader_c(w: &mut World) -> Fut<'_> {
    Box::pin(cut_and_watch(w, "a", "c", true))
}

/// Makes sure the leader is not at `site`: if it is, restarts that
/// witness once the other two have elected a leader (it rejoins as a
/// follower). Logged as a fault, since it is one.
pub async fn move_leadership_off(w: &mut World, site: &'static str) -> Result<()> {
    if leader_site(w).await? != site {
        return Ok(());
    }
    step(&format!(
        "the leader is at site {site}: move leadership off it"
    ));
    w.signal_witness(site, Signal::SIGKILL)?;
    let other = SITES
        .iter()
        .copied()
        .find(|s| *s != site)
        .expect("another site");
    crate::wait_for("a leader among the other two", SETTLE, || async {
        let s = w.status(other).await?;
        let l = SITES[(s["leader_id"].as_u64()? - 1) as usize];
        (l != site).then_some(())
    })
    .await?;
    w.start_witness(site)?;
    w.wait_ready("the restarted witness rejoined as a follower")
        .await?;
    if leader_site(w).await? == site {
        bail!("leadership came back to site {site}");
    }
    Ok(())
}

fn isolate_leader(w: &mut World) -> Fut<'_> {
    Box::pin(async move {
        // Isolating a leader at site a would be a site loss (a failover is
        // warranted there): move leadership off a first.
        move_leadership_off(w, "a").await?;
        let old = leader_site(w).await?;
        let t = w.net().isolate(old)?;
        let others: Vec<&str> = SITES.iter().copied().filter(|s| *s != old).collect();
        let new = crate::wait_for(
            "the two other witnesses elect a new leader",
            SETTLE,
            || async {
                let s = w.status(others[0]).await?;
                let l = SITES[(s["leader_id"].as_u64()? - 1) as usize];
                (l != old).then_some(l)
            },
        )
        .await?;
        step(&format!("leader moved from {old} to {new}"));
        watch(WATCH, "the old leader is isolated: no failover may start").await;
        w.net().heal()?;
        Ok(Some(t))
    })
}

fn kill_primary_db(w: &mut World) -> Fut<'_> {
    Box::pin(async move {
        let t = w.log.record("SIGKILL database a (next line: the signals)");
        w.signal_db("a", Signal::SIGKILL)?;
        let policy = w.settings.on_primary_crash;
        if policy == "failover" {
            wait_failover_done(w, Duration::from_secs(40)).await?;
        } else {
            crate::wait_for(
                "database a running again (restarted in place) or a failover",
                SETTLE,
                || async {
                    if w.db_running("a") {
                        return Some(());
                    }
                    let s = w.status("c").await?;
                    (!s["last_failover"].is_null()).then_some(())
                },
            )
            .await?;
            watch(
                Duration::from_secs(3),
                "after the restart in place: no failover may follow",
            )
            .await;
        }
        Ok(Some(t))
    })
}

fn kill_primary_witness(w: &mut World) -> Fut<'_> {
    Box::pin(async move {
        let t = w.signal_witness("a", Signal::SIGKILL)?;
        watch(
            WATCH,
            "site a's witness is dead, its database fine: no failover",
        )
        .await;
        w.start_witness("a")?;
        Ok(Some(t))
    })
}

fn kill_leader_mid_failover(w: &mut World) -> Fut<'_> {
    Box::pin(async move {
        let t = w
            .log
            .record("SIGKILL database a; every witness runs with after-step-fenced=exit");
        w.signal_db("a", Signal::SIGKILL)?;
        let deadline = Instant::now() + Duration::from_secs(40);
        let exited = loop {
            if let Some(e) = w.exited_witness() {
                break e;
            }
            if Instant::now() > deadline {
                bail!("no witness exited at the failpoint after committing `fenced` within 40 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        w.log.record(format!(
            "witness {} exited with {:?} (failpoint after-step-fenced)",
            exited.0, exited.1
        ));
        if exited.1 != Some(86) {
            bail!(
                "witness {} exited with {:?}, not the failpoint's 86",
                exited.0,
                exited.1
            );
        }
        w.start_witness(exited.0)?;
        let f = wait_failover_done(w, Duration::from_secs(40)).await?;
        let promoted = f["steps"]
            .as_array()
            .map(|s| s.iter().filter(|s| s["step"] == "promoted").count());
        if promoted != Some(1) {
            bail!("the failover record has {promoted:?} `promoted` steps: {f}");
        }
        Ok(Some(t))
    })
}

fn flap_a(w: &mut World) -> Fut<'_> {
    Box::pin(async move {
        let mut first = None;
        for _ in 0..15 {
            let t = w.net().cut("a", "b", Dir::Both)?;
            w.net().cut("a", "c", Dir::Both)?;
            first.get_or_insert(t);
            tokio::time::sleep(Duration::from_secs(1)).await;
            w.net().heal()?;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok(first)
    })
}

fn freeze_primary_db(w: &mut World) -> Fut<'_> {
    Box::pin(async move {
        let pids = w.signal_db("a", Signal::SIGSTOP)?;
        let t = w.log.events().last().map(|e| e.at_ms);
        let down_after = Duration::from_millis(w.settings.down_after_ms);
        // Thaw it while the failover runs: the most dangerous moment for
        // a server that wakes up believing it is still primary.
        crate::wait_for("a failover begins", Duration::from_secs(40), || async {
            let s = w.status("c").await?;
            (!s["failover_in_progress"].is_null() || !s["last_failover"].is_null()).then_some(())
        })
        .await?;
        if t.is_some_and(|t| now_ms() - t < down_after.as_millis() as i64) {
            bail!("the failover began less than down_after after the freeze");
        }
        w.thaw("database a", &pids);
        wait_failover_done(w, Duration::from_secs(40)).await?;
        watch(
            Duration::from_secs(3),
            "the thawed old primary must stay fenced",
        )
        .await;
        Ok(t)
    })
}

fn restart_all_witnesses(w: &mut World) -> Fut<'_> {
    Box::pin(async move {
        let before = w.wait_ready("before the restart").await?;
        let t = w.log.record("SIGTERM all three witnesses at once");
        for site in SITES {
            w.signal_witness(site, Signal::SIGTERM)?;
        }
        for site in SITES {
            w.start_witness(site)?;
        }
        let after = w.wait_ready("the witnesses are back").await?;
        unchanged_across("the restart", &before, &after)?;
        watch(
            Duration::from_secs(4),
            "restarted witnesses must not fail over",
        )
        .await;
        Ok(Some(t))
    })
}

/// Fails unless the epoch and the roles are the same in `after` as in
/// `before`, and no witness's applied index went back.
fn unchanged_across(what: &str, before: &Value, after: &Value) -> Result<()> {
    for key in ["epoch", "primary_site", "standby_site"] {
        if before[key] != after[key] {
            bail!(
                "{key} changed across {what}: {} -> {}",
                before[key],
                after[key]
            );
        }
    }
    let applied = |s: &Value| {
        s["nodes"].as_array().and_then(|n| {
            n.iter()
                .filter_map(|n| n["last_applied_index"].as_u64())
                .min()
        })
    };
    if applied(after) < applied(before) {
        bail!(
            "applied index went back across {what}: {:?} -> {:?}",
            applied(before),
            applied(after)
        );
    }
    Ok(())
}

/// `(leader site, term)` as every witness of `sites` reports it, once
/// they agree on a leader that is not at `not`.
async fn leader_among(
    w: &World,
    sites: &[&'static str],
    not: &str,
    what: &str,
) -> Result<(&'static str, u64)> {
    crate::wait_for(what, SETTLE, || async {
        let mut seen = None;
        for site in sites {
            let s = w.status(site).await?;
            let l = SITES.get(s["leader_id"].as_u64()?.checked_sub(1)? as usize)?;
            let view = (*l, s["term"].as_u64()?);
            if l == &not || seen.is_some_and(|v| v != view) {
                return None;
            }
            seen = Some(view);
        }
        seen
    })
    .await
}

/// The sites other than `site`.
fn others(site: &str) -> Vec<&'static str> {
    SITES.iter().copied().filter(|s| *s != site).collect()
}

/// Moves the leader off site a and says where it is: the leader-fault
/// scenarios are about a leader that is not the primary's witness (a
/// fault of that one takes the primary's agent with it:
/// `kill_primary_witness_no_failover` and the rolling restart).
async fn leader_off_a(w: &mut World) -> Result<&'static str> {
    move_leadership_off(w, "a").await?;
    let l = leader_site(w).await?;
    step(&format!("leader at site {l}"));
    Ok(l)
}

/// The tie-breaker leads and is isolated: the primary's lease, which no
/// longer goes through the leader, must hold through the election.
fn isolate_c_while_leading(w: &mut World) -> Fut<'_> {
    Box::pin(async move {
        move_leadership_to(w, "c").await?;
        step("leader at site c");
        let t = w.net().isolate("c")?;
        let (new, term) = leader_among(w, &["a", "b"], "c", "a and b elect a new leader").await?;
        step(&format!("leader moved from c to {new} (term {term})"));
        watch(
            LEASE_WATCH,
            "the leader's site is isolated: no failover, no outage",
        )
        .await;
        w.net().heal()?;
        Ok(Some(t))
    })
}

fn kill_leader_witness(w: &mut World) -> Fut<'_> {
    Box::pin(async move {
        let l = leader_off_a(w).await?;
        let t = w.signal_witness(l, Signal::SIGKILL)?;
        let (new, term) =
            leader_among(w, &others(l), l, "the two others elect a new leader").await?;
        step(&format!("leader moved from {l} to {new} (term {term})"));
        watch(
            LEASE_WATCH,
            "the old leader is dead: no failover, no outage",
        )
        .await;
        w.start_witness(l)?;
        w.wait_ready("the killed leader's witness rejoined").await?;
        Ok(Some(t))
    })
}

/// How long the leader's witness stays frozen (SIGSTOP): longer than the
/// election that replaces it and several lease TTLs.
const LEADER_FREEZE: Duration = Duration::from_secs(8);

fn sigstop_leader_witness(w: &mut World) -> Fut<'_> {
    Box::pin(async move {
        let l = leader_off_a(w).await?;
        let t = w.signal_witness(l, Signal::SIGSTOP)?;
        let frozen = async {
            let (new, term) =
                leader_among(w, &others(l), l, "the two others elect a new leader").await?;
            step(&format!("leader moved from {l} to {new} (term {term})"));
            let left = LEADER_FREEZE.saturating_sub(Duration::from_millis((now_ms() - t) as u64));
            watch(left, "the old leader is frozen: no failover, no outage").await;
            Ok::<_, anyhow::Error>(())
        }
        .await;
        // Thawed whatever happened: a frozen witness is neither running
        // to the runner (it restarts only dead ones) nor able to settle.
        w.signal_witness(l, Signal::SIGCONT)?;
        frozen?;
        w.wait_ready("the thawed old leader rejoined as a follower")
            .await?;
        Ok(Some(t))
    })
}

fn restart_leader_witness(w: &mut World) -> Fut<'_> {
    Box::pin(async move {
        let l = leader_off_a(w).await?;
        let before = w.wait_ready("before the restart").await?;
        let t = w.signal_witness(l, Signal::SIGTERM)?;
        w.start_witness(l)?;
        let after = w
            .wait_ready("the restarted leader's witness rejoined")
            .await?;
        unchanged_across("the leader's restart", &before, &after)?;
        watch(
            LEASE_WATCH,
            "after the leader's restart: no failover, no outage",
        )
        .await;
        Ok(Some(t))
    })
}

/// A rolling upgrade: each witness stopped (SIGTERM) and started again in
/// turn, the tie-breaker first and the primary's own last, each once the
/// cluster is ready again. Site a's restart is the hard one: the
/// primary's agent lives in that process and must take its lease again
/// before the database's runs out.
fn rolling_restart_witnesses(w: &mut World) -> Fut<'_> {
    Box::pin(async move {
        let before = w.wait_ready("before the rolling restart").await?;
        let mut first = None;
        for site in ["c", "b", "a"] {
            let t = w.signal_witness(site, Signal::SIGTERM)?;
            first.get_or_insert(t);
            w.start_witness(site)?;
            w.wait_ready(&format!(
                "witness {site} restarted; the cluster is ready again"
            ))
            .await?;
        }
        let after = w.wait_ready("after the rolling restart").await?;
        unchanged_across("the rolling restart", &before, &after)?;
        watch(
            LEASE_WATCH,
            "after the rolling restart: no failover, no outage",
        )
        .await;
        Ok(first)
    })
}

/// How long site a stays isolated in `heal_after_long_isolation_of_a`:
/// long after the failover (about 5 s), so that witness a, alone, has
/// started election after election and its term has climbed far.
const LONG_ISOLATION: Duration = Duration::from_secs(20);

/// How long to watch after a heal for a returning witness that deposes
/// the leader: it would do so at its first exchange with the others (a
/// heartbeat every 50 ms, an election timeout of 200–400 ms).
const HEAL_WATCH: Duration = Duration::from_secs(2);

fn heal_after_long_isolation_of_a(w: &mut World) -> Fut<'_> {
    Box::pin(async move {
        let t = w.net().isolate("a")?;
        let f = wait_failover_done(w, Duration::from_secs(40)).await?;
        step(&format!("failover recorded: {}", f["outcome"]));
        let left = LONG_ISOLATION.saturating_sub(Duration::from_millis((now_ms() - t) as u64));
        watch(
            left,
            "site a stays isolated: its witness campaigns alone, its term climbs",
        )
        .await;
        let (leader, term) = leader_among(
            w,
            &["b", "c"],
            "a",
            "b and c agree on their leader before the heal",
        )
        .await?;
        let a_term = w.status("a").await.and_then(|s| s["term"].as_u64());
        step(&format!(
            "before the heal: leader {leader} at term {term}; isolated witness a at term {a_term:?}"
        ));
        w.net().heal()?;
        watch(
            HEAL_WATCH,
            "the healed witness a must not depose the leader",
        )
        .await;
        let after = w.wait_ready("settled after the heal").await?;
        let l2 = after["leader_id"]
            .as_u64()
            .and_then(|id| SITES.get(id.checked_sub(1)? as usize));
        let t2 = after["term"].as_u64();
        if l2 != Some(&leader) || t2 != Some(term) {
            bail!(
                "the heal deposed the leader: leader {leader} at term {term} before the heal, leader {l2:?} at term {t2:?} after it; isolated witness a had reached term {a_term:?} (no pre-vote in openraft 0.9: a returning witness's higher term ends the leader's)"
            );
        }
        Ok(Some(t))
    })
}

/// Site a's witness, and with it the primary's agent and its in-process
/// lease guard, is killed; then site a is isolated. The other two fail
/// over once the lease they granted has run out, which it long has: the
/// database at a, unguarded, must not take a write after that.
fn kill_primary_witness_then_isolate_a(w: &mut World) -> Fut<'_> {
    Box::pin(async move {
        w.signal_witness("a", Signal::SIGKILL)?;
        watch(
            Duration::from_secs(10),
            "site a's witness is dead: the lease it held runs out; its database runs on",
        )
        .await;
        let t = w.net().isolate("a")?;
        let f = wait_failover_done(w, Duration::from_secs(40)).await?;
        step(&format!("failover recorded: {}", f["outcome"]));
        let left =
            Duration::from_secs(15).saturating_sub(Duration::from_millis((now_ms() - t) as u64));
        watch(
            left,
            "site a is isolated without its witness: its database must not take a write after b's promotion",
        )
        .await;
        w.net().heal()?;
        w.start_witness("a")?;
        Ok(Some(t))
    })
}

/// Every named scenario, in the order the suite runs them. Those that
/// expect no failover also claim no outage (rule g) at [`MAX_GAP_MS`],
/// unless they say otherwise.
pub fn all() -> Vec<Scenario> {
    let s = Scenario::new;
    vec![
        s(
            "isolate_site_a_fails_over",
            Expect::Failover,
            RTO_MS,
            default_settings,
            isolate_a,
        ),
        // The standby's site: commits wait for it until sync degrades.
        s(
            "isolate_site_b_no_failover",
            Expect::NoFailover,
            RTO_MS,
            default_settings,
            isolate_b,
        )
        .max_gap(SYNC_DEGRADE_GAP_MS),
        s(
            "isolate_site_c_no_failover",
            Expect::NoFailover,
            RTO_MS,
            default_settings,
            isolate_c,
        ),
        // The primary loses its sync standby: commits wait until sync degrades.
        s(
            "cut_a_b_no_failover",
            Expect::NoFailover,
            RTO_MS,
            default_settings,
            cut_a_b,
        )
        .max_gap(SYNC_DEGRADE_GAP_MS),
        s(
            "cut_a_c_no_failover",
            Expect::NoFailover,
            RTO_MS,
            default_settings,
            cut_a_c,
        ),
        // As cut_a_b_no_failover: commits wait until sync degrades.
        s(
            "cut_a_b_leader_at_b_no_failover",
            Expect::NoFailover,
            RTO_MS,
            default_settings,
            cut_a_b_leader_b,
        )
        .max_gap(SYNC_DEGRADE_GAP_MS),
        s(
            "cut_a_c_leader_at_c_no_failover",
            Expect::NoFailover,
            RTO_MS,
            default_settings,
            cut_a_c_leader_c,
        ),
        // The isolated leader is at b or c (whichever won after it was
        // moved off a); at b it is the standby's site too, and commits wait
        // until sync degrades. The leader at c alone is
        // isolate_site_c_while_leading_no_outage, at MAX_GAP_MS.
        s(
            "isolate_leader_new_leader_no_failover",
            Expect::NoFailover,
            RTO_MS,
            default_settings,
            isolate_leader,
        )
        .max_gap(SYNC_DEGRADE_GAP_MS),
        s(
            "kill_primary_db_restart_policy",
            Expect::RestartOrFailover,
            RTO_MS + 5_000,
            default_settings,
            kill_primary_db,
        ),
        s(
            "kill_primary_db_failover_policy",
            Expect::Failover,
            RTO_MS,
            failover_policy,
            kill_primary_db,
        ),
        s(
            "kill_primary_witness_no_failover",
            Expect::NoFailover,
            RTO_MS,
            default_settings,
            kill_primary_witness,
        ),
        s(
            "kill_leader_mid_failover_one_failover",
            Expect::Failover,
            RTO_MS + 10_000,
            leader_exits_after_fenced,
            kill_leader_mid_failover,
        ),
        s(
            "flap_a_links_at_most_one_failover",
            Expect::AtMostOne,
            RTO_MS,
            // In sync mode every cut of the standby's link blocks commits
            // until the degrade (`sync_degrade_after_ms`), whatever the
            // lease does; the share below is about the lease's fences.
            async_replication,
            flap_a,
        )
        // Issue 10: under half the cut time (it was 31 s of 30 s cut when
        // every lapse of the lease was a kill and a crash recovery).
        .flap_share(0.5),
        s(
            "freeze_primary_db_fenced_after_thaw",
            Expect::Failover,
            RTO_MS,
            failover_policy,
            freeze_primary_db,
        ),
        s(
            "restart_all_witnesses_no_failover",
            Expect::NoFailover,
            RTO_MS,
            default_settings,
            restart_all_witnesses,
        ),
        s(
            "isolate_site_c_while_leading_no_outage",
            Expect::NoFailover,
            RTO_MS,
            default_settings,
            isolate_c_while_leading,
        ),
        s(
            "kill_leader_witness_no_outage",
            Expect::NoFailover,
            RTO_MS,
            default_settings,
            kill_leader_witness,
        ),
        s(
            "sigstop_leader_witness_no_outage",
            Expect::NoFailover,
            RTO_MS,
            default_settings,
            sigstop_leader_witness,
        ),
        s(
            "restart_leader_witness_no_outage",
            Expect::NoFailover,
            RTO_MS,
            default_settings,
            restart_leader_witness,
        ),
        s(
            "rolling_restart_witnesses_no_outage",
            Expect::NoFailover,
            RTO_MS,
            default_settings,
            rolling_restart_witnesses,
        ),
        s(
            "heal_after_long_isolation_of_a",
            Expect::Failover,
            RTO_MS,
            default_settings,
            heal_after_long_isolation_of_a,
        )
        .no_outage_after_heal(),
        s(
            "kill_primary_witness_then_isolate_a",
            Expect::Failover,
            RTO_MS,
            default_settings,
            kill_primary_witness_then_isolate_a,
        ),
        // The same faults on a MariaDB world (the guide's master-master
        // pair; crate::maria): the checker's rules unchanged.
        s(
            "maria_isolate_site_a_fails_over",
            Expect::Failover,
            RTO_MS,
            maria,
            isolate_a,
        ),
        s(
            "maria_partition_a_from_b_c_fails_over",
            Expect::Failover,
            RTO_MS,
            maria,
            partition_a_from_b_c,
        ),
        s(
            "maria_freeze_primary_db_fenced_after_thaw",
            Expect::Failover,
            RTO_MS,
            maria_failover_policy,
            freeze_primary_db,
        ),
        s(
            "maria_freeze_site_a_fenced_after_thaw",
            Expect::Failover,
            RTO_MS,
            maria,
            freeze_site_a,
        ),
        s(
            "maria_flap_a_links_at_most_one_failover",
            Expect::AtMostOne,
            RTO_MS,
            maria_async,
            flap_a,
        )
        .flap_share(0.5),
    ]
}

/// The scenario called `name`.
pub fn named(name: &str) -> Scenario {
    all()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no scenario named {name:?}"))
}

/// The broken-build self-test: "isolate site a" on witnesses whose fence
/// step succeeds without fencing (`unsafe-skip-fence=on`), async
/// replication and a long lease (so the old primary's own agent keeps its
/// database writable for seconds after the promotion, as a real broken
/// fence would). Its row and rules file are named
/// `broken_fence_isolate_site_a`. Returns the checker's report, which
/// must have caught it ([`Report::caught_broken_fence`]: rule 1 or 2
/// failed); an `Err` when the run itself failed before the checker could
/// judge it.
pub async fn broken_fence() -> Result<Report> {
    broken_fence_with(Engine::Postgres).await
}

/// [`broken_fence`] in a world of `engine`'s databases; a MariaDB world's
/// row and rules file are named `maria_broken_fence_isolate_site_a`.
pub async fn broken_fence_with(engine: Engine) -> Result<Report> {
    let sc = Scenario {
        name: match engine {
            Engine::Postgres => "broken_fence_isolate_site_a",
            Engine::MariaDb => "maria_broken_fence_isolate_site_a",
        },
        ..named("isolate_site_a_fails_over")
    };
    let settings = Settings {
        engine,
        failpoints: Some("unsafe-skip-fence=on".into()),
        replication: "async",
        lease_ttl_ms: 8000,
        ..Settings::default()
    };
    let (r, error) = run_and_record(&sc, settings).await?;
    if r.caught_broken_fence() {
        eprintln!(
            "broken-fence: the checker caught the broken fence: rule(s) {} failed\n{}",
            r.failed_rules().join(","),
            r.summary()
        );
        return Ok(r);
    }
    match error {
        Some(e) => bail!("broken-fence: the run failed before the checker could judge it: {e}"),
        None => Ok(r),
    }
}

/// `fmt_ms` of now, for headers.
pub fn stamp() -> String {
    fmt_ms(now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::{Rule, RuleResult, Violation};

    fn report(results: Vec<RuleResult>) -> Report {
        Report {
            results,
            ..Report::default()
        }
    }

    fn columns(line: &str) -> usize {
        line.matches('|').count() - 1
    }

    #[test]
    fn a_row_has_a_cell_per_column_and_starts_as_ci_greps_it() {
        let pass: Vec<RuleResult> = checker::RULES
            .iter()
            .map(|r| RuleResult::judged(*r, Vec::new(), String::new()))
            .collect();
        let line = row("cut_a_b_no_failover", &report(pass), Duration::ZERO, None);
        // `.ci/run` counts the lines matching `^| [a-z_]* | pass |`.
        assert!(line.starts_with("| cut_a_b_no_failover | pass |"), "{line}");
        let header = table_header();
        let (names, rule) = header.split_once('\n').expect("two lines");
        assert_eq!(columns(names), columns(&line));
        assert_eq!(columns(rule), columns(&line));
        assert!(names.ends_with("| g no outage | h flap share |"), "{names}");
        assert!(line.ends_with("| pass | pass |"), "{line}");
    }

    #[test]
    fn a_failed_rule_shows_in_the_outcome_and_its_own_column() {
        let rule: &Rule = &checker::RULES[1];
        let mut results: Vec<RuleResult> = checker::RULES
            .iter()
            .map(|r| RuleResult::not_applicable(*r, "why not", String::new()))
            .collect();
        results[1] = RuleResult::judged(
            *rule,
            vec![Violation::new(*rule, "a | b\nc".into(), None)],
            String::new(),
        );
        let r = report(results);
        let line = row("x", &r, Duration::ZERO, None);
        assert!(
            line.starts_with("| x | FAIL: 1 violation(s) of rule(s) 2 |"),
            "{line}"
        );
        assert!(
            line.ends_with("| n/a | FAIL (1) | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |"),
            "{line}"
        );
        let t = rules_table("x", &r, None);
        assert!(
            t.contains(
                "| 2 nothing promoted before the old primary is fenced | FAIL (1) |  | a \\| b c |"
            ),
            "{t}"
        );
        assert!(t.contains("| n/a |  | why not |"), "{t}");
        // Before the checker ran (the harness failed first).
        let line = row("x", &Report::default(), Duration::ZERO, Some("no world"));
        assert!(line.starts_with("| x | ERROR: no world |"), "{line}");
        assert!(line.ends_with("| not run |"), "{line}");
    }
}
