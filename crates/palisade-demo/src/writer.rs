//! The demo's client: numbered rows, one `INSERT` at a time, on whichever
//! server of the pair takes writes.
//!
//! It goes one of two ways ([`Route`]):
//! * Through the front door (HAProxy, when installed): every row is one
//!   fresh connection to HAProxy's port, and the same statement asks the
//!   server that took it for its port (`inet_server_port()`), so the log
//!   says which site each write reached. The writer knows nothing of the
//!   failover: HAProxy moving it from a to b is the point.
//! * Directly, like an application that follows the primary itself: it
//!   writes to site a; when a write fails it tries site b at once.
//!
//! Either way, while no server takes the write it retries every 10 ms.
//! Every write opens a fresh connection, so a retry pays a real reconnect,
//! as an application's would. A row counts as acknowledged only when its
//! `INSERT` returned success. An id is retried until a server acknowledges
//! it; `ON CONFLICT DO NOTHING` lets the retry succeed when the failed
//! attempt did commit without the acknowledgement reaching us.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use palisade_testkit::pg::{PgPair, PgServer};
use palisade_testkit::{wait_for, Attempt};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The demo's table.
const TABLE: &str = "palisade_demo_writes";
/// Pause between rounds while no server takes writes.
const RETRY: Duration = Duration::from_millis(10);
/// The sites, in the writer's order of preference, with the pair's servers.
const SITES: [&str; 2] = ["a", "b"];
/// Bound of one write through the front door (connect, insert, answer).
const FRONT_DOOR_TIMEOUT: Duration = Duration::from_secs(2);

/// How the writer reaches the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// To site a's server, else site b's: the writer follows the primary.
    Direct,
    /// Through the front door listening on this loopback port.
    FrontDoor {
        /// The frontend's port.
        port: u16,
    },
}

/// One acknowledged row.
#[derive(Clone, Debug)]
pub struct Ack {
    /// The row's id.
    pub id: i64,
    /// The site whose server acknowledged it.
    pub site: &'static str,
    /// When the acknowledgement arrived.
    pub at: Instant,
}

/// What the writer has done so far.
#[derive(Clone, Debug, Default)]
pub struct WriteLog {
    /// Every acknowledged row, in order.
    pub acks: Vec<Ack>,
    /// The last failed write, for diagnostics.
    pub last_error: Option<String>,
}

impl WriteLog {
    /// Rows acknowledged by `site`.
    pub fn count_on(&self, site: &str) -> usize {
        self.acks.iter().filter(|a| a.site == site).count()
    }

    /// Rows `old` acknowledged after `new` had acknowledged one: writes
    /// that went back to the old site after the failover (must be none).
    pub fn back_to(&self, old: &str, new: &str) -> usize {
        self.acks
            .iter()
            .skip_while(|a| a.site != new)
            .filter(|a| a.site == old)
            .count()
    }
}

