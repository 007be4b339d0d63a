//! Sample replies shared by the unit tests of [`crate::json`] and
//! [`crate::table`].

use palisade_api::v1::{
    DatabaseView, FailoverSummary, JournalEntry, JournalReply, MariaDbSemiSync, MariaDbView,
    NodeStatus, PeerProgress, Role, SearchView, StatusReply, StepCheck, StepTiming,
};

/// A healthy-looking witness in term 5 that follows leader 1.
pub fn node(id: u64, site: &str, role: Role, term: u64) -> NodeStatus {
    NodeStatus {
        id,
        site: site.to_owned(),
        role: role as i32,
        term,
        leader_id: Some(1),
        last_log_index: Some(12),
        last_applied_index: Some(12),
        snapshot_index: None,
        raft_addr: format!("127.0.0.1:730{id}"),
        control_addr: format!("127.0.0.1:740{id}"),
        error: String::new(),
        replication: vec![],
        millis_since_quorum_ack: None,
        ..Default::default()
    }
}

/// Node 2 answering: leader 1, follower 2, node 3 unreachable; the leader
/// has heard from 2 and never from 3.
pub fn status() -> StatusReply {
    let mut third = node(3, "site-c", Role::Unreachable, 0);
    third.leader_id = None;
    third.last_log_index = None;
    third.last_applied_index = None;
    third.error = "connection refused".to_owned();
    StatusReply {
        node_id: 2,
        leader_id: Some(1),
        term: 5,
        cluster_name: "palisade-local".to_owned(),
        nodes: vec![
            node(1, "a", Role::Leader, 5),
            node(2, "b", Role::Follower, 5),
            third,
        ],
        replication: vec![
            PeerProgress {
                id: 2,
                matched_index: Some(12),
                lag_entries: 0,
                last_contact_ms: Some(42),
            },
            PeerProgress {
                id: 3,
                matched_index: None,
                lag_entries: 12,
                last_contact_ms: None,
            },
        ],
        ..Default::default()
    }
}

/// When the failover of [`failed_over`] started (leader wall clock, Unix ms).
pub const FAILOVER_STARTED_MS: i64 = 1_700_000_000_000;

/// A reachable database as one witness saw it: `in_recovery` tells standby
/// from primary.
pub fn db_up(site: &str, standby: bool, lsn: &str, age_ms: u64) -> DatabaseView {
    DatabaseView {
        site: site.to_owned(),
        reachable: true,
        error: String::new(),
        in_recovery: Some(standby),
        lsn: lsn.to_owned(),
        replay_lag_seconds: standby.then_some(0.4),
        streaming: standby,
        latency_ms: 3,
        age_ms,
        mariadb: None,
    }
}

/// A database one witness could not reach, with the server's
/// `<class>: <detail>` error.
pub fn db_down(site: &str, error: &str, age_ms: u64) -> DatabaseView {
    DatabaseView {
        site: site.to_owned(),
        reachable: false,
        error: error.to_owned(),
        in_recovery: None,
        lsn: String::new(),
        replay_lag_seconds: None,
        streaming: false,
        latency_ms: 1000,
        age_ms,
        mariadb: None,
    }
}

/// MariaDB master `a` of [`mariadb_pair`], the writer, as a witness saw
/// it: `server_id` 1, replicating from `b-db:3306` (`server_id` 2) with
/// both threads running and nothing left to apply; semi-sync enabled and
/// active (one replica acking), and it acks as a replica too.
pub fn maria_writer(age_ms: u64) -> DatabaseView {
    DatabaseView {
        site: "a".to_owned(),
        reachable: true,
        error: String::new(),
        // The detector's projection: read_only off is "not in recovery".
        in_recovery: Some(false),
        lsn: "3/162E".to_owned(),
        replay_lag_seconds: None,
        streaming: true,
        latency_ms: 3,
        age_ms,
        mariadb: Some(MariaDbView {
            read_only: Some(false),
            server_id: Some(1),
            auto_increment_increment: Some(2),
            auto_increment_offset: Some(1),
            io_running: "Yes".to_owned(),
            sql_running: Some(true),
            seconds_behind_master: Some(0),
            replicates_from: "b-db:3306".to_owned(),
            replicates_from_server_id: Some(2),
            read_position: "mysql-bin.000002:1899".to_owned(),
            executed_position: "mysql-bin.000002:1899".to_owned(),
            last_io_error: String::new(),
            last_sql_error: String::new(),
            binlog_position: "mysql-bin.000003:5678".to_owned(),
            gtid_binlog_pos: "0-1-42".to_owned(),
            gtid_slave_pos: "0-2-7".to_owned(),
            semi_sync: Some(MariaDbSemiSync {
                enabled: true,
                active: true,
                clients: 1,
                timeout_ms: 10_000,
                replica_acks: true,
            }),
        }),
    }
}

