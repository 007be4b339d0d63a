//! `--output table`: padded columns for people.

use palisade_api::v1::{
    AnnotateReply, DatabaseView, FailoverSummary, JournalReply, Maintenance, MariaDbSemiSync,
    MariaDbView, Role, SearchView, StatusReply, StepCheck, StepTiming,
};

use crate::json::role_name;
use crate::rfc3339::rfc3339_millis;

/// Space between table columns.
const GAP: &str = "  ";

/// Shown in a table cell when a value is unset or empty.
const NONE: &str = "-";

/// Longest line the database and failover blocks print, in chars; longer
/// ones (a long step detail or reason) are cut and end in [`CUT`]. JSON
/// output carries the full text.
pub const MAX_LINE: usize = 160;

/// Marks a line cut at [`MAX_LINE`].
const CUT: char = '…';

/// Longest error class shown in a `down (<class>)` state.
const MAX_CLASS: usize = 24;

/// Marks a failed check of a step, in the column where a passed one has
/// [`OK`].
const FAILED: &str = "FAILED";

/// Marks a passed check of a step.
const OK: &str = "ok";

/// Appended to the `monitorsEnabled:` line unless exactly one app is on.
const MONITORS_WARNING: &str = "  <- WARNING: exactly one app must have monitorsEnabled=true";

/// `status` for people: a header line, the node table and, when the leader
/// reported it, the replication table; then, when the cluster has a
/// database, the database roles, the leader's detector and each witness's
/// view of each database (for a MariaDB master-master pair, also of the
/// replication between the masters); then, when witnesses reported them, each
/// witness's view of each Elasticsearch and each site's `monitorsEnabled`;
/// then the failover in progress and the last failover, when there are.
pub fn status_table(r: &StatusReply) -> String {
    let cluster = if r.cluster_name.is_empty() {
        "(unnamed)"
    } else {
        &r.cluster_name
    };
    let leader = match r.leader_id {
        Some(id) => format!("leader {id}"),
        None => "leader: unknown".to_owned(),
    };
    let mut out = format!(
        "cluster {} — answered by node {}, {leader} (term {})\n",
        cell(cluster),
        r.node_id,
        r.term
    );
    // Right under the header: a leader without a quorum can do nothing,
    // and while paused nothing fails over on its own: the first things an
    // operator must know.
    if r.leader_id.is_some() && r.quorum == "lost" {
        out.push_str(&no_quorum_line(r));
        out.push('\n');
    }
    if let Some(m) = &r.maintenance {
        out.push_str(&maintenance_line(m));
        out.push('\n');
    }
    // An insecure witness, or a certificate close to its end, is said as
    // loudly as a lost quorum; a healthy TLS setup in one quiet line.
    if !r.transport.is_empty() {
        out.push_str(&format!("transport: {}", cell(&r.transport)));
        if !r.caller.is_empty() {
            out.push_str(&format!("; you are {}", cell(&r.caller)));
        }
        out.push('\n');
    }
    out.push('\n');

    // The NOTE column only earns its width when some node has something to say.
    let with_note = r.nodes.iter().any(|n| !n.error.is_empty());
    let mut headers = vec![
        "ID",
        "SITE",
        "ROLE",
        "TERM",
        "LEADER",
        "LAST LOG",
        "APPLIED",
        "CONTROL ADDR",
    ];
    if with_note {
        headers.push("NOTE");
    }
    let rows: Vec<Vec<String>> = r
        .nodes
        .iter()
        .map(|n| {
            let unreachable = Role::try_from(n.role) == Ok(Role::Unreachable);
            let mut row = vec![
                n.id.to_string(),
                text_or_none(&n.site),
                role_name(n.role).to_owned(),
                // An unreachable node's term is a zero filler, not an observation.
                if unreachable {
                    NONE.to_owned()
                } else {
                    n.term.to_string()
                },
                opt(n.leader_id),
                opt(n.last_log_index),
                opt(n.last_applied_index),
                text_or_none(&n.control_addr),
            ];
            if with_note {
                row.push(cell(&n.error));
            }
            row
        })
        .collect();
    out.push_str(&render_table(&headers, &rows));

    if !r.replication.is_empty() {
        out.push_str("\nreplication (leader's view)\n");
        let rows: Vec<Vec<String>> = r
            .replication
            .iter()
            .map(|p| {
                vec![
                    p.id.to_string(),
                    opt(p.matched_index),
                    p.lag_entries.to_string(),
                    match p.last_contact_ms {
                        Some(ms) => format!("{ms} ms ago"),
                        None => "never".to_owned(),
                    },
                ]
            })
            .collect();
        out.push_str(&render_table(
            &["PEER", "MATCHED", "LAG", "LAST CONTACT"],
            &rows,
        ));
    }

    if !r.primary_site.is_empty() {
        out.push('\n');
        out.push_str(&clip_lines(&databases_block(r)));
    }
    if let Some(block) = search_block(r) {
        out.push('\n');
        out.push_str(&clip_lines(&block));
    }
    if let Some(f) = &r.failover_in_progress {
        out.push('\n');
        out.push_str(&clip_lines(&failover_in_progress_block(f)));
    }
    if let Some(f) = &r.last_failover {
        out.push('\n');
        out.push_str(&clip_lines(&last_failover_block(f)));
    }
    out
}

/// The database roles, the detector and the table of database views.
fn databases_block(r: &StatusReply) -> String {
    let standby = if r.standby_site.is_empty() {
        "no standby".to_owned()
    } else {
        format!("standby {}", cell(&r.standby_site))
    };
    let mode = if r.replication_mode.is_empty() {
        String::new()
    } else {
        format!(" ({})", cell(&r.replication_mode))
    };
    let rejoin = if r.standby_needs_rejoin {
        " — standby must rejoin"
    } else {
        ""
    };
    let detector = if r.assessment.is_empty() {
        "unknown (no leader answered)".to_owned()
    } else {
        cell(&r.assessment)
    };
    let mut out = format!(
        "databases: primary {}, {standby}{mode} — epoch {}{rejoin}\ndetector: {detector}\nlease: {}\n\n",
        cell(&r.primary_site),
        r.epoch,
        lease_line(r)
    );

    let rows: Vec<Vec<String>> = r
        .nodes
        .iter()
        .flat_map(|n| n.databases.iter().map(move |d| database_row(n.id, d)))
        .collect();
    // A MariaDB pair's position is binary log coordinates, not an LSN.
    let mariadb = r
        .nodes
        .iter()
        .any(|n| n.databases.iter().any(|d| d.mariadb.is_some()));
    let position = if mariadb { "POSITION" } else { "LSN" };
    if rows.is_empty() {
        out.push_str("each witness's view of each database: no witness reported one\n");
    } else {
        out.push_str("each witness's view of each database\n");
        out.push_str(&render_table(
            &[
                "WITNESS",
                "SITE",
                "STATE",
                position,
                "LAG",
                "STREAMING",
                "AGE",
            ],
            &rows,
        ));
    }
    if mariadb {
        out.push('\n');
        out.push_str(&masters_block(r));
    }
    out
}

