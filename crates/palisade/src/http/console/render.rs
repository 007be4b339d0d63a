//! The console's HTML, built as strings from the control API's messages
//! (and, for a drill's report, its recorded JSON). Every value that comes
//! from the cluster passes through [`esc`].

use std::fmt::Write;

use palisade_api::v1 as pb;
use palisade_api::v1::{FailoverSummary, NodeStatus, Role, StatusReply};

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Which page a link in the navigation marks as current.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    History,
    Other,
}

/// A whole page: the banner names the witness that serves it.
/// `assets`: the assets' version, so that browsers may cache them.
pub fn page(title: &str, node: u64, site: &str, nav: Nav, assets: &str, body: &str) -> String {
    let current = |n: Nav| {
        if n == nav {
            " aria-current=\"page\""
        } else {
            ""
        }
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · palisade witness {node}</title>\
         <link rel=\"stylesheet\" href=\"/console/style.css?v={assets}\">\
         <script src=\"/console/app.js?v={assets}\" defer></script></head>\
         <body><header class=\"top\"><span class=\"brand\">palisade</span>\
         <nav aria-label=\"Console\"><a href=\"/\"{}>Overview</a> <a href=\"/history\"{}>History</a></nav>\
         <span class=\"served-by\">served by witness {node} (site {site})</span>\
         <span id=\"live\" class=\"live\" role=\"status\" aria-live=\"polite\">connecting…</span></header>\
         <main>{body}</main></body></html>",
        current(Nav::Overview),
        current(Nav::History),
        title = esc(title),
        site = esc(site),
    )
}

/// Unix ms as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn when(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A duration in ms, in words ("850 ms", "2.4 s", "3 min 5 s").
pub fn took(ms: i64) -> String {
    match ms {
        ms if ms < 0 => "—".into(),
        ms if ms < 1000 => format!("{ms} ms"),
        ms if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        ms => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
    }
}

fn role_name(role: i32) -> &'static str {
    match Role::try_from(role) {
        Ok(Role::Leader) => "leader",
        Ok(Role::Follower) => "follower",
        Ok(Role::Candidate) => "candidate",
        Ok(Role::Learner) => "learner",
        Ok(Role::Unreachable) => "unreachable",
        Ok(Role::Shutdown) => "shutting down",
        _ => "unknown",
    }
}

/// A mark that says the same as its colour: ✔ yes, ✖ no, ? unknown.
fn mark(ok: Option<bool>, yes: &str, no: &str) -> String {
    match ok {
        Some(true) => format!(
            "<span class=\"ok\"><span aria-hidden=\"true\">✔</span> {}</span>",
            esc(yes)
        ),
        Some(false) => format!(
            "<span class=\"bad\"><span aria-hidden=\"true\">✖</span> {}</span>",
            esc(no)
        ),
        None => "<span class=\"unknown\"><span aria-hidden=\"true\">?</span> unknown</span>".into(),
    }
}

/// The sites, in order: the database sites first, then the witnesses'.
fn sites(s: &StatusReply) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for site in [&s.primary_site, &s.standby_site]
        .into_iter()
        .chain(s.nodes.iter().map(|n| &n.site))
    {
        if !site.is_empty() && !out.contains(site) {
            out.push(site.clone());
        }
    }
    out.sort();
    out
}