/// MariaDB master `b` of [`mariadb_pair`], read-only, as a witness saw it:
/// `server_id` 2, replicating from `a-db:3306` (`server_id` 1), having
/// read `a`'s binary log up to `read` and applied it up to `executed`
/// (positions in `mysql-bin.000003`), `behind` seconds behind; semi-sync
/// not enabled as a master, acking as a replica.
pub fn maria_reader(read: u64, executed: u64, behind: u64, age_ms: u64) -> DatabaseView {
    DatabaseView {
        site: "b".to_owned(),
        reachable: true,
        error: String::new(),
        in_recovery: Some(true),
        lsn: format!("3/{read:X}"),
        replay_lag_seconds: Some(behind as f64),
        streaming: true,
        latency_ms: 4,
        age_ms,
        mariadb: Some(MariaDbView {
            read_only: Some(true),
            server_id: Some(2),
            auto_increment_increment: Some(2),
            auto_increment_offset: Some(2),
            io_running: "Yes".to_owned(),
            sql_running: Some(true),
            seconds_behind_master: Some(behind),
            replicates_from: "a-db:3306".to_owned(),
            replicates_from_server_id: Some(1),
            read_position: format!("mysql-bin.000003:{read}"),
            executed_position: format!("mysql-bin.000003:{executed}"),
            last_io_error: String::new(),
            last_sql_error: String::new(),
            binlog_position: "mysql-bin.000002:1899".to_owned(),
            gtid_binlog_pos: "0-1-42".to_owned(),
            gtid_slave_pos: "0-1-42".to_owned(),
            semi_sync: Some(MariaDbSemiSync {
                enabled: false,
                active: false,
                clients: 0,
                timeout_ms: 10_000,
                replica_acks: true,
            }),
        }),
    }
}

/// [`status`] with a MariaDB master-master pair: `a` the writer, `b`
/// read-only, each replicating from the other, semi-sync (`sync` mode) in
/// force on `a`. Witness 1 sees `b` caught up; witness 2's older probe
/// caught `b` with 468 bytes of `a`'s binary log received but not yet
/// applied. Witness 3 (unreachable) reports nothing.
pub fn mariadb_pair() -> StatusReply {
    let mut r = status();
    r.epoch = 1;
    r.primary_site = "a".to_owned();
    r.standby_site = "b".to_owned();
    r.replication_mode = "sync".to_owned();
    r.assessment = "healthy: primary a up on 2 of 2 reporting witnesses".to_owned();
    r.nodes[0].databases = vec![maria_writer(120), maria_reader(5678, 5678, 0, 120)];
    r.nodes[1].databases = vec![maria_writer(340), maria_reader(5678, 5210, 1, 340)];
    r.nodes[0].lease_remaining_ms = Some(1_100);
    r.nodes[0].serving_under_lease = true;
    r
}

/// A reachable Elasticsearch as one witness saw it, with its
/// `_cluster/health` status (`green`, `yellow`, `red`).
pub fn search_up(site: &str, status: &str, nodes: u32, age_ms: u64) -> SearchView {
    SearchView {
        site: site.to_owned(),
        reachable: true,
        error: String::new(),
        status: status.to_owned(),
        number_of_nodes: Some(nodes),
        latency_ms: 4,
        age_ms,
    }
}

/// An Elasticsearch one witness could not reach, with the server's
/// `<class>: <detail>` error.
pub fn search_down(site: &str, error: &str, age_ms: u64) -> SearchView {
    SearchView {
        site: site.to_owned(),
        reachable: false,
        error: error.to_owned(),
        status: String::new(),
        number_of_nodes: None,
        latency_ms: 1000,
        age_ms,
    }
}

/// The `verified` detail of [`finished_failover`]: the server's summary of
/// [`verified_checks`].
pub const VERIFIED_DETAIL: &str = "3 checks passed";

/// A check of a step, as the server reports it.
pub fn check(name: &str, ok: bool, detail: &str) -> StepCheck {
    StepCheck {
        name: name.to_owned(),
        ok,
        detail: detail.to_owned(),
    }
}

