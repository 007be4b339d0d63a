//! A **TEST DOUBLE of the Elasticsearch REST API** — not Elasticsearch.
//!
//! No Elasticsearch server can be installed on the machines palisade is
//! built and tested on, so tests point palisade's real, production client
//! code (`palisade_probe::elasticsearch`, `palisade_actions::elasticsearch`)
//! at this small axum server instead. It serves only what that code calls,
//! with the status codes and JSON shapes of real ES 7.x/8.x:
//!
//! * `GET /_cluster/health` — answer chosen by [`HealthMode`]: green, yellow
//!   or red documents, a slow answer, or no server at all (the listener and
//!   every open connection are closed, so clients see "connection refused").
//! * `POST /{index}/_ccr/pause_follow`, `POST /{index}/_close`,
//!   `POST /{index}/_ccr/unfollow`, `POST /{index}/_open` — over an
//!   in-memory set of indices, with ES's error answers for repeated or
//!   out-of-order calls (documented in `palisade_actions::elasticsearch`),
//!   so CCR promotion and its idempotent re-runs can be tested.
//!
//! Anything a test needs beyond this belongs in the double only if the
//! production client starts calling it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// What `GET /_cluster/health` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthMode {
    /// `200`, `"status": "green"`.
    Green,
    /// `200`, `"status": "yellow"` (unassigned replicas).
    Yellow,
    /// `200`, `"status": "red"` (unassigned primaries) — ES answers red
    /// health with 200, not an error status.
    Red,
    /// Waits this long, then answers green: a hung or overloaded node.
    Slow(Duration),
    /// Not listening: the port is closed and open connections are dropped.
    Dead,
}

/// One index as the double tracks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexState {
    /// Still a CCR follower (not yet unfollowed).
    pub follower: bool,
    /// Its shard follow tasks run (not paused).
    pub following: bool,
    /// Open (not closed).
    pub open: bool,
}

#[derive(Debug)]
struct Shared {
    mode: HealthMode,
    number_of_nodes: u32,
    indices: BTreeMap<String, IndexState>,
    /// `METHOD /path` of every request served, in order.
    requests: Vec<String>,
    /// The next this-many CCR calls answer 503.
    fail_next: u32,
}

type SharedState = Arc<Mutex<Shared>>;

fn lock(s: &SharedState) -> MutexGuard<'_, Shared> {
    // A panic in a handler must not hide every later answer in other tests.
    s.lock().unwrap_or_else(|p| p.into_inner())
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// A running Elasticsearch API test double on `127.0.0.1` (see the module
/// docs: this is **not** Elasticsearch).
pub struct EsDouble {
    addr: SocketAddr,
    state: SharedState,
    server: tokio::sync::Mutex<Option<Running>>,
}