/// The overview's live part (replaced whole by every status update).
/// `node`: the witness that serves the page.
pub fn overview(s: &StatusReply, node: u64, age_ms: u64) -> String {
    let mut o = String::new();
    let me = s.nodes.iter().find(|n| n.id == node);
    let leader = s.leader_id.and_then(|l| s.nodes.iter().find(|n| n.id == l));
    let _ = write!(
        o,
        "<section class=\"cluster\" aria-label=\"Cluster\"><h1>Cluster {}</h1><dl class=\"facts\">\
         <div><dt>This witness</dt><dd id=\"this-witness\">witness {node} (site {}), {}</dd></div>\
         <div><dt>Leader</dt><dd id=\"leader\">{}</dd></div>\
         <div><dt>Term · epoch</dt><dd>term {} · epoch {}</dd></div>\
         <div><dt>Primary database</dt><dd id=\"primary-site\">{}</dd></div>\
         <div><dt>Standby database</dt><dd id=\"standby-site\">{}{}</dd></div>\
         <div><dt>Replication mode</dt><dd id=\"replication-mode\">{}</dd></div>\
         <div><dt>Quorum</dt><dd>{}</dd></div>\
         <div><dt>Lease</dt><dd id=\"lease\">{}</dd></div>\
         <div><dt>Maintenance</dt><dd id=\"maintenance\">{}</dd></div>\
         </dl><p class=\"assessment\"><strong>Detector:</strong> <span id=\"assessment\">{}</span></p>{}</section>",
        esc(&s.cluster_name),
        esc(me.map(|n| n.site.as_str()).unwrap_or("?")),
        me.map(|n| role_name(n.role)).unwrap_or("unknown"),
        match leader {
            Some(l) if l.id == node => format!("witness {} (site {}): this witness", l.id, esc(&l.site)),
            Some(l) => format!(
                "witness {} (site {}); shown as it reports the cluster",
                l.id,
                esc(&l.site)
            ),
            None => "none known (election in progress)".into(),
        },
        s.term,
        s.epoch,
        esc(or_dash(&s.primary_site)),
        esc(or_dash(&s.standby_site)),
        if s.standby_needs_rejoin {
            " (must rejoin)"
        } else {
            ""
        },
        esc(or_dash(&s.replication_mode)),
        match s.quorum.as_str() {
            "ok" => mark(
                Some(true),
                &format!("held ({} witnesses answer, {} needed)", s.quorum_acked, s.quorum_needed),
                ""
            ),
            "lost" => mark(
                Some(false),
                "",
                &format!("lost ({} witnesses answer, {} needed)", s.quorum_acked, s.quorum_needed)
            ),
            _ => mark(None, "", ""),
        },
        lease(s),
        match &s.maintenance {
            None => "off: automatic failover is armed".into(),
            Some(m) => format!(
                "<strong>on</strong>: paused by {} since {} ({}){}",
                esc(&m.by),
                when(m.since_ms),
                esc(&m.reason),
                match m.until_ms {
                    Some(u) => format!(
                        ", ends in <span data-until-ms=\"{u}\">{}</span> ({})",
                        took(u - palisade_raft::unix_ms_now()),
                        when(u)
                    ),
                    None => ", until resumed".into(),
                }
            ),
        },
        if s.assessment.is_empty() {
            "not known (the leader did not answer)".into()
        } else {
            esc(&s.assessment)
        },
        if age_ms > 3000 {
            format!(
                "<p class=\"stale\">These facts are {} old: the witness could not refresh them sooner.</p>",
                took(age_ms as i64)
            )
        } else {
            String::new()
        }
    );
    o.push_str("<section aria-label=\"Sites\"><h2>Sites</h2><div class=\"sites\">");
    for site in sites(s) {
        o.push_str(&site_card(s, &site));
    }
    o.push_str("</div></section>");
    o.push_str(&matrix(s));
    o.push_str(&links(s));
    o
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "—"
    } else {
        s
    }
}

/// The lease in force, as a countdown, from the primary site's witness.
fn lease(s: &StatusReply) -> String {
    let holder = s
        .nodes
        .iter()
        .find(|n| n.site == s.primary_site && n.role != Role::Unreachable as i32);
    match holder.and_then(|n| n.lease_remaining_ms.map(|ms| (n, ms))) {
        Some((n, ms)) => format!(
            "site {} holds it: <span data-remaining-ms=\"{ms}\">{}</span> left without another grant{}",
            esc(&n.site),
            took(ms as i64),
            if n.serving_under_lease {
                ", serving under it"
            } else {
                ", not serving yet"
            }
        ),
        None if s.primary_site.is_empty() => "no database".into(),
        None => mark(Some(false), "", "no lease held (the primary's witness reports none)"),
    }
}

