//! A client that follows the primary of a [`PgPair`], as an application
//! behind a front door would, recording every acknowledged write: for the
//! no-loss checks and the write-pause measurements of switchovers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::cluster::SETTLE;
use crate::pg::PgPair;
use crate::wait::wait_for;

/// One acknowledged write: its id, when the ack arrived, and which server
/// took it.
#[derive(Clone, Debug)]
pub struct Ack {
    /// The row's id.
    pub id: i64,
    /// When the acknowledgement arrived.
    pub at: Instant,
    /// `a` (the pair's primary at start) or `b`.
    pub site: &'static str,
}

/// A client that writes numbered rows to whichever server takes writes,
/// as an application behind a front door would: on an error it tries the
/// other server. Ids that got an error are never retried (their fate is
/// unknown); only acknowledged ones are checked.
pub struct Writer {
    acks: Arc<Mutex<Vec<Ack>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    /// Creates table `writes` on the primary and starts writing.
    pub async fn start(pair: &PgPair) -> Writer {
        pair.primary
            .exec("CREATE TABLE IF NOT EXISTS writes (id bigint PRIMARY KEY)")
            .await
            .expect("create the table");
        let servers = [
            ("a", pair.primary.connect_options()),
            ("b", pair.standby.connect_options()),
        ];
        let acks = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (out, halt) = (acks.clone(), stop.clone());
        let task = tokio::spawn(async move {
            use sqlx::ConnectOptions;
            let mut current = 0usize;
            let mut conn: Option<sqlx::PgConnection> = None;
            let mut id = 0i64;
            while !halt.is_cancelled() {
                let (site, opts) = &servers[current];
                if conn.is_none() {
                    conn = opts.connect().await.ok();
                }
                let Some(c) = conn.as_mut() else {
                    current = 1 - current;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                id += 1;
                let r = sqlx::query("INSERT INTO writes (id) VALUES ($1)")
                    .bind(id)
                    .execute(&mut *c)
                    .await;
                match r {
                    Ok(_) => out.lock().expect("acks").push(Ack {
                        id,
                        at: Instant::now(),
                        site,
                    }),
                    Err(_) => {
                        conn = None;
                        current = 1 - current;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
        });
        Writer { acks, stop, task }
    }

    /// Every acknowledged write so far.
    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().expect("acks").clone()
    }

    /// Waits until `site` has acknowledged `n` writes; panics after
    /// [`SETTLE`].
    pub async fn wait_acks_at(&self, site: &str, n: usize) {
        let what = format!("the writer to get {n} writes acknowledged by {site}");
        wait_for(&what, SETTLE, || async {
            let have = self.acks().iter().filter(|a| a.site == site).count();
            if have >= n {
                Ok(())
            } else {
                Err(format!("{have} so far"))
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Stops writing and returns every acknowledged write.
    pub async fn stop(self) -> Vec<Ack> {
        self.stop.cancel();
        self.task.await.expect("writer task");
        self.acks.lock().expect("acks").clone()
    }
}

/// The write pause of a move of the primary from `from` to `to` begun at
/// `since`: from the last write `from` acknowledged before `to` took its
/// first, to that first write.
pub fn write_pause(acks: &[Ack], from: &str, to: &str, since: Instant) -> Duration {
    let first = acks
        .iter()
        .filter(|a| a.site == to && a.at > since)
        .map(|a| a.at)
        .min()
        .expect("writes on the new primary");
    let last = acks
        .iter()
        .filter(|a| a.site == from && a.at < first)
        .map(|a| a.at)
        .max()
        .expect("writes on the old primary");
    first - last
}

/// The longest time `site` went without acknowledging a write, from
/// `since` to `until` (both ends count as edges: a writer that stopped
/// being acknowledged shows the whole silence).
pub fn longest_gap(acks: &[Ack], site: &str, since: Instant, until: Instant) -> Duration {
    let mut times: Vec<Instant> = acks
        .iter()
        .filter(|a| a.site == site && a.at >= since && a.at <= until)
        .map(|a| a.at)
        .collect();
    times.insert(0, since);
    times.push(until);
    times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}