impl EsDouble {
    /// Starts the double on a free loopback port, healthy (green, 3 nodes),
    /// with no indices.
    pub async fn start() -> anyhow::Result<Self> {
        let state = Arc::new(Mutex::new(Shared {
            mode: HealthMode::Green,
            number_of_nodes: 3,
            indices: BTreeMap::new(),
            requests: Vec::new(),
            fail_next: 0,
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the Elasticsearch test double")?;
        let addr = listener.local_addr().context("local address")?;
        let running = serve(listener, state.clone());
        tracing::info!(%addr, "started TEST DOUBLE of the Elasticsearch REST API (not a real Elasticsearch)");
        Ok(Self {
            addr,
            state,
            server: tokio::sync::Mutex::new(Some(running)),
        })
    }

    /// `http://127.0.0.1:PORT`, the base URL to give the client under test.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes what `_cluster/health` answers. `Dead` stops listening and
    /// closes every connection before returning; any other mode after
    /// `Dead` listens again on the same port.
    pub async fn set_health(&self, mode: HealthMode) -> anyhow::Result<()> {
        lock(&self.state).mode = mode;
        let mut server = self.server.lock().await;
        match (mode, server.is_some()) {
            (HealthMode::Dead, true) => {
                if let Some(running) = server.take() {
                    stop(running).await;
                }
                tracing::info!(addr = %self.addr, "Elasticsearch test double is now dead (not listening)");
            }
            (HealthMode::Dead, false) => {}
            (_, false) => {
                let listener = rebind(self.addr).await?;
                *server = Some(serve(listener, self.state.clone()));
                tracing::info!(addr = %self.addr, ?mode, "Elasticsearch test double listening again");
            }
            (_, true) => {}
        }
        Ok(())
    }

    /// Sets `number_of_nodes` in health answers.
    pub fn set_number_of_nodes(&self, n: u32) {
        lock(&self.state).number_of_nodes = n;
    }

    /// Adds (or resets) an open, actively following CCR follower index.
    pub fn add_follower(&self, index: &str) {
        lock(&self.state).indices.insert(
            index.to_owned(),
            IndexState {
                follower: true,
                following: true,
                open: true,
            },
        );
    }

    /// Adds (or resets) an ordinary open index.
    pub fn add_index(&self, index: &str) {
        lock(&self.state).indices.insert(
            index.to_owned(),
            IndexState {
                follower: false,
                following: false,
                open: true,
            },
        );
    }

    /// Indices that are still followers, sorted.
    pub fn followers(&self) -> Vec<String> {
        lock(&self.state)
            .indices
            .iter()
            .filter(|(_, s)| s.follower)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The state of one index, `None` if it does not exist.
    pub fn index(&self, index: &str) -> Option<IndexState> {
        lock(&self.state).indices.get(index).cloned()
    }

    /// `METHOD /path` of every request served so far, in order.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.state).requests.clone()
    }

    /// Makes the next `n` CCR calls answer `503` (to test retries).
    pub fn fail_next_ccr_calls(&self, n: u32) {
        lock(&self.state).fail_next = n;
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(self) {
        if let Some(running) = self.server.lock().await.take() {
            stop(running).await;
        }
    }
}

fn serve(listener: tokio::net::TcpListener, state: SharedState) -> Running {
    let app = Router::new()
        .route("/_cluster/health", get(health))
        .route("/{index}/_ccr/pause_follow", post(pause_follow))
        .route("/{index}/_ccr/unfollow", post(unfollow))
        .route("/{index}/_close", post(close))
        .route("/{index}/_open", post(open))
        .with_state(state);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(error = %e, "Elasticsearch test double server error");
        }
    });
    Running { stop, task }
}

async fn stop(running: Running) {
    let _ = running.stop.send(());
    let mut task = running.task;
    // Graceful shutdown closes idle keep-alive connections at once but
    // waits for requests in flight (a Slow health answer); "dead" must not
    // wait for those.
    if tokio::time::timeout(Duration::from_millis(500), &mut task)
        .await
        .is_err()
    {
        task.abort();
        let _ = task.await;
    }
}

async fn rebind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    // The port was ours a moment ago; the kernel may take a moment to let
    // go of it.
    let what = format!("{addr} to be free to rebind the Elasticsearch test double on");
    crate::wait_for(&what, Duration::from_secs(1), async || {
        tokio::net::TcpListener::bind(addr).await
    })
    .await
}

async fn health(State(state): State<SharedState>) -> Response {
    let (mode, nodes) = {
        let mut s = lock(&state);
        s.requests.push("GET /_cluster/health".into());
        (s.mode, s.number_of_nodes)
    };
    let status = match mode {
        HealthMode::Green | HealthMode::Dead => "green",
        HealthMode::Yellow => "yellow",
        HealthMode::Red => "red",
        HealthMode::Slow(delay) => {
            tokio::time::sleep(delay).await;
            "green"
        }
    };
    let (unassigned, active_primaries) = match status {
        "green" => (0, 10),
        "yellow" => (10, 10),
        _ => (15, 5),
    };
    Json(json!({
        "cluster_name": "palisade-es-test-double",
        "status": status,
        "timed_out": false,
        "number_of_nodes": nodes,
        "number_of_data_nodes": nodes,
        "active_primary_shards": active_primaries,
        "active_shards": active_primaries * 2 - unassigned.min(active_primaries),
        "relocating_shards": 0,
        "initializing_shards": 0,
        "unassigned_shards": unassigned,
        "delayed_unassigned_shards": 0,
        "number_of_pending_tasks": 0,
        "number_of_in_flight_fetch": 0,
        "task_max_waiting_in_queue_millis": 0,
        "active_shards_percent_as_number": if unassigned == 0 { 100.0 } else { 50.0 }
    }))
    .into_response()
}