fn site_card(s: &StatusReply, site: &str) -> String {
    let w = s.nodes.iter().find(|n| n.site == site);
    let mut c = String::new();
    let role = if site == s.primary_site {
        "primary"
    } else if site == s.standby_site {
        "standby"
    } else {
        "tie-breaker"
    };
    let _ = write!(
        c,
        "<article class=\"site {role}\" data-site=\"{}\" aria-labelledby=\"site-{0}\"><h3 id=\"site-{0}\">Site {0} <span class=\"tag\">{role}</span></h3><dl>",
        esc(site)
    );
    match w {
        Some(n) => {
            let up = n.role != Role::Unreachable as i32;
            let _ = write!(
                c,
                "<div><dt>Witness</dt><dd>witness {}: {} · term {} · {}</dd></div>",
                n.id,
                role_name(n.role),
                n.term,
                if up {
                    mark(Some(true), "reachable", "")
                } else {
                    format!(
                        "{} ({})",
                        mark(Some(false), "", "unreachable"),
                        esc(&n.error)
                    )
                }
            );
        }
        None => c.push_str("<div><dt>Witness</dt><dd>none at this site</dd></div>"),
    }
    if role != "tie-breaker" {
        // The database as its own site's witness sees it.
        let own = w.and_then(|n| n.databases.iter().find(|d| d.site == site));
        let db = match own {
            None => mark(None, "", ""),
            Some(d) if !d.reachable => {
                format!("{} ({})", mark(Some(false), "", "down"), esc(&d.error))
            }
            Some(d) => {
                let mut t = format!(
                    "{} · LSN {}",
                    match d.in_recovery {
                        Some(true) => "in recovery (read-only)",
                        Some(false) => "writable",
                        None => "up",
                    },
                    esc(or_dash(&d.lsn))
                );
                if d.in_recovery == Some(true) {
                    let _ = write!(
                        t,
                        " · {} · lag {}",
                        if d.streaming {
                            mark(Some(true), "streaming", "")
                        } else {
                            mark(Some(false), "", "not streaming")
                        },
                        d.replay_lag_seconds
                            .map(|l| format!("{l:.1} s"))
                            .unwrap_or_else(|| "unknown".into())
                    );
                }
                t
            }
        };
        let fenced = if site == s.primary_site {
            match w {
                Some(n) if n.serving_under_lease => {
                    mark(Some(true), "not fenced: serving under its lease", "")
                }
                Some(_) => mark(Some(false), "", "fenced: no confirmed lease"),
                None => mark(None, "", ""),
            }
        } else if s.standby_needs_rejoin {
            mark(Some(false), "", "fenced: old primary, must rejoin")
        } else {
            "read-only standby".into()
        };
        let _ = write!(
            c,
            "<div><dt>Database</dt><dd>{role} · {db}</dd></div><div><dt>Fencing</dt><dd>{fenced}</dd></div>"
        );
        if let Some(m) = own.filter(|d| d.reachable).and_then(|d| d.mariadb.as_ref()) {
            let _ = write!(
                c,
                "<div><dt>Replication</dt><dd>{}</dd></div>",
                mariadb_replication(m)
            );
        }
    }
    if let Some(n) = w {
        let monitors = match n.monitors_enabled {
            Some(true) => "monitorsEnabled = true",
            Some(false) => "monitorsEnabled = false",
            None => "no app (or unreadable)",
        };
        let search = n.search.iter().find(|v| v.site == site).map(|v| {
            if v.reachable {
                format!("{} ({} ms)", esc(or_dash(&v.status)), v.latency_ms)
            } else {
                format!(
                    "{} ({})",
                    mark(Some(false), "", "unreachable"),
                    esc(&v.error)
                )
            }
        });
        let _ = write!(
            c,
            "<div><dt>App</dt><dd>{monitors}</dd></div><div><dt>Elasticsearch</dt><dd>{}</dd></div>",
            search.unwrap_or_else(|| "not probed".into())
        );
    }
    if role != "tie-breaker" {
        let _ = write!(
            c,
            "<div><dt>Front door</dt><dd>{}</dd></div>",
            if site == s.primary_site {
                "sends users here"
            } else {
                "sends no users here"
            }
        );
    }
    c.push_str("</dl></article>");
    c
}

