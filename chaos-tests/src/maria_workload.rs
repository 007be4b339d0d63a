//! What clients of a MariaDB world see: the writers and the sampler of
//! [`crate::workload`], over MySQL. They record the same [`Ack`]s and
//! [`Sample`]s, so the checker's rules read them unchanged:
//!
//! * a writer inserts numbered rows into `app.chaos_writes` as the
//!   application's account (`app`: no `READ_ONLY ADMIN`, so `read_only`
//!   stops it). The front-door writer goes through HAProxy (198.18.0.1:3306),
//!   the local writers over each master's unix socket. An [`Ack`]'s server
//!   is the master's `server_id` (1: a, 2: b); it counts as synchronous when
//!   semi-synchronous replication was in force (`Rpl_semi_sync_master_status
//!   = ON`) before the insert and still once it was acknowledged: MariaDB
//!   releases a commit whose acknowledgement did not come within
//!   `rpl_semi_sync_master_timeout`, switching the status OFF (the agent's
//!   `sync_degrade_after_ms` under `sync_standby_down = "degrade"`);
//! * the sampler reads `@@read_only` of each master over its socket (as
//!   the administrator) — writable is `read_only = OFF` — and the start
//!   time of the `mariadbd` its pid file names (from `/proc`), which
//!   changes exactly when that server was restarted.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::mysql::{MySqlConnectOptions, MySqlSslMode};
use sqlx::{ConnectOptions, Connection, MySqlConnection};

use crate::maria::{
    connect_local, process_start_ms, Master, ADMIN_PASSWORD, ADMIN_USER, APP_DATABASE,
    APP_PASSWORD, APP_USER, MARIA_PORT,
};
use crate::workload::{Ack, Sample};
use crate::{netns, now_ms};

/// As [`crate::workload`]'s writers: about 50 writes a second each.
const PACE: Duration = Duration::from_millis(20);
/// A write not acknowledged within this is abandoned (outcome unknown).
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound of a connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the sampler looks.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);

/// How the harness reaches one master without the network.
#[derive(Clone, Debug)]
pub struct Local {
    /// `a` or `b`.
    pub site: &'static str,
    /// Its unix socket.
    pub socket: PathBuf,
    /// Its pid file (the sampler's start time).
    pub pid_file: PathBuf,
    /// Its option file (to tell its `mariadbd` from a reused PID).
    pub defaults_file: PathBuf,
}

impl Local {
    /// The harness's view of `m`.
    pub fn of(m: &Master) -> Self {
        Self {
            site: m.site,
            socket: m.socket.clone(),
            pid_file: m.pid_file.clone(),
            defaults_file: m.defaults_file.clone(),
        }
    }

    fn mariadbd_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd);
        let defaults = self.defaults_file.display().to_string();
        (pid > 1 && cmd.contains("mariadbd") && cmd.contains(&defaults)).then_some(pid)
    }
}

/// Where a writer writes.
pub enum Target {
    /// Through HAProxy on the host side of the bridge.
    FrontDoor,
    /// Over this master's unix socket.
    Local(PathBuf),
}

async fn connect(target: &Target) -> Result<MySqlConnection> {
    match target {
        Target::FrontDoor => {
            let opts = MySqlConnectOptions::new()
                .host(netns::HOST_ADDR)
                .port(MARIA_PORT)
                .username(APP_USER)
                .password(APP_PASSWORD)
                .database(APP_DATABASE)
                .ssl_mode(MySqlSslMode::Disabled)
                .disable_statement_logging();
            tokio::time::timeout(CONNECT_TIMEOUT, opts.connect())
                .await
                .context("connecting through the front door: no answer")?
                .context("connecting through the front door")
        }
        Target::Local(sock) => connect_local(sock, APP_USER, APP_PASSWORD).await,
    }
}

/// Whether semi-synchronous replication is in force on the session's
/// server right now (`Rpl_semi_sync_master_status`).
async fn semi_sync_on(c: &mut MySqlConnection) -> Result<bool> {
    let v = sqlx::query_scalar::<_, String>(
        "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_STATUS'",
    )
    .fetch_optional(c)
    .await?;
    Ok(v.as_deref() == Some("ON"))
}