/// ES's error document.
fn es_error(status: StatusCode, kind: &str, reason: String, index: Option<&str>) -> Response {
    let mut cause = json!({ "type": kind, "reason": reason });
    if let Some(index) = index {
        cause["index"] = Value::String(index.to_owned());
        cause["resource.type"] = Value::String("index_or_alias".into());
        cause["resource.id"] = Value::String(index.to_owned());
    }
    (
        status,
        Json(json!({
            "error": {
                "root_cause": [cause.clone()],
                "type": kind,
                "reason": reason,
            },
            "status": status.as_u16(),
        })),
    )
        .into_response()
}

fn acknowledged() -> Response {
    Json(json!({ "acknowledged": true })).into_response()
}

/// Common prologue of the CCR calls: log, injected failures, missing index.
fn ccr_call<'a>(
    s: &'a mut Shared,
    what: &str,
    index: &str,
) -> Result<&'a mut IndexState, Box<Response>> {
    s.requests.push(format!("POST /{index}/{what}"));
    if s.fail_next > 0 {
        s.fail_next -= 1;
        return Err(Box::new(es_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable_shards_exception",
            "injected failure (test double)".into(),
            None,
        )));
    }
    s.indices.get_mut(index).ok_or_else(|| {
        Box::new(es_error(
            StatusCode::NOT_FOUND,
            "index_not_found_exception",
            format!("no such index [{index}]"),
            Some(index),
        ))
    })
}

fn not_a_follower(index: &str) -> Response {
    es_error(
        StatusCode::BAD_REQUEST,
        "illegal_argument_exception",
        format!("index [{index}] is not a follower index"),
        None,
    )
}

async fn pause_follow(State(state): State<SharedState>, Path(index): Path<String>) -> Response {
    let mut s = lock(&state);
    let ix = match ccr_call(&mut s, "_ccr/pause_follow", &index) {
        Ok(ix) => ix,
        Err(r) => return *r,
    };
    if !ix.follower {
        return not_a_follower(&index);
    }
    if !ix.following {
        return es_error(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            format!("no shard follow tasks for [{index}]"),
            None,
        );
    }
    ix.following = false;
    acknowledged()
}

async fn unfollow(State(state): State<SharedState>, Path(index): Path<String>) -> Response {
    let mut s = lock(&state);
    let ix = match ccr_call(&mut s, "_ccr/unfollow", &index) {
        Ok(ix) => ix,
        Err(r) => return *r,
    };
    if !ix.follower {
        return not_a_follower(&index);
    }
    if ix.open {
        return es_error(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            format!("cannot convert the follower index [{index}] to a non-follower, because it has not been closed"),
            None,
        );
    }
    if ix.following {
        return es_error(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            format!("cannot convert the follower index [{index}] to a non-follower, because it has not been paused"),
            None,
        );
    }
    ix.follower = false;
    acknowledged()
}

async fn close(State(state): State<SharedState>, Path(index): Path<String>) -> Response {
    let mut s = lock(&state);
    let ix = match ccr_call(&mut s, "_close", &index) {
        Ok(ix) => ix,
        Err(r) => return *r,
    };
    ix.open = false;
    Json(json!({
        "acknowledged": true,
        "shards_acknowledged": true,
        "indices": { index: { "closed": true } }
    }))
    .into_response()
}

async fn open(State(state): State<SharedState>, Path(index): Path<String>) -> Response {
    let mut s = lock(&state);
    let ix = match ccr_call(&mut s, "_open", &index) {
        Ok(ix) => ix,
        Err(r) => return *r,
    };
    ix.open = true;
    Json(json!({ "acknowledged": true, "shards_acknowledged": true })).into_response()
}