/// A MariaDB master's replication from the other master and the
/// semi-sync in force on it, in words.
fn mariadb_replication(m: &pb::MariaDbView) -> String {
    let from = if m.replicates_from.is_empty() {
        "from no master (or unread)".to_owned()
    } else {
        format!(
            "from {} · IO {} · SQL {} · {} behind · read {} · executed {}",
            esc(&m.replicates_from),
            if m.io_running == "Yes" {
                mark(Some(true), "Yes", "")
            } else {
                mark(Some(false), "", or_dash(&m.io_running))
            },
            match m.sql_running {
                Some(true) => mark(Some(true), "Yes", ""),
                Some(false) => mark(Some(false), "", "No"),
                None => mark(None, "", ""),
            },
            m.seconds_behind_master
                .map_or_else(|| "unknown".to_owned(), |s| format!("{s} s")),
            esc(or_dash(&m.read_position)),
            esc(or_dash(&m.executed_position)),
        )
    };
    let semi = match &m.semi_sync {
        None => "unknown".to_owned(),
        Some(s) if !s.enabled => "off".to_owned(),
        Some(s) if s.active => mark(Some(true), &format!("active ({} acking)", s.clients), ""),
        Some(_) => mark(Some(false), "", "fell back to async"),
    };
    format!("{from} · semi-sync {semi}")
}

/// Each witness's view of each database.
fn matrix(s: &StatusReply) -> String {
    let dbs: Vec<&String> = [&s.primary_site, &s.standby_site]
        .into_iter()
        .filter(|x| !x.is_empty())
        .collect();
    if dbs.is_empty() {
        return String::new();
    }
    let mut m = String::from(
        "<section aria-label=\"Probe matrix\"><h2>Each witness's view of each database</h2>\
         <table class=\"matrix\"><thead><tr><th scope=\"col\">Witness</th>",
    );
    for d in &dbs {
        let _ = write!(m, "<th scope=\"col\">db {}</th>", esc(d));
    }
    m.push_str("</tr></thead><tbody>");
    for n in &s.nodes {
        let _ = write!(
            m,
            "<tr><th scope=\"row\">witness {} (site {})</th>",
            n.id,
            esc(&n.site)
        );
        for d in &dbs {
            let cell = if n.role == Role::Unreachable as i32 {
                mark(None, "", "")
            } else {
                match n.databases.iter().find(|v| &&v.site == d) {
                    None => mark(None, "", ""),
                    Some(v) if v.reachable => format!(
                        "{} · {} · LSN {} · {} ms · seen {} ago",
                        mark(Some(true), "reachable", ""),
                        match v.in_recovery {
                            Some(true) => "standby",
                            Some(false) => "writable",
                            None => "up",
                        },
                        esc(or_dash(&v.lsn)),
                        v.latency_ms,
                        took(v.age_ms as i64)
                    ),
                    Some(v) => format!(
                        "{} · {}",
                        mark(Some(false), "", "unreachable"),
                        esc(&v.error)
                    ),
                }
            };
            let _ = write!(m, "<td>{cell}</td>");
        }
        m.push_str("</tr>");
    }
    m.push_str("</tbody></table></section>");
    m
}

/// Whether `from`'s witness reaches `to`: its probe of `to`'s database,
/// else (for the tie-breaker) whether the leader hears from it.
fn reaches(s: &StatusReply, from: &NodeStatus, to: &str) -> Option<bool> {
    if from.role == Role::Unreachable as i32 {
        return Some(false);
    }
    if let Some(d) = from.databases.iter().find(|d| d.site == to) {
        return Some(d.reachable);
    }
    let other = s.nodes.iter().find(|n| n.site == to)?;
    if other.role == Role::Unreachable as i32 {
        return Some(false);
    }
    // The leader's replication view: a follower heard from within the
    // quorum bound.
    let leader = s.leader_id?;
    let follower = if from.id == leader {
        other.id
    } else if other.id == leader {
        from.id
    } else {
        return None;
    };
    s.replication.iter().find(|p| p.id == follower).map(|p| {
        p.last_contact_ms
            .is_some_and(|ms| ms <= s.quorum_timeout_ms.max(1))
    })
}