/// A MariaDB master-master pair: each witness's view of each master's
/// replication from the other and of the semi-sync in force on it, then a
/// line for each replication error a master reports.
fn masters_block(r: &StatusReply) -> String {
    let views = || {
        r.nodes.iter().flat_map(|n| {
            n.databases
                .iter()
                .filter_map(move |d| d.mariadb.as_ref().map(|m| (n.id, d, m)))
        })
    };
    let rows: Vec<Vec<String>> = views().map(|(id, d, m)| master_row(id, d, m)).collect();
    let mut out = "replication between the masters (each witness's view)\n".to_owned();
    out.push_str(&render_table(
        &[
            "WITNESS",
            "SITE",
            "READ_ONLY",
            "FROM",
            "IO",
            "SQL",
            "BEHIND",
            "READ / EXECUTED",
            "GTID_SLAVE_POS",
            "SEMI-SYNC",
        ],
        &rows,
    ));
    for (id, d, m) in views() {
        for (thread, error) in [("IO", &m.last_io_error), ("SQL", &m.last_sql_error)] {
            if !error.is_empty() {
                out.push_str(&format!(
                    "witness {id}, site {}: last {thread} error: {}\n",
                    text_or_none(&d.site),
                    cell(error)
                ));
            }
        }
    }
    out
}

/// One row of [`masters_block`]: what witness `witness` saw of the master
/// at `d.site`. A master it could not reach is `down (<class>)` and
/// nothing else.
fn master_row(witness: u64, d: &DatabaseView, m: &MariaDbView) -> Vec<String> {
    let mut row = vec![witness.to_string(), text_or_none(&d.site)];
    if !d.reachable {
        row.push(down_state(&d.error));
        row.extend(std::iter::repeat_n(NONE.to_owned(), 7));
        return row;
    }
    let from = match (m.replicates_from.as_str(), m.replicates_from_server_id) {
        ("", _) => NONE.to_owned(),
        (from, Some(id)) => format!("{} (server_id {id})", cell(from)),
        (from, None) => cell(from),
    };
    row.extend([
        yes_no(m.read_only, "yes", "no").to_owned(),
        from,
        text_or_none(&m.io_running),
        yes_no(m.sql_running, "Yes", "No").to_owned(),
        m.seconds_behind_master
            .map_or_else(|| NONE.to_owned(), |s| format!("{s} s")),
        read_executed(&m.read_position, &m.executed_position),
        text_or_none(&m.gtid_slave_pos),
        m.semi_sync
            .as_ref()
            .map_or_else(|| NONE.to_owned(), semi_sync),
    ]);
    row
}

/// `yes` or `no` for a known flag, [`NONE`] for an unknown one.
fn yes_no(v: Option<bool>, yes: &'static str, no: &'static str) -> &'static str {
    match v {
        Some(true) => yes,
        Some(false) => no,
        None => NONE,
    }
}

/// The READ / EXECUTED cell: `file:pos / file:pos`, the executed one as
/// its position alone when it is in the file read (as it nearly always
/// is); [`NONE`] without replication.
fn read_executed(read: &str, executed: &str) -> String {
    if read.is_empty() && executed.is_empty() {
        return NONE.to_owned();
    }
    let executed = match (read.rsplit_once(':'), executed.rsplit_once(':')) {
        (Some((file, _)), Some((same, pos))) if file == same => pos,
        _ => executed,
    };
    format!("{} / {}", text_or_none(read), text_or_none(executed))
}

/// The SEMI-SYNC cell: what is in force on the master's own commits
/// (`active (1 client, 10000 ms)` with its timeout, `off`, or `FELL BACK
/// TO ASYNC (0 clients)` while enabled but a timeout fell back to
/// asynchronous replication), then `; acks` when it acks, as a replica,
/// what it receives.
fn semi_sync(s: &MariaDbSemiSync) -> String {
    let clients = if s.clients == 1 { "client" } else { "clients" };
    let mut out = match (s.enabled, s.active) {
        (false, _) => "off".to_owned(),
        (true, true) => format!("active ({} {clients}, {} ms)", s.clients, s.timeout_ms),
        // What is in force first: the line may be cut at MAX_LINE.
        (true, false) => format!("FELL BACK TO ASYNC ({} {clients})", s.clients),
    };
    if s.replica_acks {
        out.push_str("; acks");
    }
    out
}

/// The primary's quorum lease, as its own site's witness tells it: the
/// one fact that says whether the primary may take writes right now.
fn lease_line(r: &StatusReply) -> String {
    let site = cell(&r.primary_site);
    let Some(n) = r.nodes.iter().find(|n| n.site == r.primary_site) else {
        return format!("unknown (no witness at site {site})");
    };
    if Role::try_from(n.role) == Ok(Role::Unreachable) {
        return format!("unknown (site {site}'s witness did not answer)");
    }
    match n.lease_remaining_ms {
        Some(ms) if n.serving_under_lease => {
            format!("held by site {site}'s agent, {ms} ms left; the primary serves under it")
        }
        Some(ms) => format!(
            "held by site {site}'s agent, {ms} ms left; the primary is not yet confirmed running"
        ),
        None => format!("not held by site {site}'s agent: its primary takes no writes"),
    }
}