/// One writer (see the module doc).
pub async fn writer(
    via: &'static str,
    base: i64,
    target: Target,
    acks: Arc<Mutex<Vec<Ack>>>,
    stop: Arc<AtomicBool>,
) {
    let mut next = base + 1;
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut conn) = connect(&target).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // Read before each insert: the previous write's "after" read
        // serves as the next one's "before".
        let mut before = match tokio::time::timeout(WRITE_TIMEOUT, semi_sync_on(&mut conn)).await {
            Ok(Ok(on)) => on,
            _ => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        while !stop.load(Ordering::SeqCst) {
            let id = next;
            next += 1;
            let q = sqlx::query_as::<_, (i64, i64)>(
                "INSERT INTO chaos_writes (id, via) VALUES (?, ?) RETURNING CAST(@@server_id AS SIGNED), CAST(UNIX_TIMESTAMP(SYSDATE(3)) * 1000 AS SIGNED)",
            )
            .bind(id)
            .bind(via)
            .fetch_one(&mut conn);
            match tokio::time::timeout(WRITE_TIMEOUT, q).await {
                Ok(Ok((server_id, server_ms))) => {
                    // A commit whose acknowledgement timed out is released
                    // and semi-sync switched off meanwhile: synchronous
                    // only if in force on both sides of the commit (a
                    // failed read leaves the reading at the insert: the
                    // stricter one).
                    let after = tokio::time::timeout(WRITE_TIMEOUT, semi_sync_on(&mut conn)).await;
                    let sync_after = match after {
                        Ok(Ok(on)) => on,
                        _ => true,
                    };
                    acks.lock().expect("acks lock").push(Ack {
                        id,
                        via,
                        server: match server_id {
                            1 => "a".to_string(),
                            2 => "b".to_string(),
                            other => format!("server_id {other}"),
                        },
                        sync: before && sync_after,
                        server_ms,
                        acked_ms: now_ms(),
                    });
                    before = sync_after;
                    tokio::time::sleep(PACE).await;
                }
                // Read-only (error 1290), a killed or frozen server, a cut
                // link, a timeout: the outcome of this id is unknown.
                _ => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The sampler (see the module doc); HAProxy's routable servers are read
/// by `routable`.
pub async fn sampler(
    dbs: Vec<Local>,
    haproxy_sock: PathBuf,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
) {
    let mut conns: Vec<Option<MySqlConnection>> = dbs.iter().map(|_| None).collect();
    while !stop.load(Ordering::SeqCst) {
        let at_ms = now_ms();
        let mut writable = Vec::new();
        let mut started = Vec::new();
        for (db, conn) in dbs.iter().zip(conns.iter_mut()) {
            if conn.is_none() {
                *conn = tokio::time::timeout(
                    Duration::from_millis(500),
                    connect_local(&db.socket, ADMIN_USER, ADMIN_PASSWORD),
                )
                .await
                .ok()
                .and_then(|c| c.ok());
            }
            let (mut w, mut since) = (None, None);
            if let Some(c) = conn.as_mut() {
                let q = sqlx::query_scalar::<_, i64>("SELECT CAST(@@GLOBAL.read_only AS SIGNED)")
                    .fetch_one(c);
                match tokio::time::timeout(Duration::from_millis(500), q).await {
                    Ok(Ok(read_only)) => {
                        w = Some(read_only == 0);
                        // The server answered: its process is the one the
                        // pid file names.
                        since = db.mariadbd_pid().and_then(process_start_ms);
                    }
                    _ => {
                        if let Some(c) = conn.take() {
                            drop(tokio::time::timeout(Duration::from_millis(100), c.close()).await);
                        }
                    }
                }
            }
            writable.push((db.site, w));
            started.push((db.site, since));
        }
        let routable = crate::workload::haproxy_routable(&haproxy_sock).await;
        samples.lock().expect("samples lock").push(Sample {
            at_ms,
            writable,
            started,
            routable,
        });
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

/// The ids stored on the master behind `socket`.
pub async fn stored_ids(socket: &std::path::Path) -> Result<Vec<i64>> {
    let mut c = connect_local(socket, ADMIN_USER, ADMIN_PASSWORD).await?;
    let ids = sqlx::query_scalar::<_, i64>("SELECT id FROM chaos_writes ORDER BY id")
        .fetch_all(&mut c)
        .await
        .with_context(|| format!("reading chaos_writes over {}", socket.display()))?;
    let _ = c.close().await;
    Ok(ids)
}