/// The links between sites, cut or healthy, from what each side sees.
fn links(s: &StatusReply) -> String {
    let sites = sites(s);
    let mut l = String::from(
        "<section aria-label=\"Links\"><h2>Links between sites</h2><ul class=\"links\">",
    );
    for (i, a) in sites.iter().enumerate() {
        for b in sites.iter().skip(i + 1) {
            let wa = s.nodes.iter().find(|n| &n.site == a);
            let wb = s.nodes.iter().find(|n| &n.site == b);
            let seen: Vec<bool> = [
                wa.and_then(|w| reaches(s, w, b)),
                wb.and_then(|w| reaches(s, w, a)),
            ]
            .into_iter()
            .flatten()
            .collect();
            let verdict = if seen.is_empty() {
                mark(None, "", "")
            } else if seen.iter().all(|x| *x) {
                mark(Some(true), "healthy", "")
            } else if seen.iter().all(|x| !*x) {
                mark(Some(false), "", "cut")
            } else {
                "<span class=\"warn\"><span aria-hidden=\"true\">!</span> one way only</span>"
                    .into()
            };
            let _ = write!(
                l,
                "<li data-link=\"{}-{}\">{} ↔ {}: {verdict}</li>",
                esc(a),
                esc(b),
                esc(a),
                esc(b)
            );
        }
    }
    l.push_str("</ul></section>");
    l
}

/// The timeline's stages: detect, then the committed steps.
const STAGES: [(&str, &str); 5] = [
    ("fenced", "fence"),
    ("promoted", "promote"),
    ("app-flipped", "flip"),
    ("repointed", "repoint"),
    ("verified", "verify"),
];

/// One operation as a horizontal timeline: detect, fence, promote, flip,
/// repoint and verify, each with its duration and detail; checks with
/// pass or fail; the evidence one click away.
pub fn timeline(f: &FailoverSummary) -> String {
    let mut t = String::new();
    let state = if f.outcome.is_empty() {
        "in progress".to_string()
    } else {
        f.outcome.clone()
    };
    let _ = write!(
        t,
        "<div class=\"op\" data-epoch=\"{}\" data-outcome=\"{}\"><h3>{} {} → {} · epoch {} · <span class=\"op-state\">{}</span></h3>\
         <p>Started {} by {}{}. Reason: {}</p><ol class=\"timeline\">",
        f.epoch,
        esc(&f.outcome),
        esc(&f.kind),
        esc(&f.from_site),
        esc(&f.to_site),
        f.epoch,
        esc(&state),
        when(f.started_at_ms),
        esc(&f.trigger),
        f.finished_at_ms
            .map(|e| format!(", finished {} after {}", when(e), took(e - f.started_at_ms)))
            .unwrap_or_default(),
        esc(&f.reason)
    );
    let _ = write!(
        t,
        "<li class=\"stage done\" data-step=\"detect\" data-step-key=\"{}:detect\" data-state=\"done\" data-done-at=\"{}\">\
         <span class=\"stage-name\"><span aria-hidden=\"true\">✔</span> detect</span><span class=\"dur\">{}</span><span class=\"detail\">{}</span></li>",
        f.epoch,
        f.started_at_ms,
        when(f.started_at_ms),
        esc(&f.reason)
    );
    let mut first_pending = true;
    for (name, label) in STAGES {
        let step = f.steps.iter().find(|s| s.step == name);
        match step {
            Some(s) => {
                let failed = s.checks.iter().filter(|c| !c.ok).count();
                let _ = write!(
                    t,
                    "<li class=\"stage done{}\" data-step=\"{label}\" data-step-key=\"{}:{label}\" data-state=\"done\" data-done-at=\"{}\">\
                     <span class=\"stage-name\"><span aria-hidden=\"true\">✔</span> {label}</span>\
                     <span class=\"dur\">{}</span><span class=\"detail\">{}</span>",
                    if failed > 0 { " failed-checks" } else { "" },
                    f.epoch,
                    s.done_at_ms,
                    took(s.done_at_ms - s.started_at_ms),
                    esc(&s.detail)
                );
                if !s.checks.is_empty() {
                    t.push_str("<ul class=\"checks\">");
                    for c in &s.checks {
                        let _ = write!(
                            t,
                            "<li class=\"{}\"><strong>{}</strong> {}: {}</li>",
                            if c.ok { "ok" } else { "bad" },
                            if c.ok { "✔ pass" } else { "✖ FAIL" },
                            esc(&c.name),
                            esc(&c.detail)
                        );
                    }
                    t.push_str("</ul>");
                }
                t.push_str("</li>");
            }
            None => {
                let (class, words) = if !f.outcome.is_empty() {
                    ("skipped", "not done")
                } else if first_pending {
                    first_pending = false;
                    ("running", "under way")
                } else {
                    ("pending", "pending")
                };
                let _ = write!(
                    t,
                    "<li class=\"stage {class}\" data-step=\"{label}\" data-state=\"{class}\">\
                     <span class=\"stage-name\"><span aria-hidden=\"true\">…</span> {label}</span><span class=\"dur\">{words}</span></li>"
                );
            }
        }
    }
    t.push_str("</ol>");
    let evidence = serde_json::from_str::<serde_json::Value>(&f.evidence_json)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| f.evidence_json.clone());
    let _ = write!(
        t,
        "<details data-key=\"evidence-{}\"><summary>Evidence (LSNs, votes, loss bound)</summary><pre>{}</pre></details></div>",
        f.epoch,
        esc(&evidence)
    );
    t
}

