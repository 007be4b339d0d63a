//! What clients see: writers that insert numbered rows and record each
//! acknowledged write (id, the server that took it, whether synchronous
//! replication was in force for it, the server's and the client's clock),
//! and a sampler that records, every 200 ms, which database is writable,
//! when each database's postmaster started (a restart changes it), and
//! which HAProxy servers are routable.
//!
//! Three writers run at once: one through the front door (HAProxy on the
//! host side of the bridge) — what users see — and one local writer per
//! data site on that site's unix socket, as an app on the database's own
//! host would write. The local writers are how the checker sees a write a
//! fenced-off old primary accepted even when the front door no longer
//! routes there.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cluster::{PASSWORD, PG_PORT, SUPERUSER};
use crate::{netns, now_ms};

/// Pause between two writes of one writer: about 50 writes a second each,
/// enough to see every transition without starving two cores.
const PACE: Duration = Duration::from_millis(20);
/// A write not acknowledged within this is abandoned (outcome unknown).
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound of a connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the sampler looks.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);

/// One acknowledged write.
#[derive(Clone, Debug)]
pub struct Ack {
    /// Row id (front door from 1, local writer a from 1e9+1, b from 2e9+1).
    pub id: i64,
    /// `front-door`, `local-a` or `local-b`.
    pub via: &'static str,
    /// The site whose server took it (its `cluster_name`, `site_X`).
    pub server: String,
    /// Whether `synchronous_standby_names` was set when it was taken and
    /// still set once it was acknowledged.
    pub sync: bool,
    /// The server's clock when the row was inserted, Unix ms.
    pub server_ms: i64,
    /// The client's clock when the acknowledgement arrived, Unix ms.
    pub acked_ms: i64,
}

