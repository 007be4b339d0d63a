//! The demo's client: numbered rows, one `INSERT` at a time, on whichever
//! server of the pair takes writes (PostgreSQL, or MariaDB over the MySQL
//! protocol with `--db mariadb`).
//!
//! It goes one of two ways ([`Route`]):
//! * Through the front door (HAProxy, when installed): every row is one
//!   fresh connection to HAProxy's port, and the same connection asks the
//!   server that took it for its port (`inet_server_port()`, MariaDB's
//!   `@@port`), so the log says which site each write reached. The writer
//!   knows nothing of the failover: HAProxy moving it from a to b is the
//!   point.
//! * Directly, like an application that follows the primary itself: it
//!   writes to site a; when a write fails it tries site b at once.
//!
//! Either way, while no server takes the write it retries every 10 ms.
//! Every write opens a fresh connection, so a retry pays a real reconnect,
//! as an application's would. A row counts as acknowledged only when its
//! `INSERT` returned success. An id is retried until a server acknowledges
//! it; `ON CONFLICT DO NOTHING` (MariaDB: `ON DUPLICATE KEY UPDATE id =
//! id`) lets the retry succeed when the failed attempt did commit without
//! the acknowledgement reaching us.
//!
//! On MariaDB the writer is the application's account (the test kit's
//! `app` user, in its `app` database), which `read_only` stops: the other
//! master refuses its writes until palisade makes it the writer. On
//! PostgreSQL it is the pair's superuser, whom a standby refuses anyway.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use palisade_testkit::mariadb::MARIA_APP_DATABASE;
use palisade_testkit::{wait_for, Attempt};
use sqlx::mysql::MySqlConnectOptions;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, MySqlConnection, PgConnection};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::pair::DbPair;