/// One row of the database views: what witness `witness` saw of `d`.
fn database_row(witness: u64, d: &DatabaseView) -> Vec<String> {
    let standby = d.reachable && d.in_recovery == Some(true);
    let state = match (d.reachable, d.in_recovery) {
        (false, _) => down_state(&d.error),
        (true, Some(true)) => "standby".to_owned(),
        (true, Some(false)) => "primary".to_owned(),
        (true, None) => "up (role unknown)".to_owned(),
    };
    let lag = match d.replay_lag_seconds {
        Some(s) if standby && s.is_finite() => format!("{s:.1} s"),
        _ => NONE.to_owned(),
    };
    let streaming = match (standby, d.streaming) {
        (false, _) => NONE,
        (true, true) => "yes",
        (true, false) => "no",
    };
    // A MariaDB master's projection has a binary log position as "LSN":
    // its coordinates say more (the writer's own binary log; the other
    // master's read position in the writer's).
    let position = match &d.mariadb {
        Some(m) if standby => text_or_none(&m.read_position),
        Some(m) => text_or_none(&m.binlog_position),
        None => text_or_none(&d.lsn),
    };
    vec![
        witness.to_string(),
        text_or_none(&d.site),
        state,
        position,
        lag,
        streaming.to_owned(),
        format!("{} ms", d.age_ms),
    ]
}

/// Each witness's view of each Elasticsearch, then the `monitorsEnabled:`
/// line; `None` when no witness reported either.
fn search_block(r: &StatusReply) -> Option<String> {
    let rows: Vec<Vec<String>> = r
        .nodes
        .iter()
        .flat_map(|n| n.search.iter().map(move |s| search_row(n.id, s)))
        .collect();
    let monitors = monitors_line(r);
    if rows.is_empty() && monitors.is_none() {
        return None;
    }
    let mut out = String::new();
    if !rows.is_empty() {
        out.push_str("each witness's view of each Elasticsearch\n");
        out.push_str(&render_table(
            &["WITNESS", "SITE", "STATE", "NODES", "LATENCY", "AGE"],
            &rows,
        ));
    }
    if let Some(line) = monitors {
        out.push_str(&line);
        out.push('\n');
    }
    Some(out)
}

/// One row of the Elasticsearch views: what witness `witness` saw of `s`.
fn search_row(witness: u64, s: &SearchView) -> Vec<String> {
    let state = if s.reachable {
        match s.status.as_str() {
            "" => "up (status unknown)".to_owned(),
            // `green`, `yellow`, `red`, or whatever a newer server sends.
            status => clip(&cell(status), MAX_CLASS),
        }
    } else {
        down_state(&s.error)
    };
    vec![
        witness.to_string(),
        text_or_none(&s.site),
        state,
        s.number_of_nodes
            .map_or_else(|| NONE.to_owned(), |n| n.to_string()),
        format!("{} ms", s.latency_ms),
        format!("{} ms", s.age_ms),
    ]
}

/// `monitorsEnabled: a=false b=true`: each witness's own site's app as it
/// read it back, `?` for a witness that did not say, in node order; with
/// [`MONITORS_WARNING`] unless exactly one site's app is on. `None` when no
/// witness said.
fn monitors_line(r: &StatusReply) -> Option<String> {
    if r.nodes.iter().all(|n| n.monitors_enabled.is_none()) {
        return None;
    }
    let mut line = "monitorsEnabled:".to_owned();
    for n in &r.nodes {
        let value = match n.monitors_enabled {
            Some(true) => "true",
            Some(false) => "false",
            None => "?",
        };
        line.push_str(&format!(" {}={value}", text_or_none(&n.site)));
    }
    // Counted by site: two witnesses of one site read the same app.
    let on = crate::json::monitors_by_site(r)
        .values()
        .filter(|on| **on)
        .count();
    if on != 1 {
        line.push_str(MONITORS_WARNING);
    }
    Some(line)
}

/// `down (<class>)` for a probe that did not get through, or `down` when
/// the server gave no reason.
fn down_state(error: &str) -> String {
    match error_class(error) {
        "" => "down".to_owned(),
        class => format!("down ({})", clip(&cell(class), MAX_CLASS)),
    }
}

/// The class of a database error the server sends as `<class>: <detail>`
/// (`refused`, `timeout`, `auth`, …); the whole text when it has no class.
fn error_class(error: &str) -> &str {
    error
        .split_once(':')
        .map_or(error, |(class, _)| class)
        .trim()
}

/// `PAUSED by X until T: reason` (`until resumed` without an end; no
/// `: reason` without one), cut at [`MAX_LINE`].
pub fn maintenance_line(m: &Maintenance) -> String {
    let until = m
        .until_ms
        .map_or_else(|| "resumed".to_owned(), rfc3339_millis);
    let mut line = format!("PAUSED by {} until {until}", text_or_none(&m.by));
    if !m.reason.is_empty() {
        line.push_str(": ");
        line.push_str(&cell(&m.reason));
    }
    clip(&line, MAX_LINE)
}

/// What an operation is called in tables: its kind, or `failover` when the
/// server did not say (servers before operator operations only failed
/// over).
pub fn kind_label(kind: &str) -> String {
    if kind.is_empty() {
        "failover".to_owned()
    } else {
        cell(kind)
    }
}

/// The failover under way: what, why, and the steps done so far.
fn failover_in_progress_block(f: &FailoverSummary) -> String {
    let mut out = format!(
        "{} IN PROGRESS epoch {}: {} -> {} ({}): {}\n  started {}\n",
        kind_label(&f.kind).to_uppercase(),
        f.epoch,
        text_or_none(&f.from_site),
        text_or_none(&f.to_site),
        text_or_none(&f.trigger),
        text_or_none(&f.reason),
        rfc3339_millis(f.started_at_ms),
    );
    out.push_str(&steps_table(&f.steps));
    out
}

/// The last finished failover: what, why, how it ended, how long it and
/// each of its steps took.
fn last_failover_block(f: &FailoverSummary) -> String {
    let outcome = if f.outcome.is_empty() {
        "no outcome".to_owned()
    } else {
        cell(&f.outcome)
    };
    let (took, finished) = match f.finished_at_ms {
        Some(end) => (
            format!("took {}", millis(end.saturating_sub(f.started_at_ms))),
            format!(", finished {}", rfc3339_millis(end)),
        ),
        None => ("not finished".to_owned(), String::new()),
    };
    let mut out = format!(
        "last {}: epoch {}, {} -> {} ({}), {took}\n  outcome: {outcome}\n  reason: {}\n  started {}{finished}\n",
        kind_label(&f.kind),
        f.epoch,
        text_or_none(&f.from_site),
        text_or_none(&f.to_site),
        text_or_none(&f.trigger),
        text_or_none(&f.reason),
        rfc3339_millis(f.started_at_ms),
    );
    out.push_str(&steps_table(&f.steps));
    out
}