/// One look at the databases and the front door.
#[derive(Clone, Debug)]
pub struct Sample {
    /// When, Unix ms.
    pub at_ms: i64,
    /// `(site, writable)`: `Some(true)` primary, `Some(false)` in
    /// recovery, `None` no answer.
    pub writable: Vec<(&'static str, Option<bool>)>,
    /// `(site, pg_postmaster_start_time())` in Unix ms: changes exactly
    /// when that server was restarted; `None` when it did not answer.
    pub started: Vec<(&'static str, Option<i64>)>,
    /// Sites whose HAProxy server is routable (not in maintenance); `None`
    /// when HAProxy did not answer.
    pub routable: Option<Vec<&'static str>>,
}

/// The running writers and sampler.
pub struct Workload {
    /// Every acknowledged write, in acknowledgement order.
    pub acks: Arc<Mutex<Vec<Ack>>>,
    /// Every sample.
    pub samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// A connection over `sock_dir`'s unix socket (trust auth, as the harness's
/// own clients use; not affected by network cuts).
pub async fn connect_local(sock_dir: &Path) -> Result<PgConnection> {
    let opts = PgConnectOptions::new()
        .socket(sock_dir)
        .port(PG_PORT)
        .username(SUPERUSER)
        .database("postgres")
        .application_name("chaos-local");
    tokio::time::timeout(CONNECT_TIMEOUT, opts.connect())
        .await
        .with_context(|| {
            format!(
                "connecting over {}: no answer in {CONNECT_TIMEOUT:?}",
                sock_dir.display()
            )
        })?
        .with_context(|| format!("connecting over {}", sock_dir.display()))
}

async fn connect_front_door() -> Result<PgConnection> {
    let opts = PgConnectOptions::new()
        .host(netns::HOST_ADDR)
        .port(PG_PORT)
        .username(SUPERUSER)
        .password(PASSWORD)
        .database("postgres")
        .application_name("chaos-front-door");
    tokio::time::timeout(CONNECT_TIMEOUT, opts.connect())
        .await
        .context("connecting through the front door: no answer")?
        .context("connecting through the front door")
}

enum Target {
    FrontDoor,
    Local(PathBuf),
}

impl Workload {
    /// Starts the writers and the sampler.
    pub fn start(sock_a: PathBuf, sock_b: PathBuf, haproxy_sock: PathBuf) -> Self {
        let mut w = Self {
            acks: Arc::default(),
            samples: Arc::default(),
            stop: Arc::default(),
            tasks: Vec::new(),
        };
        let mut tasks = Vec::new();
        for (via, base, target) in [
            ("front-door", 0i64, Target::FrontDoor),
            ("local-a", 1_000_000_000, Target::Local(sock_a.clone())),
            ("local-b", 2_000_000_000, Target::Local(sock_b.clone())),
        ] {
            tasks.push(tokio::spawn(writer(
                via,
                base,
                target,
                w.acks.clone(),
                w.stop.clone(),
            )));
        }
        tasks.push(tokio::spawn(sampler(
            vec![("a", sock_a), ("b", sock_b)],
            haproxy_sock,
            w.samples.clone(),
            w.stop.clone(),
        )));
        w.tasks = tasks;
        w
    }

    /// Starts the writers and the sampler of a MariaDB world
    /// ([`crate::maria_workload`]): the same records, read over MySQL.
    pub fn start_maria(
        a: crate::maria_workload::Local,
        b: crate::maria_workload::Local,
        haproxy_sock: PathBuf,
    ) -> Self {
        use crate::maria_workload::{sampler, writer, Target};
        let mut w = Self {
            acks: Arc::default(),
            samples: Arc::default(),
            stop: Arc::default(),
            tasks: Vec::new(),
        };
        for (via, base, target) in [
            ("front-door", 0i64, Target::FrontDoor),
            ("local-a", 1_000_000_000, Target::Local(a.socket.clone())),
            ("local-b", 2_000_000_000, Target::Local(b.socket.clone())),
        ] {
            w.tasks.push(tokio::spawn(writer(
                via,
                base,
                target,
                w.acks.clone(),
                w.stop.clone(),
            )));
        }
        w.tasks.push(tokio::spawn(sampler(
            vec![a, b],
            haproxy_sock,
            w.samples.clone(),
            w.stop.clone(),
        )));
        w
    }

    /// Stops everything and waits for it.
    pub async fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks.drain(..) {
            let abort = t.abort_handle();
            if tokio::time::timeout(WRITE_TIMEOUT + CONNECT_TIMEOUT, t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }

    /// Acknowledged writes so far through `via`.
    pub fn acked(&self, via: &str) -> usize {
        self.acks
            .lock()
            .expect("acks lock")
            .iter()
            .filter(|a| a.via == via)
            .count()
    }

    /// Waits until `via` has `n` more acknowledged writes than now.
    pub async fn wait_more_acks(&self, via: &str, n: usize, timeout: Duration) -> Result<()> {
        let start = self.acked(via);
        crate::wait_for(
            &format!("{n} more acknowledged writes through {via}"),
            timeout,
            || async { (self.acked(via) >= start + n).then_some(()) },
        )
        .await
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn writer(
    via: &'static str,
    base: i64,
    target: Target,
    acks: Arc<Mutex<Vec<Ack>>>,
    stop: Arc<AtomicBool>,
) {
    let mut next = base + 1;
    while !stop.load(Ordering::SeqCst) {
        let conn = match &target {
            Target::FrontDoor => connect_front_door().await,
            Target::Local(sock) => connect_local(sock).await,
        };
        let Ok(mut conn) = conn else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        while !stop.load(Ordering::SeqCst) {
            let id = next;
            next += 1;
            let q = sqlx::query_as::<_, (String, String, i64)>(
                "INSERT INTO chaos_writes (id, via) VALUES ($1, $2) RETURNING current_setting('cluster_name'), current_setting('synchronous_standby_names'), (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
            )
            .bind(id)
            .bind(via)
            .fetch_one(&mut conn);
            match tokio::time::timeout(WRITE_TIMEOUT, q).await {
                Ok(Ok((cluster, sync_names, server_ms))) => {
                    // Set at the insert is not enough: a commit waiting for
                    // the standby is released, unconfirmed, when the agent
                    // degrades to async meanwhile (`sync_standby_down =
                    // "degrade"`). The session sees the new setting on its
                    // next statement; a write counts as synchronous only if
                    // it was set on both sides of the commit. (If that read
                    // fails, the setting at the insert stands: the stricter
                    // reading.)
                    let after = tokio::time::timeout(
                        WRITE_TIMEOUT,
                        sqlx::query_scalar::<_, String>(
                            "SELECT current_setting('synchronous_standby_names')",
                        )
                        .fetch_one(&mut conn),
                    )
                    .await;
                    let sync_after = match after {
                        Ok(Ok(names)) => !names.is_empty(),
                        _ => true,
                    };
                    acks.lock().expect("acks lock").push(Ack {
                        id,
                        via,
                        server: cluster.trim_start_matches("site_").to_string(),
                        sync: !sync_names.is_empty() && sync_after,
                        server_ms,
                        acked_ms: now_ms(),
                    });
                    tokio::time::sleep(PACE).await;
                }
                // A standby refusing the write, a killed server, a cut
                // link, a timeout: the outcome of this id is unknown (it
                // may or may not be stored); start over on a new session.
                _ => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sampler(
    dbs: Vec<(&'static str, PathBuf)>,
    haproxy_sock: PathBuf,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
) {
    let mut conns: Vec<Option<PgConnection>> = dbs.iter().map(|_| None).collect();
    while !stop.load(Ordering::SeqCst) {
        let at_ms = now_ms();
        let mut writable = Vec::new();
        let mut started = Vec::new();
        for ((site, sock), conn) in dbs.iter().zip(conns.iter_mut()) {
            if conn.is_none() {
                *conn = tokio::time::timeout(Duration::from_millis(500), connect_local(sock))
                    .await
                    .ok()
                    .and_then(|c| c.ok());
            }
            let (mut w, mut since) = (None, None);
            if let Some(c) = conn.as_mut() {
                let q = sqlx::query_as::<_, (bool, i64)>(
                    "SELECT pg_is_in_recovery(), (extract(epoch FROM pg_postmaster_start_time()) * 1000)::bigint",
                )
                .fetch_one(c);
                match tokio::time::timeout(Duration::from_millis(500), q).await {
                    Ok(Ok((in_recovery, start_ms))) => {
                        w = Some(!in_recovery);
                        since = Some(start_ms);
                    }
                    _ => {
                        if let Some(c) = conn.take() {
                            drop(tokio::time::timeout(Duration::from_millis(100), c.close()).await);
                        }
                    }
                }
            }
            writable.push((*site, w));
            started.push((*site, since));
        }
        let routable = haproxy_routable(&haproxy_sock).await;
        samples.lock().expect("samples lock").push(Sample {
            at_ms,
            writable,
            started,
            routable,
        });
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

/// Sites whose server in backend `postgres` has no administrative state
/// (not in maintenance, not drained), from `show servers state`.
pub(crate) async fn haproxy_routable(sock: &Path) -> Option<Vec<&'static str>> {
    let ask = async {
        let mut s = tokio::net::UnixStream::connect(sock).await.ok()?;
        s.write_all(b"show servers state postgres\n").await.ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        Some(out)
    };
    let out = tokio::time::timeout(Duration::from_millis(500), ask)
        .await
        .ok()??;
    let mut sites = Vec::new();
    for line in out.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ...
        if f.len() < 7 {
            continue;
        }
        if f[6] == "0" {
            match f[3] {
                "pg_a" | "maria_a" => sites.push("a"),
                "pg_b" | "maria_b" => sites.push("b"),
                _ => {}
            }
        }
    }
    Some(sites)
}

/// The ids stored on `site`'s server, read over its unix socket.
pub async fn stored_ids(sock: &Path) -> Result<Vec<i64>> {
    let mut c = connect_local(sock).await?;
    let ids = sqlx::query_scalar::<_, i64>("SELECT id FROM chaos_writes ORDER BY id")
        .fetch_all(&mut c)
        .await
        .with_context(|| format!("reading chaos_writes over {}", sock.display()))?;
    let _ = c.close().await;
    Ok(ids)
}