/// A running writer task.
pub struct Writer {
    log: Arc<Mutex<WriteLog>>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Writer {
    /// Creates the writer's table on the pair's primary.
    pub async fn create_table(pair: &PgPair) -> anyhow::Result<()> {
        pair.primary
            .exec(&format!(
                "CREATE TABLE {TABLE} (id bigint PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT clock_timestamp())"
            ))
            .await
            .context("creating the writer's table on the primary")
    }

    /// Starts writing rows 1, 2, 3, ... by `route`.
    pub fn start(pair: Arc<PgPair>, route: Route) -> Writer {
        let log = Arc::new(Mutex::new(WriteLog::default()));
        let cancel = CancellationToken::new();
        let (out, stop) = (log.clone(), cancel.clone());
        let task = crate::resources::spawn_on_own_thread(move || async move {
            match route {
                Route::Direct => write_rows(pair, out, stop).await,
                Route::FrontDoor { port } => write_through(pair, port, out, stop).await,
            }
        });
        Writer { log, cancel, task }
    }

    fn snapshot(&self) -> WriteLog {
        self.log.lock().expect("writer log lock poisoned").clone()
    }

    /// Rows acknowledged so far.
    pub fn acked(&self) -> usize {
        self.log
            .lock()
            .expect("writer log lock poisoned")
            .acks
            .len()
    }

    /// Waits until `site` has acknowledged `n` rows; fails after `timeout`,
    /// or at once when the writer stopped.
    pub async fn wait_acked(&self, site: &str, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let what = format!("site {site} to acknowledge {n} rows");
        wait_for(&what, timeout, async || {
            let log = self.snapshot();
            if log.count_on(site) >= n {
                return Attempt::Ready(());
            }
            let seen = format!(
                "{} acknowledged, last error: {}",
                log.count_on(site),
                log.last_error.as_deref().unwrap_or("none")
            );
            if self.task.is_finished() {
                Attempt::GiveUp(anyhow!("the writer stopped ({seen})"))
            } else {
                Attempt::NotYet(seen)
            }
        })
        .await
    }

    /// Waits for the first row `site` acknowledges; returns when it was.
    pub async fn wait_first_on(&self, site: &str, timeout: Duration) -> anyhow::Result<Instant> {
        self.wait_acked(site, 1, timeout).await?;
        self.snapshot()
            .acks
            .iter()
            .find(|a| a.site == site)
            .map(|a| a.at)
            .context("the writer's log lost a row")
    }

    /// Stops the writer and returns what it did.
    pub async fn stop(self) -> anyhow::Result<WriteLog> {
        self.cancel.cancel();
        self.task.await.context("the writer task failed")?;
        let log = self.log.lock().expect("writer log lock poisoned").clone();
        Ok(log)
    }
}

/// The writer task through the front door at `port` (see the module doc).
async fn write_through(
    pair: Arc<PgPair>,
    port: u16,
    log: Arc<Mutex<WriteLog>>,
    cancel: CancellationToken,
) {
    let options = pair
        .primary
        .connect_options()
        .port(port)
        .application_name("palisade-demo-writer");
    let sites = [
        (i32::from(pair.primary.port()), SITES[0]),
        (i32::from(pair.standby.port()), SITES[1]),
    ];
    // One statement per row that also answers the port of the server that
    // took it. The `INSERT` runs although the query does not read it (a
    // data-modifying `WITH` always runs to completion).
    let sql = format!(
        "WITH w AS (INSERT INTO {TABLE} (id) VALUES ($1) ON CONFLICT (id) DO NOTHING) SELECT inet_server_port()"
    );
    let mut id = 1i64;
    while !cancel.is_cancelled() {
        let outcome = tokio::select! {
            _ = cancel.cancelled() => break,
            r = insert_through(&options, &sql, id) => r,
        };
        match outcome {
            Ok(server_port) => {
                let site = sites
                    .iter()
                    .find(|(p, _)| *p == server_port)
                    .map(|(_, s)| *s)
                    .unwrap_or("unknown");
                let at = Instant::now();
                log.lock()
                    .expect("writer log lock poisoned")
                    .acks
                    .push(Ack { id, site, at });
                id += 1;
            }
            Err(e) => {
                log.lock().expect("writer log lock poisoned").last_error =
                    Some(format!("through the front door: {e:#}"));
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    }
}

/// Row `id` by `sql` over one fresh connection through the front door;
/// returns the port of the server that took it.
async fn insert_through(options: &PgConnectOptions, sql: &str, id: i64) -> anyhow::Result<i32> {
    let work = async {
        let mut conn = PgConnection::connect_with(options)
            .await
            .context("connecting")?;
        let port: i32 = sqlx::query_scalar(sql)
            .bind(id)
            .fetch_one(&mut conn)
            .await
            .with_context(|| format!("inserting row {id}"))?;
        // The row is committed; a failed goodbye changes nothing.
        let _ = conn.close().await;
        Ok(port)
    };
    tokio::time::timeout(FRONT_DOOR_TIMEOUT, work)
        .await
        .map_err(|_| anyhow!("no answer within {FRONT_DOOR_TIMEOUT:?}"))?
}

/// The writer task that follows the primary itself (see the module doc).
async fn write_rows(pair: Arc<PgPair>, log: Arc<Mutex<WriteLog>>, cancel: CancellationToken) {
    let servers: [&PgServer; 2] = [&pair.primary, &pair.standby];
    let mut current = 0;
    let mut id = 1i64;
    while !cancel.is_cancelled() {
        let sql = format!("INSERT INTO {TABLE} (id) VALUES ({id}) ON CONFLICT (id) DO NOTHING");
        let mut acked = false;
        for target in [current, 1 - current] {
            match servers[target].exec(&sql).await {
                Ok(()) => {
                    let at = Instant::now();
                    log.lock()
                        .expect("writer log lock poisoned")
                        .acks
                        .push(Ack {
                            id,
                            site: SITES[target],
                            at,
                        });
                    current = target;
                    acked = true;
                    break;
                }
                Err(e) => {
                    log.lock().expect("writer log lock poisoned").last_error =
                        Some(format!("site {}: {e:#}", SITES[target]));
                }
            }
        }
        if acked {
            id += 1;
            continue;
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// The ids stored on `server` (the new primary), sorted.
pub async fn ids_on(server: &PgServer) -> anyhow::Result<Vec<i64>> {
    let text = server
        .query_text(&format!(
            "SELECT string_agg(id::text, ',' ORDER BY id) FROM {TABLE}"
        ))
        .await
        .context("reading the writer's rows on the new primary")?
        .unwrap_or_default();
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>()
                .with_context(|| format!("{TABLE} holds {s:?}, not an id"))
        })
        .collect()
}