/// The demo's table.
const TABLE: &str = "palisade_demo_writes";
/// Pause between rounds while no server takes writes.
const RETRY: Duration = Duration::from_millis(10);
/// The sites, in the writer's order of preference, with the pair's servers.
const SITES: [&str; 2] = ["a", "b"];
/// Bound of one write (connect, insert, answer): a write still pending
/// after it (a hung server, a semi-sync commit waiting for a master that
/// is gone) is given up, and its id retried.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

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
    /// Creates the writer's table on site a's server (it replicates to b).
    /// On MariaDB, in the application's database, and waits until the
    /// other master has it too.
    pub async fn create_table(pair: &DbPair) -> anyhow::Result<()> {
        match pair {
            DbPair::Pg(p) => p
                .primary
                .exec(&format!(
                    "CREATE TABLE {TABLE} (id bigint PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT clock_timestamp())"
                ))
                .await
                .context("creating the writer's table on the primary"),
            DbPair::Maria(p) => {
                p.a.exec(&format!(
                    "CREATE TABLE `{MARIA_APP_DATABASE}`.{TABLE} (id BIGINT PRIMARY KEY, written_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE = InnoDB"
                ))
                .await
                .context("creating the writer's table on site a's master")?;
                p.wait_in_sync()
                    .await
                    .context("waiting for the writer's table to replicate to site b's master")
            }
        }
    }

    /// Starts writing rows 1, 2, 3, ... by `route`.
    pub fn start(pair: Arc<DbPair>, route: Route) -> Writer {
        let log = Arc::new(Mutex::new(WriteLog::default()));
        let cancel = CancellationToken::new();
        let (out, stop) = (log.clone(), cancel.clone());
        let task = crate::resources::spawn_on_own_thread(move || async move {
            match route {
                Route::Direct => write_rows(&pair, out, stop).await,
                Route::FrontDoor { port } => write_through(&pair, port, out, stop).await,
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

/// Where one write goes: a server, or the front door, by either protocol.
#[derive(Clone, Debug)]
enum Endpoint {
    /// PostgreSQL (the pair's superuser).
    Pg(PgConnectOptions),
    /// MariaDB (the application's user, in its database).
    Maria(MySqlConnectOptions),
}

impl Endpoint {
    /// Site `site`'s server (`a` or `b`) of `pair`, or, with `port`, the
    /// front door listening there.
    fn of(pair: &DbPair, site: &str, port: Option<u16>) -> Endpoint {
        let port = port.unwrap_or_else(|| pair.port(site));
        match pair {
            DbPair::Pg(p) => {
                let server = if site == "a" { &p.primary } else { &p.standby };
                Endpoint::Pg(
                    server
                        .connect_options()
                        .port(port)
                        .application_name("palisade-demo-writer"),
                )
            }
            DbPair::Maria(p) => {
                let server = if site == "a" { &p.a } else { &p.b };
                Endpoint::Maria(server.app_options().port(port))
            }
        }
    }

    /// Row `id` over one fresh connection, bounded by [`WRITE_TIMEOUT`];
    /// returns the port of the server that took it.
    async fn insert(&self, id: i64) -> anyhow::Result<i32> {
        let work = async {
            match self {
                Endpoint::Pg(options) => {
                    let mut conn = PgConnection::connect_with(options)
                        .await
                        .context("connecting")?;
                    // One statement that also answers the port of the
                    // server that took it. The `INSERT` runs although the
                    // query does not read it (a data-modifying `WITH`
                    // always runs to completion).
                    let port: i32 = sqlx::query_scalar(&format!(
                        "WITH w AS (INSERT INTO {TABLE} (id) VALUES ($1) ON CONFLICT (id) DO NOTHING) SELECT inet_server_port()"
                    ))
                    .bind(id)
                    .fetch_one(&mut conn)
                    .await
                    .with_context(|| format!("inserting row {id}"))?;
                    // The row is committed; a failed goodbye changes nothing.
                    let _ = conn.close().await;
                    Ok(port)
                }
                Endpoint::Maria(options) => {
                    let mut conn = MySqlConnection::connect_with(options)
                        .await
                        .context("connecting")?;
                    // The server this connection reached, then the row
                    // (autocommit: committed when the INSERT returns).
                    let port: i64 = sqlx::query_scalar("SELECT CAST(@@port AS SIGNED)")
                        .fetch_one(&mut conn)
                        .await
                        .context("asking the server for its port")?;
                    sqlx::query(&format!(
                        "INSERT INTO {TABLE} (id) VALUES (?) ON DUPLICATE KEY UPDATE id = id"
                    ))
                    .bind(id)
                    .execute(&mut conn)
                    .await
                    .with_context(|| format!("inserting row {id}"))?;
                    let _ = conn.close().await;
                    i32::try_from(port).with_context(|| format!("@@port {port} is no port"))
                }
            }
        };
        tokio::time::timeout(WRITE_TIMEOUT, work)
            .await
            .map_err(|_| anyhow!("no answer within {WRITE_TIMEOUT:?}"))?
    }
}

/// The writer task through the front door at `port` (see the module doc).
async fn write_through(
    pair: &DbPair,
    port: u16,
    log: Arc<Mutex<WriteLog>>,
    cancel: CancellationToken,
) {
    let endpoint = Endpoint::of(pair, "a", Some(port));
    let sites = SITES.map(|site| (i32::from(pair.port(site)), site));
    let mut id = 1i64;
    while !cancel.is_cancelled() {
        let outcome = tokio::select! {
            _ = cancel.cancelled() => break,
            r = endpoint.insert(id) => r,
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

/// The writer task that follows the primary itself (see the module doc).
async fn write_rows(pair: &DbPair, log: Arc<Mutex<WriteLog>>, cancel: CancellationToken) {
    let servers = SITES.map(|site| Endpoint::of(pair, site, None));
    let mut current = 0;
    let mut id = 1i64;
    while !cancel.is_cancelled() {
        let mut acked = false;
        for target in [current, 1 - current] {
            let outcome = tokio::select! {
                _ = cancel.cancelled() => return,
                r = servers[target].insert(id) => r,
            };
            match outcome {
                Ok(_) => {
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

/// The ids stored on site b's server (the new primary), sorted.
pub async fn ids_on_b(pair: &DbPair) -> anyhow::Result<Vec<i64>> {
    match pair {
        DbPair::Pg(p) => {
            let text = p
                .standby
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
        DbPair::Maria(p) => Ok(p
            .b
            .ids(TABLE)
            .await
            .context("reading the writer's rows on the new writer")?
            .into_iter()
            .collect()),
    }
}
