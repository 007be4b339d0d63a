//! What the demo holds while it runs, and how it lets go of it: on
//! success, on error and on Ctrl-C alike.

use std::sync::Arc;
use std::time::Duration;

use palisade_testkit::wait_for;
use tokio::task::JoinHandle;

use super::cluster::Cluster;
use super::pair::DbPair;
use super::report::Progress;
use super::stack::Stack;
use super::writer::Writer;

/// The demo was stopped by a signal (not a failure: no log tails).
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {0}")]
pub struct Interrupted(pub &'static str);

/// Everything the demo starts, so that it is released whatever happens.
#[derive(Default)]
pub struct Resources {
    /// The pair while it is being built (awaited at cleanup if interrupted).
    pub pair_build: Option<JoinHandle<anyhow::Result<DbPair>>>,
    /// The running pair; shared with the writer and the kill task.
    pub pair: Option<Arc<DbPair>>,
    /// The witnesses and their work directory.
    pub cluster: Option<Cluster>,
    /// The rest of the sites' stacks: Elasticsearch doubles, HAProxy
    /// (their files are in the cluster's work directory).
    pub stack: Option<Stack>,
    /// The writer, while it runs.
    pub writer: Option<Writer>,
    /// The PostgreSQL server binaries' directory, once found (not set
    /// with `--db mariadb`).
    pub pg_bin_dir: Option<std::path::PathBuf>,
}

/// Runs `work` to completion on a blocking-pool thread of the current
/// runtime. The test kit's sqlx futures are `Send`, but rustc cannot prove
/// it through their higher-ranked lifetimes ("implementation of `Executor`
/// is not general enough"), so `tokio::spawn` rejects them; `Handle::block_on` needs no `Send` future.
/// The future is made on that thread by `work`, so it never crosses threads.
pub fn spawn_on_own_thread<W, F>(work: W) -> JoinHandle<F::Output>
where
    W: FnOnce() -> F + Send + 'static,
    F: std::future::Future,
    F::Output: Send + 'static,
{
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(work()))
}

/// Releases everything in `res`, in order: the writer, HAProxy (killed)
/// and the Elasticsearch doubles, the witnesses (SIGTERM, then SIGKILL
/// after 10 s) and their work directory, the pair (its servers stopped,
/// its directory removed). Reports what it could not do.
pub async fn cleanup(res: Resources, p: &Progress) {
    if let Some(w) = res.writer {
        if let Err(e) = w.stop().await {
            p.detail(format!("writer: {e:#}"));
        }
    }
    if let Some(s) = res.stack {
        s.shut_down(p).await;
    }
    if let Some(c) = res.cluster {
        c.shut_down(p).await;
    }
    let mut pairs = Vec::new();
    if let Some(build) = res.pair_build {
        // Interrupted while building: let the build finish, then stop it.
        if let Ok(Ok(pair)) = build.await {
            pairs.push(Arc::new(pair));
        }
    }
    pairs.extend(res.pair);
    for pair in pairs {
        // A kill task may still hold a reference for a moment (if it still
        // does after the wait, `try_unwrap` below says so).
        let name = pair.db().name();
        let _ = wait_for(
            "the other tasks to let go of the database pair",
            Duration::from_secs(15),
            async || (Arc::strong_count(&pair) == 1).then_some(()),
        )
        .await;
        let dir = pair.dir().to_path_buf();
        match Arc::try_unwrap(pair) {
            Ok(pair) => {
                if tokio::task::spawn_blocking(move || drop(pair))
                    .await
                    .is_err()
                {
                    p.detail(format!("stopping the {name} pair panicked"));
                }
                if dir.exists() {
                    p.detail(format!("could not remove {}", dir.display()));
                } else {
                    p.detail(format!("removed {}", dir.display()));
                }
            }
            Err(_) => p.detail(format!(
                "the {name} pair is still in use; it stops when that task ends ({})",
                dir.display()
            )),
        }
    }
}
