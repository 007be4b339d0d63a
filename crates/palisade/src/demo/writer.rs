//! The demo's client: numbered rows, one `INSERT` at a time, on whichever
//! server of the pair takes writes.
//!
//! It behaves like an application that follows the primary: it writes to
//! site a; when a write fails it tries site b at once, and while neither
//! takes the write it retries every 10 ms. Every write opens a fresh
//! connection (the test kit's [`PgServer::exec`]), so a retry pays a real
//! reconnect, as an application's would. A row counts as acknowledged only
//! when its `INSERT` returned success. An id is retried until a server
//! acknowledges it; `ON CONFLICT DO NOTHING` lets the retry succeed when the
//! failed attempt did commit without the acknowledgement reaching us.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use palisade_testkit::pg::{PgPair, PgServer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The demo's table.
const TABLE: &str = "palisade_demo_writes";
/// Pause between rounds while no server takes writes.
const RETRY: Duration = Duration::from_millis(10);
/// The sites, in the writer's order of preference, with the pair's servers.
const SITES: [&str; 2] = ["a", "b"];

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

    /// Starts writing rows 1, 2, 3, ...
    pub fn start(pair: Arc<PgPair>) -> Writer {
        let log = Arc::new(Mutex::new(WriteLog::default()));
        let cancel = CancellationToken::new();
        let (out, stop) = (log.clone(), cancel.clone());
        let task = super::resources::spawn_on_own_thread(move || write_rows(pair, out, stop));
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

    /// Waits until `site` has acknowledged `n` rows.
    pub async fn wait_acked(&self, site: &str, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.snapshot();
            if log.count_on(site) >= n {
                return Ok(());
            }
            if Instant::now() > deadline || self.task.is_finished() {
                bail!(
                    "site {site} acknowledged only {} of {n} rows within {timeout:?} (last error: {})",
                    log.count_on(site),
                    log.last_error.as_deref().unwrap_or("none")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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

/// The writer task (see the module doc).
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