/// The live timeline: the operation in progress, else the last one.
pub fn live_timeline(
    in_progress: Option<&FailoverSummary>,
    last: Option<&FailoverSummary>,
) -> String {
    match in_progress.or(last) {
        Some(f) => timeline(f),
        None => "<p>No failover, switchover or failback yet.</p>".into(),
    }
}

/// The history page's body.
pub fn history(h: &pb::HistoryReply) -> String {
    let mut o = String::from("<h1>History</h1>");
    if let Some(f) = &h.in_progress {
        let _ = write!(
            o,
            "<p class=\"running\">In progress: <a href=\"/operation/{}\">{} {} → {} (epoch {})</a></p>",
            f.epoch,
            esc(&f.kind),
            esc(&f.from_site),
            esc(&f.to_site),
            f.epoch
        );
    }
    o.push_str(
        "<section aria-label=\"Operations\"><h2>Operations</h2><table class=\"history\" id=\"operations\"><thead><tr>\
         <th scope=\"col\">Epoch</th><th scope=\"col\">Operation</th><th scope=\"col\">Trigger</th>\
         <th scope=\"col\">Started</th><th scope=\"col\">Took</th><th scope=\"col\">Outcome</th></tr></thead><tbody>",
    );
    if h.operations.is_empty() {
        o.push_str("<tr><td colspan=\"6\">none yet</td></tr>");
    }
    for f in h.operations.iter().rev() {
        let _ = write!(
            o,
            "<tr data-epoch=\"{}\"><td>{}</td><td><a href=\"/operation/{}\">{} {} → {}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            f.epoch,
            f.epoch,
            f.epoch,
            esc(&f.kind),
            esc(&f.from_site),
            esc(&f.to_site),
            esc(&f.trigger),
            when(f.started_at_ms),
            f.finished_at_ms
                .map(|e| took(e - f.started_at_ms))
                .unwrap_or_else(|| "—".into()),
            outcome_words(&f.outcome)
        );
    }
    o.push_str("</tbody></table></section>");
    o.push_str("<section aria-label=\"Rejoins\"><h2>Rejoins</h2><ul>");
    if h.rejoins.is_empty() {
        o.push_str("<li>none yet</li>");
    }
    for r in h.rejoins.iter().rev() {
        let _ = write!(
            o,
            "<li>{}: site {} rejoined as a standby of site {} (epoch {}; <a href=\"/operation/{}\">the operation</a>)</li>",
            when(r.at_ms),
            esc(&r.site),
            esc(&r.primary_site),
            r.epoch,
            r.epoch
        );
    }
    o.push_str("</ul></section>");
    o.push_str(
        "<section aria-label=\"Drills\"><h2>Drills</h2><table class=\"history\" id=\"drills\"><thead><tr>\
         <th scope=\"col\">Drill</th><th scope=\"col\">Run by</th><th scope=\"col\">Started</th>\
         <th scope=\"col\">Took</th><th scope=\"col\">Outcome</th></tr></thead><tbody>",
    );
    if h.drills.is_empty() {
        o.push_str("<tr><td colspan=\"5\">none recorded</td></tr>");
    }
    for (i, d) in h.drills.iter().enumerate().rev() {
        let _ = write!(
            o,
            "<tr><td><a href=\"/drill/{i}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&d.name),
            esc(&d.who),
            when(d.started_at_ms),
            took(d.finished_at_ms - d.started_at_ms),
            outcome_words(&d.outcome)
        );
    }
    o.push_str("</tbody></table></section>");
    o
}