/// The steps of a failover, indented under its block, each with how long
/// it took and how it was done. A step's checks (the `verified` step's)
/// follow its row, one a line, a failed one marked `FAILED`.
fn steps_table(steps: &[StepTiming]) -> String {
    if steps.is_empty() {
        return "  no step done yet\n".to_owned();
    }
    let rows: Vec<Vec<String>> = steps
        .iter()
        .map(|s| {
            vec![
                text_or_none(&s.step),
                millis(s.done_at_ms.saturating_sub(s.started_at_ms)),
                step_detail(s),
            ]
        })
        .collect();
    let table = render_table(&["STEP", "TOOK", "DETAIL"], &rows);
    let mut lines = table.lines();
    let mut out = String::new();
    if let Some(header) = lines.next() {
        out.push_str(&format!("  {header}\n"));
    }
    // render_table writes one line per row: cells are escaped.
    for (line, s) in lines.zip(steps) {
        out.push_str(&format!("  {line}\n"));
        for check in &s.checks {
            out.push_str(&check_line(check));
        }
    }
    out
}

/// One step of an operation as `switchover`, `failover` and `failback`
/// print it while they wait: `  fenced        210 ms  how it was done`,
/// the step's checks (the `verified` step's) one a line below it; every
/// line cut at [`MAX_LINE`].
pub fn progress_step(s: &StepTiming) -> String {
    let took = millis(s.done_at_ms.saturating_sub(s.started_at_ms));
    let mut out = format!(
        "  {:<11} {took:>8}  {}",
        text_or_none(&s.step),
        step_detail(s)
    )
    .trim_end()
    .to_owned();
    out.push('\n');
    for check in &s.checks {
        out.push_str(&check_line(check));
    }
    clip_lines(&out)
}

/// The DETAIL cell of a step: for a step with checks, how many and how
/// many failed, counted from the checks themselves (their lines follow);
/// else the step's detail.
fn step_detail(s: &StepTiming) -> String {
    if s.checks.is_empty() {
        cell(&s.detail)
    } else {
        checks_summary(&s.checks)
    }
}

/// How many checks, how many failed: `3 checks passed:` or
/// `4 checks, 1 FAILED:`.
fn checks_summary(checks: &[StepCheck]) -> String {
    let failed = checks.iter().filter(|c| !c.ok).count();
    let noun = if checks.len() == 1 { "check" } else { "checks" };
    if failed == 0 {
        format!("{} {noun} passed:", checks.len())
    } else {
        format!("{} {noun}, {failed} {FAILED}:", checks.len())
    }
}

/// One check of a step on its own line under the step: `ok` or `FAILED`
/// in a column of its own, then `name: detail` (just the name when the
/// server saw nothing to say).
fn check_line(check: &StepCheck) -> String {
    let result = if check.ok { OK } else { FAILED };
    format!("    {result:<6}  {}\n", check_text(check))
}

/// A check as `name: detail`, or `name` alone when the detail is empty;
/// escaped for one line.
fn check_text(check: &StepCheck) -> String {
    let name = text_or_none(&check.name);
    if check.detail.is_empty() {
        name
    } else {
        format!("{name}: {}", cell(&check.detail))
    }
}

/// A duration in milliseconds, as `210 ms`.
pub fn millis(ms: i64) -> String {
    format!("{ms} ms")
}

/// `s` cut to at most `max` chars, the last of them [`CUT`] when cut.
pub fn clip(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push(CUT);
    out
}

/// Every line of `text` cut to [`MAX_LINE`] chars.
fn clip_lines(text: &str) -> String {
    text.lines()
        .map(|line| clip(line, MAX_LINE) + "\n")
        .collect()
}

/// `annotate` for people.
pub fn annotate_text(r: &AnnotateReply) -> String {
    if r.duplicate {
        return format!(
            "already noted at log index {} by request {} (nothing added; leader {})\n",
            r.log_index, r.request_id, r.leader_id
        );
    }
    format!(
        "noted at log index {} (leader {})\n",
        r.log_index, r.leader_id
    )
}

/// `NO QUORUM: …`: the leader has not heard from a majority within the
/// election timeout.
pub fn no_quorum_line(r: &StatusReply) -> String {
    let last = match r.leader_millis_since_quorum_ack {
        Some(ms) => format!("a majority last answered it {} ago", millis(ms as i64)),
        None => "no majority has answered it since it became leader".to_owned(),
    };
    format!(
        "NO QUORUM: leader {} heard from {} of {} witnesses ({} needed) within {} ms; {last}; it \
         cannot commit anything",
        r.leader_id.unwrap_or_default(),
        r.quorum_acked,
        r.nodes.len(),
        r.quorum_needed,
        r.quorum_timeout_ms
    )
}

/// `journal` for people: one row per note, oldest first.
pub fn journal_table(r: &JournalReply) -> String {
    let rows: Vec<Vec<String>> = r
        .entries
        .iter()
        .map(|e| {
            vec![
                e.log_index.to_string(),
                rfc3339_millis(e.at_unix_ms),
                cell(&e.author),
                cell(&e.text),
            ]
        })
        .collect();
    render_table(&["INDEX", "WHEN", "AUTHOR", "TEXT"], &rows)
}

/// Left-aligned columns padded to the widest cell, two spaces apart. Lines
/// carry no trailing spaces, so the last column is never padded.
pub fn render_table<H: AsRef<str>>(headers: &[H], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h.as_ref())).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(c));
        }
    }
    let header: Vec<&str> = headers.iter().map(AsRef::as_ref).collect();
    let mut out = String::new();
    let body = rows.iter().map(|r| r.iter().map(String::as_str).collect());
    for line in std::iter::once(header).chain(body) {
        let mut text = String::new();
        for (i, (c, w)) in line.iter().zip(&widths).enumerate() {
            if i > 0 {
                text.push_str(GAP);
            }
            text.push_str(c);
            text.extend(std::iter::repeat_n(' ', w.saturating_sub(width(c))));
        }
        out.push_str(text.trim_end_matches(' '));
        out.push('\n');
    }
    out
}

/// Display width, counted in chars: exact for the ASCII we mostly show and
/// close enough for the rest without pulling in a unicode-width crate.
fn width(s: &str) -> usize {
    s.chars().count()
}