/// The `verified` checks of [`finished_failover`]: three, all passed.
pub fn verified_checks() -> Vec<StepCheck> {
    vec![
        check("database at b writable", true, "lsn 0/3000148"),
        check("elasticsearch at b green", true, "3 nodes"),
        check("exactly one monitorsEnabled=true", true, "site b"),
    ]
}

/// The automatic failover from `a` to `b` in epoch 3, finished and
/// completed: five steps of 210, 1800, 120, 280 and 1800 ms, 4230 ms in all,
/// the last (`verified`) with [`verified_checks`].
pub fn finished_failover() -> FailoverSummary {
    let t = FAILOVER_STARTED_MS;
    let step = |step: &str, from: i64, to: i64, detail: &str| StepTiming {
        step: step.to_owned(),
        started_at_ms: t + from,
        done_at_ms: t + to,
        detail: detail.to_owned(),
        checks: vec![],
    };
    let verified = StepTiming {
        checks: verified_checks(),
        ..step("verified", 2420, 4220, VERIFIED_DETAIL)
    };
    FailoverSummary {
        epoch: 3,
        from_site: "a".to_owned(),
        to_site: "b".to_owned(),
        trigger: "automatic".to_owned(),
        reason: "primary a down on 2 of 3 witnesses for 10000 ms".to_owned(),
        steps: vec![
            step("fenced", 10, 220, "fenced by agent: stopped (fast) in 210 ms"),
            step("promoted", 220, 2020, "promoted at 0/3000148 on timeline 2"),
            step("app-flipped", 2020, 2140, "a: monitorsEnabled true -> false; b: monitorsEnabled false -> true"),
            step("repointed", 2140, 2420, "haproxy postgres: pg_b ready; elasticsearch hosts -> b"),
            verified,
        ],
        outcome: "completed".to_owned(),
        started_at_ms: t,
        finished_at_ms: Some(t + 4230),
        kind: "failover".to_owned(),
        evidence_json: r#"{"votes":[{"witness":1,"saw":"down (refused)","report_age_ms":120}],"down_for_ms":10000,"primary_agent_alive":true,"known_lag_bytes":0,"replication":"async"}"#.to_owned(),
        request_id: String::new(),
    }
}

/// [`status`] after the automatic failover from `a` to `b` in epoch 3: `a`
/// must still rejoin. Witness 1 sees `a` back as a streaming standby,
/// witness 2 cannot reach it, witness 3 (unreachable) reports nothing.
pub fn failed_over() -> StatusReply {
    let mut r = status();
    r.epoch = 3;
    r.primary_site = "b".to_owned();
    r.standby_site = "a".to_owned();
    r.replication_mode = "async".to_owned();
    r.standby_needs_rejoin = true;
    r.assessment = "healthy: primary b up on 2 of 2 reporting witnesses".to_owned();
    r.last_failover = Some(finished_failover());
    r.nodes[0].databases = vec![
        db_up("a", true, "0/3000060", 120),
        db_up("b", false, "0/3000148", 120),
    ];
    r.nodes[1].databases = vec![
        db_down("a", "timeout: no answer within 1000 ms", 340),
        db_up("b", false, "0/3000148", 340),
    ];
    r.nodes[0].search = vec![
        search_up("a", "yellow", 2, 120),
        search_up("b", "green", 3, 120),
    ];
    r.nodes[1].search = vec![
        search_down("a", "timeout: no answer within 1000 ms", 340),
        search_up("b", "green", 3, 340),
    ];
    r.nodes[0].monitors_enabled = Some(false);
    r.nodes[1].monitors_enabled = Some(true);
    r.nodes[1].lease_remaining_ms = Some(1_100);
    r.nodes[1].serving_under_lease = true;
    r
}

/// Two notes, the first with a newline in it.
pub fn journal() -> JournalReply {
    JournalReply {
        entries: vec![
            JournalEntry {
                log_index: 9,
                at_unix_ms: 1_700_000_000_123,
                author: "alice".to_owned(),
                text: "DR drill:\ncheckpoint taken".to_owned(),
                request_id: String::new(),
            },
            JournalEntry {
                log_index: 14,
                at_unix_ms: 1_700_000_060_000,
                author: "bob".to_owned(),
                text: "done".to_owned(),
                request_id: String::new(),
            },
        ],
    }
}