/// An outcome with a mark that does not rely on colour.
fn outcome_words(outcome: &str) -> String {
    let ok = if outcome.is_empty() {
        None
    } else {
        Some(outcome == "completed" || outcome == "passed")
    };
    match ok {
        None => "in progress".into(),
        Some(ok) => mark(Some(ok), outcome, outcome),
    }
}

/// A drill's report, rendered from its recorded JSON (the replicated
/// record, as `palisadectl history --output json` shows it).
pub fn drill(n: usize, record: &serde_json::Value) -> String {
    let s = |k: &str| record[k].as_str().unwrap_or_default().to_string();
    let i = |k: &str| record[k].as_i64().unwrap_or_default();
    let mut o = format!(
        "<h1>Drill {}</h1><p class=\"drill\" data-drill=\"{n}\">Run by {} from {} to {} ({}): {}</p>\
         <table class=\"history\" id=\"phases\"><caption>Phases</caption><thead><tr><th scope=\"col\">#</th>\
         <th scope=\"col\">Phase</th><th scope=\"col\">Took</th><th scope=\"col\">Outcome</th></tr></thead><tbody>",
        esc(&s("name")),
        esc(&s("who")),
        when(i("started_at_ms")),
        when(i("finished_at_ms")),
        took(i("finished_at_ms") - i("started_at_ms")),
        outcome_words(&s("outcome")),
    );
    for (k, p) in record["phases"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let outcome = p["outcome"].as_str().unwrap_or_default();
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            k + 1,
            esc(p["name"].as_str().unwrap_or_default()),
            took(p["duration_ms"].as_i64().unwrap_or_default()),
            if outcome == "skipped" {
                "skipped".into()
            } else {
                outcome_words(outcome)
            }
        );
    }
    let _ = write!(
        o,
        "</tbody></table><details><summary>The recorded JSON</summary><pre>{}</pre></details>",
        esc(&serde_json::to_string_pretty(record).unwrap_or_default())
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_the_cluster_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn unix_ms_reads_as_utc() {
        assert_eq!(when(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(when(1_709_210_096_000), "2024-02-29 12:34:56 UTC");
    }

    #[test]
    fn a_mariadb_master_shows_its_replication_and_semi_sync() {
        let m = pb::MariaDbView {
            io_running: "Connecting".into(),
            sql_running: Some(true),
            replicates_from: "<b-db>:3306".into(),
            read_position: "mysql-bin.000002:1899".into(),
            executed_position: "mysql-bin.000002:1899".into(),
            semi_sync: Some(pb::MariaDbSemiSync {
                enabled: true,
                active: false,
                ..Default::default()
            }),
            ..Default::default()
        };
        let t = mariadb_replication(&m);
        assert!(t.starts_with("from &lt;b-db&gt;:3306 · IO "), "{t}");
        assert!(t.contains("✖</span> Connecting"), "{t}");
        assert!(
            t.contains("unknown behind · read mysql-bin.000002:1899"),
            "{t}"
        );
        assert!(t.ends_with("✖</span> fell back to async</span>"), "{t}");
        assert_eq!(
            mariadb_replication(&pb::MariaDbView::default()),
            "from no master (or unread) · semi-sync unknown"
        );
    }

    #[test]
    fn a_timeline_marks_done_running_and_pending_stages() {
        let f = FailoverSummary {
            epoch: 4,
            kind: "failover".into(),
            from_site: "a".into(),
            to_site: "b".into(),
            started_at_ms: 1000,
            steps: vec![pb::StepTiming {
                step: "fenced".into(),
                started_at_ms: 1000,
                done_at_ms: 1250,
                detail: "<lease expired>".into(),
                checks: vec![],
            }],
            ..Default::default()
        };
        let t = timeline(&f);
        assert!(t.contains("data-step-key=\"4:fence\""), "{t}");
        assert!(t.contains("250 ms"), "{t}");
        assert!(t.contains("&lt;lease expired&gt;"), "{t}");
        assert!(
            t.contains("data-step=\"promote\" data-state=\"running\""),
            "{t}"
        );
        assert!(
            t.contains("data-step=\"verify\" data-state=\"pending\""),
            "{t}"
        );
    }
}