/// A server-supplied string made safe for one table cell: control characters
/// (a newline in a note, say) would break the row, so they are escaped.
pub fn cell(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// A cell for a string that may be empty.
pub fn text_or_none(s: &str) -> String {
    if s.is_empty() {
        NONE.to_owned()
    } else {
        cell(s)
    }
}

/// A cell for an optional number.
fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| NONE.to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn status_table_has_header_aligned_columns_and_replication() {
        let expected = "\
cluster palisade-local — answered by node 2, leader 1 (term 5)

ID  SITE    ROLE         TERM  LEADER  LAST LOG  APPLIED  CONTROL ADDR    NOTE
1   a       leader       5     1       12        12       127.0.0.1:7401
2   b       follower     5     1       12        12       127.0.0.1:7402
3   site-c  unreachable  -     -       -         -        127.0.0.1:7403  connection refused

replication (leader's view)
PEER  MATCHED  LAG  LAST CONTACT
2     12       0    42 ms ago
3     -        12   never
";
        let got = status_table(&fixtures::status());
        assert_eq!(got, expected, "got:\n{got}");

        // Every value starts in the column its header starts in.
        let lines: Vec<&str> = got.lines().collect();
        let header = lines[2];
        for (name, value_row, value) in [
            ("ROLE", 5, "unreachable"),
            ("CONTROL ADDR", 3, "127.0.0.1:7401"),
            ("NOTE", 5, "connection refused"),
        ] {
            assert_eq!(header.find(name), lines[value_row].find(value), "{name}");
        }
    }

    #[test]
    fn status_table_without_leader_errors_or_replication() {
        let mut r = fixtures::status();
        r.leader_id = None;
        r.replication.clear();
        r.nodes.truncate(1);
        r.nodes[0].role = Role::Candidate as i32;
        let got = status_table(&r);
        assert_eq!(
            got,
            "\
cluster palisade-local — answered by node 2, leader: unknown (term 5)

ID  SITE  ROLE       TERM  LEADER  LAST LOG  APPLIED  CONTROL ADDR
1   a     candidate  5     1       12        12       127.0.0.1:7401
"
        );
    }

    /// The lines [`status_table`] adds to the base fixture's output.
    fn added_lines(r: &StatusReply) -> String {
        let base = status_table(&fixtures::status());
        let got = status_table(r);
        got.strip_prefix(&base)
            .unwrap_or_else(|| panic!("base output changed:\n{got}"))
            .to_owned()
    }

    #[test]
    fn status_table_after_failover_shows_databases_search_monitors_and_last_failover() {
        let expected = "
databases: primary b, standby a (async) — epoch 3 — standby must rejoin
detector: healthy: primary b up on 2 of 2 reporting witnesses
lease: held by site b's agent, 1100 ms left; the primary serves under it

each witness's view of each database
WITNESS  SITE  STATE           LSN        LAG    STREAMING  AGE
1        a     standby         0/3000060  0.4 s  yes        120 ms
1        b     primary         0/3000148  -      -          120 ms
2        a     down (timeout)  -          -      -          340 ms
2        b     primary         0/3000148  -      -          340 ms

each witness's view of each Elasticsearch
WITNESS  SITE  STATE           NODES  LATENCY  AGE
1        a     yellow          2      4 ms     120 ms
1        b     green           3      4 ms     120 ms
2        a     down (timeout)  -      1000 ms  340 ms
2        b     green           3      4 ms     340 ms
monitorsEnabled: a=false b=true site-c=?

last failover: epoch 3, a -> b (automatic), took 4230 ms
  outcome: completed
  reason: primary a down on 2 of 3 witnesses for 10000 ms
  started 2023-11-14T22:13:20.000Z, finished 2023-11-14T22:13:24.230Z
  STEP         TOOK     DETAIL
  fenced       210 ms   fenced by agent: stopped (fast) in 210 ms
  promoted     1800 ms  promoted at 0/3000148 on timeline 2
  app-flipped  120 ms   a: monitorsEnabled true -> false; b: monitorsEnabled false -> true
  repointed    280 ms   haproxy postgres: pg_b ready; elasticsearch hosts -> b
  verified     1800 ms  3 checks passed:
    ok      database at b writable: lsn 0/3000148
    ok      elasticsearch at b green: 3 nodes
    ok      exactly one monitorsEnabled=true: site b
";
        let got = added_lines(&fixtures::failed_over());
        assert_eq!(got, expected, "got:\n{got}");
    }

    #[test]
    fn the_lease_line_tells_held_not_yet_serving_lapsed_and_unknown() {
        let line = |r: &StatusReply| {
            status_table(r)
                .lines()
                .find(|l| l.starts_with("lease: "))
                .expect("a lease line")
                .to_owned()
        };
        let mut r = fixtures::failed_over();
        r.nodes[1].serving_under_lease = false;
        assert_eq!(
            line(&r),
            "lease: held by site b's agent, 1100 ms left; the primary is not yet confirmed running"
        );
        r.nodes[1].lease_remaining_ms = None;
        assert_eq!(
            line(&r),
            "lease: not held by site b's agent: its primary takes no writes"
        );
        r.nodes[1].role = Role::Unreachable as i32;
        assert_eq!(line(&r), "lease: unknown (site b's witness did not answer)");
        r.primary_site = "d".to_owned();
        assert_eq!(line(&r), "lease: unknown (no witness at site d)");
    }

    #[test]
    fn failover_in_progress_shows_the_steps_so_far_before_the_last_one() {
        let mut r = fixtures::failed_over();
        let mut f = fixtures::finished_failover();
        f.epoch = 4;
        f.from_site = "b".to_owned();
        f.to_site = "a".to_owned();
        f.trigger = "operator:alice".to_owned();
        f.reason = "DR drill".to_owned();
        f.outcome.clear();
        f.finished_at_ms = None;
        f.steps.truncate(1);
        r.failover_in_progress = Some(f.clone());
        r.assessment = "failing over: operator request".to_owned();

        let got = added_lines(&r);
        let tail = "
FAILOVER IN PROGRESS epoch 4: b -> a (operator:alice): DR drill
  started 2023-11-14T22:13:20.000Z
  STEP    TOOK    DETAIL
  fenced  210 ms  fenced by agent: stopped (fast) in 210 ms

last failover: epoch 3, a -> b (automatic), took 4230 ms
";
        assert!(got.contains(tail), "got:\n{got}");
        assert!(got.contains("\ndetector: failing over: operator request\n"));

        // Before the first step is done.
        f.steps.clear();
        r.failover_in_progress = Some(f);
        r.last_failover = None;
        let got = added_lines(&r);
        assert!(
            got.ends_with(
                "
FAILOVER IN PROGRESS epoch 4: b -> a (operator:alice): DR drill
  started 2023-11-14T22:13:20.000Z
  no step done yet
"
            ),
            "got:\n{got}"
        );
    }

    #[test]
    fn operation_blocks_are_named_by_kind_and_maintenance_heads_the_table() {
        let mut r = fixtures::failed_over();
        let mut last = fixtures::finished_failover();
        last.kind = "switchover".to_owned();
        let mut running = fixtures::finished_failover();
        running.kind = "failback".to_owned();
        running.epoch = 4;
        running.outcome.clear();
        running.finished_at_ms = None;
        running.steps.clear();
        r.last_failover = Some(last);
        r.failover_in_progress = Some(running);
        r.maintenance = Some(Maintenance {
            by: "alice@ops".to_owned(),
            reason: "DR test\nphase 1".to_owned(),
            since_ms: fixtures::FAILOVER_STARTED_MS,
            until_ms: Some(fixtures::FAILOVER_STARTED_MS + 7_200_000),
        });
        let got = status_table(&r);
        assert!(
            got.starts_with(
                "cluster palisade-local — answered by node 2, leader 1 (term 5)\n\
                 PAUSED by alice@ops until 2023-11-15T00:13:20.000Z: DR test\\nphase 1\n\nID "
            ),
            "got:\n{got}"
        );
        assert!(
            got.contains("\nFAILBACK IN PROGRESS epoch 4: a -> b (automatic): "),
            "got:\n{got}"
        );
        assert!(
            got.contains("\nlast switchover: epoch 3, a -> b (automatic), took 4230 ms\n"),
            "got:\n{got}"
        );
        r.maintenance.as_mut().expect("paused").until_ms = None;
        r.maintenance.as_mut().expect("paused").reason.clear();
        assert!(status_table(&r).contains("\nPAUSED by alice@ops until resumed\n\n"));
    }

    #[test]
    fn without_leader_view_the_detector_is_unknown_and_views_may_be_missing() {
        let mut r = fixtures::failed_over();
        r.assessment.clear();
        r.standby_site.clear();
        r.replication_mode.clear();
        r.standby_needs_rejoin = false;
        r.last_failover = None;
        for n in &mut r.nodes {
            n.databases.clear();
            n.search.clear();
            n.monitors_enabled = None;
        }
        assert_eq!(
            added_lines(&r),
            "
databases: primary b, no standby — epoch 3
detector: unknown (no leader answered)
lease: held by site b's agent, 1100 ms left; the primary serves under it

each witness's view of each database: no witness reported one
"
        );
    }

    #[test]
    fn mariadb_pair_shows_replication_between_the_masters() {
        assert_eq!(
            added_lines(&fixtures::mariadb_pair()),
            "
databases: primary a, standby b (sync) — epoch 1
detector: healthy: primary a up on 2 of 2 reporting witnesses
lease: held by site a's agent, 1100 ms left; the primary serves under it

each witness's view of each database
WITNESS  SITE  STATE    POSITION               LAG    STREAMING  AGE
1        a     primary  mysql-bin.000003:5678  -      -          120 ms
1        b     standby  mysql-bin.000003:5678  0.0 s  yes        120 ms
2        a     primary  mysql-bin.000003:5678  -      -          340 ms
2        b     standby  mysql-bin.000003:5678  1.0 s  yes        340 ms

replication between the masters (each witness's view)
WITNESS  SITE  READ_ONLY  FROM                     IO   SQL  BEHIND  READ / EXECUTED               GTID_SLAVE_POS  SEMI-SYNC
1        a     no         b-db:3306 (server_id 2)  Yes  Yes  0 s     mysql-bin.000002:1899 / 1899  0-2-7           active (1 client, 10000 ms); acks
1        b     yes        a-db:3306 (server_id 1)  Yes  Yes  0 s     mysql-bin.000003:5678 / 5678  0-1-42          off; acks
2        a     no         b-db:3306 (server_id 2)  Yes  Yes  0 s     mysql-bin.000002:1899 / 1899  0-2-7           active (1 client, 10000 ms); acks
2        b     yes        a-db:3306 (server_id 1)  Yes  Yes  1 s     mysql-bin.000003:5678 / 5210  0-1-42          off; acks
"
        );
    }

    #[test]
    fn mariadb_rows_say_what_is_known_and_errors_get_a_line() {
        let mut r = fixtures::mariadb_pair();
        // Witness 1: b's IO thread reconnecting to a, which it has not yet
        // reached; a's semi-sync fell back to asynchronous replication.
        let b = r.nodes[0].databases[1].mariadb.as_mut().expect("b");
        b.io_running = "Connecting".to_owned();
        b.replicates_from_server_id = None;
        b.seconds_behind_master = None;
        b.last_io_error = "error reconnecting to master 'repl@a-db:3306'\n(2003)".to_owned();
        let a = r.nodes[0].databases[0].mariadb.as_mut().expect("a");
        let semi = a.semi_sync.as_mut().expect("semi-sync");
        semi.active = false;
        semi.clients = 0;
        semi.replica_acks = false;
        // Witness 2: cannot reach a; b stopped applying on an error, and
        // its semi-sync variables could not be read.
        r.nodes[1].databases[0] = DatabaseView {
            mariadb: Some(MariaDbView::default()),
            ..fixtures::db_down("a", "refused: connection refused", 340)
        };
        let b = r.nodes[1].databases[1].mariadb.as_mut().expect("b");
        b.sql_running = Some(false);
        b.last_sql_error = "Duplicate entry '7' for key 'PRIMARY'".to_owned();
        b.semi_sync = None;

        let got = added_lines(&r);
        let (_, masters) = got
            .split_once("replication between the masters (each witness's view)\n")
            .expect("the masters' table");
        assert_eq!(
            masters,
            "\
WITNESS  SITE  READ_ONLY       FROM                     IO          SQL  BEHIND  READ / EXECUTED               GTID_SLAVE_POS  SEMI-SYNC
1        a     no              b-db:3306 (server_id 2)  Yes         Yes  0 s     mysql-bin.000002:1899 / 1899  0-2-7           FELL BACK TO ASYNC (0 clients)
1        b     yes             a-db:3306                Connecting  Yes  -       mysql-bin.000003:5678 / 5678  0-1-42          off; acks
2        a     down (refused)  -                        -           -    -       -                             -               -
2        b     yes             a-db:3306 (server_id 1)  Yes         No   1 s     mysql-bin.000003:5678 / 5210  0-1-42          -
witness 1, site b: last IO error: error reconnecting to master 'repl@a-db:3306'\\n(2003)
witness 2, site b: last SQL error: Duplicate entry '7' for key 'PRIMARY'
"
        );

        // A master that replicates from nowhere, nothing else read; an
        // executed position in another file than the one read.
        let bare = MariaDbView::default();
        assert_eq!(
            master_row(7, &fixtures::db_up("a", false, "", 5), &bare),
            ["7", "a", "-", "-", "-", "-", "-", "-", "-", "-"]
        );
        assert_eq!(
            read_executed("mysql-bin.000004:120", "mysql-bin.000003:9000"),
            "mysql-bin.000004:120 / mysql-bin.000003:9000"
        );
    }

    #[test]
    fn postgres_views_keep_the_lsn_header_and_no_masters_table() {
        let got = status_table(&fixtures::failed_over());
        assert!(
            got.contains("\nWITNESS  SITE  STATE           LSN  "),
            "got:\n{got}"
        );
        assert!(
            !got.contains("replication between the masters"),
            "got:\n{got}"
        );
    }

    #[test]
    fn database_states_say_what_is_known() {
        let mut odd_standby = fixtures::db_up("a", true, "", 5);
        odd_standby.streaming = false;
        odd_standby.replay_lag_seconds = None;
        let mut role_unknown = fixtures::db_up("b", false, "0/1", 5);
        role_unknown.in_recovery = None;
        let mut nan_lag = fixtures::db_up("a", true, "0/2", 5);
        nan_lag.replay_lag_seconds = Some(f64::NAN);
        let cases = [
            (odd_standby, ["standby", "-", "-", "no"]),
            (role_unknown, ["up (role unknown)", "0/1", "-", "-"]),
            (nan_lag, ["standby", "0/2", "-", "yes"]),
            (fixtures::db_down("a", "", 5), ["down", "-", "-", "-"]),
            (
                fixtures::db_down("a", "refused: connection refused", 5),
                ["down (refused)", "-", "-", "-"],
            ),
            (
                fixtures::db_down("a", "a very long error without any class in it", 5),
                ["down (a very long error witho…)", "-", "-", "-"],
            ),
        ];
        for (view, [state, lsn, lag, streaming]) in cases {
            let row = database_row(7, &view);
            assert_eq!(
                row,
                ["7", &view.site, state, lsn, lag, streaming, "5 ms"],
                "{view:?}"
            );
        }
    }

    #[test]
    fn long_details_are_cut_at_max_line_and_control_characters_escaped() {
        let mut r = fixtures::failed_over();
        r.assessment = format!("blocked: {}", "lag ".repeat(60));
        let mut f = fixtures::finished_failover();
        f.steps[0].detail = format!("line one\nline two {}", "x".repeat(300));
        f.reason = "r".repeat(300);
        r.failover_in_progress = Some(f.clone());
        r.last_failover = Some(f);

        let got = status_table(&r);
        for line in got.lines() {
            assert!(width(line) <= MAX_LINE, "{} chars: {line}", width(line));
        }
        let cut: Vec<&str> = got.lines().filter(|l| l.ends_with(CUT)).collect();
        assert_eq!(cut.len(), 5, "detector, 2 reasons, 2 details:\n{got}");
        assert!(cut[0].starts_with("detector: blocked: lag lag"));
        assert!(got.contains("  fenced       210 ms   line one\\nline two xxx"));
    }

    #[test]
    fn search_states_say_what_is_known() {
        let mut unknown = fixtures::search_up("a", "", 1, 5);
        unknown.number_of_nodes = None;
        let cases = [
            (
                fixtures::search_up("a", "green", 3, 5),
                ["green", "3", "4 ms"],
            ),
            (
                fixtures::search_up("b", "yellow", 2, 5),
                ["yellow", "2", "4 ms"],
            ),
            (fixtures::search_up("a", "red", 1, 5), ["red", "1", "4 ms"]),
            (unknown, ["up (status unknown)", "-", "4 ms"]),
            (fixtures::search_down("a", "", 5), ["down", "-", "1000 ms"]),
            (
                fixtures::search_down("b", "refused: connection refused", 5),
                ["down (refused)", "-", "1000 ms"],
            ),
        ];
        for (view, [state, nodes, latency]) in cases {
            let row = search_row(7, &view);
            assert_eq!(
                row,
                ["7", &view.site, state, nodes, latency, "5 ms"],
                "{view:?}"
            );
        }
    }

    /// [`fixtures::status`] (no database) with `monitorsEnabled` as given
    /// for witnesses 1, 2 and 3 (sites `a`, `b`, `site-c`).
    fn with_monitors(on: [Option<bool>; 3]) -> StatusReply {
        let mut r = fixtures::status();
        for (n, on) in r.nodes.iter_mut().zip(on) {
            n.monitors_enabled = on;
        }
        r
    }

    #[test]
    fn monitors_line_warns_unless_exactly_one_app_is_on() {
        let warning = "  <- WARNING: exactly one app must have monitorsEnabled=true";
        for (on, line) in [
            (
                [Some(false), Some(true), None],
                "monitorsEnabled: a=false b=true site-c=?".to_owned(),
            ),
            (
                [Some(true), None, None],
                "monitorsEnabled: a=true b=? site-c=?".to_owned(),
            ),
            (
                [Some(true), Some(true), None],
                format!("monitorsEnabled: a=true b=true site-c=?{warning}"),
            ),
            (
                [Some(false), Some(false), None],
                format!("monitorsEnabled: a=false b=false site-c=?{warning}"),
            ),
            (
                [Some(false), None, None],
                format!("monitorsEnabled: a=false b=? site-c=?{warning}"),
            ),
        ] {
            // Without a database or search views the line stands alone.
            assert_eq!(
                added_lines(&with_monitors(on)),
                format!("\n{line}\n"),
                "{on:?}"
            );
        }
        // No witness said: no line at all.
        assert_eq!(added_lines(&with_monitors([None, None, None])), "");
    }

    #[test]
    fn two_witnesses_of_one_site_read_the_same_app() {
        // Both of site a's witnesses read its one app on: one app is on.
        let mut r = with_monitors([Some(true), Some(true), Some(false)]);
        r.nodes[1].site = "a".to_owned();
        let got = status_table(&r);
        assert!(
            got.ends_with("\nmonitorsEnabled: a=true a=true site-c=false\n"),
            "got:\n{got}"
        );
    }

    #[test]
    fn search_table_shows_without_a_database() {
        let mut r = fixtures::status();
        r.nodes[1].search = vec![fixtures::search_down("a", "refused: connection refused", 9)];
        assert_eq!(
            added_lines(&r),
            "
each witness's view of each Elasticsearch
WITNESS  SITE  STATE           NODES  LATENCY  AGE
2        a     down (refused)  -      1000 ms  9 ms
"
        );
    }

    #[test]
    fn verified_checks_are_one_a_line_with_failed_ones_marked() {
        let mut r = fixtures::failed_over();
        let mut f = fixtures::finished_failover();
        f.outcome = "completed_with_failed_checks: elasticsearch at b green or yellow: \
                     timeout: no answer"
            .to_owned();
        let verified = f.steps.last_mut().expect("verified step");
        // The summary is the server's; the table counts the checks itself.
        verified.detail = "4 checks, 1 failed".to_owned();
        verified.checks = vec![
            fixtures::check("database at b writable", true, "lsn 0/3000148"),
            fixtures::check(
                "elasticsearch at b green or yellow",
                false,
                "timeout: no answer",
            ),
            fixtures::check("exactly one monitorsEnabled=true", true, "site b"),
            // A check with nothing to say is its name alone.
            fixtures::check("not readable: a (timeout)", true, ""),
        ];
        r.last_failover = Some(f.clone());
        let got = added_lines(&r);
        let tail = "
  outcome: completed_with_failed_checks: elasticsearch at b green or yellow: timeout: no answer
  reason: primary a down on 2 of 3 witnesses for 10000 ms
  started 2023-11-14T22:13:20.000Z, finished 2023-11-14T22:13:24.230Z
  STEP         TOOK     DETAIL
  fenced       210 ms   fenced by agent: stopped (fast) in 210 ms
  promoted     1800 ms  promoted at 0/3000148 on timeline 2
  app-flipped  120 ms   a: monitorsEnabled true -> false; b: monitorsEnabled false -> true
  repointed    280 ms   haproxy postgres: pg_b ready; elasticsearch hosts -> b
  verified     1800 ms  4 checks, 1 FAILED:
    ok      database at b writable: lsn 0/3000148
    FAILED  elasticsearch at b green or yellow: timeout: no answer
    ok      exactly one monitorsEnabled=true: site b
    ok      not readable: a (timeout)
";
        assert!(got.ends_with(tail), "got:\n{got}");

        // The same in a failover in progress; a verified step without
        // checks is an ordinary row showing its detail, and a detail that
        // merely looks like a failed check is not read as one.
        f.outcome.clear();
        f.finished_at_ms = None;
        let verified = f.steps.last_mut().expect("verified step");
        verified.detail = "1 check, 1 failed".to_owned();
        verified.checks = vec![fixtures::check("webhook", false, "HTTP 500")];
        r.failover_in_progress = Some(f.clone());
        let got = added_lines(&r);
        assert!(
            got.contains("  verified     1800 ms  1 check, 1 FAILED:\n    FAILED  webhook: HTTP 500\n\nlast failover"),
            "got:\n{got}"
        );
        let verified = f.steps.last_mut().expect("verified step");
        verified.checks.clear();
        verified.detail = "FAILED webhook: HTTP 500; database at b writable".to_owned();
        r.failover_in_progress = Some(f.clone());
        let got = added_lines(&r);
        assert!(
            got.contains(
                "  verified     1800 ms  FAILED webhook: HTTP 500; database at b writable\n\nlast failover"
            ),
            "got:\n{got}"
        );
        f.steps.last_mut().expect("verified step").detail.clear();
        r.failover_in_progress = Some(f);
        let got = added_lines(&r);
        assert!(
            got.contains("  verified     1800 ms\n\nlast failover"),
            "got:\n{got}"
        );
    }

    #[test]
    fn progress_step_counts_the_checks_and_lists_them() {
        let f = fixtures::finished_failover();
        assert_eq!(
            progress_step(&f.steps[0]),
            "  fenced        210 ms  fenced by agent: stopped (fast) in 210 ms\n"
        );
        let mut verified = f.steps[4].clone();
        verified.checks[1].ok = false;
        verified.checks[1].detail = "red".to_owned();
        assert_eq!(
            progress_step(&verified),
            "  verified     1800 ms  3 checks, 1 FAILED:
    ok      database at b writable: lsn 0/3000148
    FAILED  elasticsearch at b green: red
    ok      exactly one monitorsEnabled=true: site b
"
        );
    }

    #[test]
    fn clip_keeps_short_text_and_marks_cuts() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "ab…");
        assert_eq!(clip_lines("ab\n"), "ab\n");
        let long = "é".repeat(MAX_LINE + 1);
        let clipped = clip_lines(&long);
        assert_eq!(width(clipped.trim_end()), MAX_LINE);
        assert!(clipped.ends_with("é…\n"));
    }

    #[test]
    fn annotate_and_journal_render() {
        let mut a = AnnotateReply {
            log_index: 17,
            leader_id: 1,
            request_id: "20231114T221320.123Z-9f86d081884c7d65".to_owned(),
            duplicate: false,
        };
        assert_eq!(annotate_text(&a), "noted at log index 17 (leader 1)\n");
        a.duplicate = true;
        assert_eq!(
            annotate_text(&a),
            "already noted at log index 17 by request 20231114T221320.123Z-9f86d081884c7d65 \
             (nothing added; leader 1)\n"
        );
        assert_eq!(
            journal_table(&fixtures::journal()),
            "\
INDEX  WHEN                      AUTHOR  TEXT
9      2023-11-14T22:13:20.123Z  alice   DR drill:\\ncheckpoint taken
14     2023-11-14T22:14:20.000Z  bob     done
"
        );
    }

    #[test]
    fn empty_journal_is_just_the_header() {
        assert_eq!(
            journal_table(&JournalReply::default()),
            "INDEX  WHEN  AUTHOR  TEXT\n"
        );
    }
}
