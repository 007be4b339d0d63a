//! The witness's HTTP listener (`http.listen`): health endpoints for load
//! balancers that palisade does not drive, and Prometheus metrics.
//!
//! * `GET /primary`: 200 only at the witness whose site holds the writable
//!   primary under a valid lease; 503 elsewhere
//!   ([`palisade_core::health::primary`]).
//! * `GET /standby`: 200 at the standby's witness while it streams within
//!   `max_lag` ([`palisade_core::health::standby`]).
//! * `GET /health`: 200 while the witness runs, with its Raft view.
//! * `GET /metrics`: the Prometheus text exposition ([`metrics`]).
//! * `GET /`, `/history`, `/operation/{epoch}`, `/drill/{n}` and
//!   `/console/...`: the live status console ([`console`], docs/console.md).
//!
//! Every answer is a small JSON object (the metrics excepted) saying why.
//! The listener is plain HTTP by default and then read-only: nothing it
//! serves changes any state, and it reveals no secret (docs/security.md
//! says what it shows). With `http.tls = true` it speaks HTTPS with the
//! witness's certificate and asks for an optional client certificate
//! ([`tls`]); an operator's certificate (operator role) then gets the
//! console's actions (`POST /console/actions/...`, [`console`]).
//! `HEAD` works wherever `GET` does.

pub mod console;
pub mod metrics;
pub mod tls;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use palisade_core::health::{SiteView, Verdict};
use palisade_core::SiteId;
use palisade_raft::store::StateView;
use palisade_raft::Raft;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::agent::Agent;
use crate::clock::mono_ms;
use crate::config::DatabaseSettings;
use crate::controller::Controller;
use crate::observer::Latest;

/// The parts of a witness with a database that the endpoints read.
pub struct DatabaseParts {
    /// Its site agent.
    pub agent: Arc<Agent>,
    /// Its latest probes.
    pub latest: Latest,
    /// Its controller (the detector's assessment, when leading).
    pub controller: Arc<Controller>,
    /// The database settings (lag guards, probe timing).
    pub settings: Arc<DatabaseSettings>,
}

/// What the endpoints read.
pub struct HttpState {
    /// This witness's id.
    pub node: u64,
    /// This witness's site.
    pub site: SiteId,
    /// Its Raft node.
    pub raft: Raft,
    /// The replicated state it applied.
    pub state: StateView,
    /// `None` for a witness cluster without a database.
    pub db: Option<DatabaseParts>,
    /// Terms and leader changes seen since start ([`count_elections`]).
    pub terms_seen: Arc<AtomicU64>,
    /// See `terms_seen`.
    pub leader_changes_seen: Arc<AtomicU64>,
    /// The status console; `None`: not served (404).
    pub console: Option<Arc<console::Console>>,
    /// The console's actions (HTTPS only); `None`: no controls, every
    /// action refused.
    pub actions: Option<console::Actions>,
}

/// Serves the endpoints on `listener` until `shutdown`: over TLS with
/// `tls` ([`tls::server_config`]), else plain HTTP.
pub fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    st: Arc<HttpState>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    // The console's status refresher lives as long as the listener.
    let refresher = st.console.clone().map(console::Console::refresh);
    let app = Router::new()
        .route("/primary", get(primary))
        .route("/standby", get(standby))
        .route("/health", get(health))
        .route("/metrics", get(metrics_page))
        .merge(console::routes())
        .with_state(st)
        .into_make_service_with_connect_info::<tls::Peer>();
    tokio::spawn(async move {
        type Serving =
            std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>>;
        let stop = shutdown.clone().cancelled_owned();
        let server: Serving = match tls {
            None => Box::pin(std::future::IntoFuture::into_future(
                axum::serve(listener, app).with_graceful_shutdown(stop),
            )),
            Some(config) => {
                let listener = tls::TlsListener::new(listener, config, shutdown)?;
                Box::pin(std::future::IntoFuture::into_future(
                    axum::serve(listener, app).with_graceful_shutdown(stop),
                ))
            }
        };
        match refresher {
            Some(refresher) => tokio::join!(server, refresher).0,
            None => server.await,
        }
    })
}

/// Counts the terms and leader changes this witness sees, for the metrics
/// (a watch on Raft's metrics; ends with Raft or `shutdown`).
pub async fn count_elections(
    raft: Raft,
    terms: Arc<AtomicU64>,
    leaders: Arc<AtomicU64>,
    shutdown: CancellationToken,
) {
    let mut rx = raft.metrics();
    let (mut term, mut leader) = {
        let m = rx.borrow();
        (m.current_term, m.current_leader)
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
        }
        let m = rx.borrow().clone();
        if m.current_term > term {
            terms.fetch_add(m.current_term - term, Ordering::Relaxed);
            term = m.current_term;
        }
        if m.current_leader != leader && m.current_leader.is_some() {
            leaders.fetch_add(1, Ordering::Relaxed);
        }
        leader = m.current_leader.or(leader);
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}

fn verdict(st: &HttpState, role: &str, v: Verdict) -> Response {
    json(
        if v.ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        serde_json::json!({
            "role": role,
            "ok": v.ok,
            "reason": v.reason,
            "node": st.node,
            "site": st.site.0,
        }),
    )
}

/// Evaluates `decide` over this witness's view of its site.
fn with_view(st: &HttpState, decide: fn(&SiteView<'_>) -> Verdict) -> Verdict {
    let Some(db) = &st.db else {
        return Verdict {
            ok: false,
            reason: "no database is configured".into(),
        };
    };
    let state = st.state.cluster_state();
    let now = mono_ms();
    let own = db.latest.observation_at(&st.site);
    let primary = state
        .db
        .as_ref()
        .and_then(|d| db.latest.observation_at(&d.primary));
    let s = &db.settings;
    // A probe older than two intervals plus its timeout is not about now.
    let fresh_ms = (2 * s.probe_interval + s.probe_timeout).as_millis() as u64;
    decide(&SiteView {
        site: &st.site,
        state: &state,
        lease_remaining_ms: db.agent.lease_remaining_ms(),
        serving_under_lease: db.agent.serving_under_lease(),
        own_db: own.as_ref().map(|(o, at)| (o, now.saturating_sub(*at))),
        primary_db: primary.as_ref().map(|(o, at)| (o, now.saturating_sub(*at))),
        fresh_ms,
        max_lag_bytes: s.detector.max_lag_bytes,
        max_lag_seconds: s.detector.max_lag_seconds,
    })
}

async fn primary(State(st): State<Arc<HttpState>>) -> Response {
    let v = with_view(&st, palisade_core::health::primary);
    verdict(&st, "primary", v)
}

async fn standby(State(st): State<Arc<HttpState>>) -> Response {
    let v = with_view(&st, palisade_core::health::standby);
    verdict(&st, "standby", v)
}

async fn health(State(st): State<Arc<HttpState>>) -> Response {
    let m = st.raft.metrics().borrow().clone();
    json(
        StatusCode::OK,
        serde_json::json!({
            "node": st.node,
            "site": st.site.0,
            "state": format!("{:?}", m.state).to_lowercase(),
            "term": m.current_term,
            "leader_id": m.current_leader,
            "last_applied_index": m.last_applied.map(|l| l.index),
        }),
    )
}

async fn metrics_page(State(st): State<Arc<HttpState>>) -> Response {
    let m = st.raft.metrics().borrow().clone();
    let now = mono_ms();
    let state = st.state.cluster_state();
    let is_leader = m.state == openraft::ServerState::Leader;
    let snapshot = metrics::Snapshot {
        node: st.node,
        site: st.site.0.clone(),
        raft: metrics::RaftFacts {
            term: m.current_term,
            leader: m.current_leader,
            is_leader,
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            terms_seen: st.terms_seen.load(Ordering::Relaxed),
            leader_changes_seen: st.leader_changes_seen.load(Ordering::Relaxed),
        },
        probes: st
            .db
            .as_ref()
            .map(|db| {
                [
                    &state.db.as_ref().map(|d| d.primary.clone()),
                    &state.db.as_ref().map(|d| d.standby.clone()),
                ]
                .into_iter()
                .flatten()
                .filter_map(|site| {
                    db.latest
                        .observation_at(site)
                        .map(|(o, at)| (site.0.clone(), o, now.saturating_sub(at)))
                })
                .collect()
            })
            .unwrap_or_default(),
        // Only the leader's detector runs: another witness's assessment is
        // stale.
        assessment: st
            .db
            .as_ref()
            .filter(|_| is_leader)
            .map(|db| db.controller.assessment())
            .unwrap_or_default(),
        lease_remaining_ms: st.db.as_ref().and_then(|db| db.agent.lease_remaining_ms()),
        serving_under_lease: st
            .db
            .as_ref()
            .is_some_and(|db| db.agent.serving_under_lease()),
        lease_answers: st
            .db
            .as_ref()
            .map(|db| db.agent.lease_answer_counts())
            .unwrap_or_default(),
        max_lag: st.db.as_ref().map(|db| {
            (
                db.settings.detector.max_lag_bytes,
                db.settings.detector.max_lag_seconds,
            )
        }),
        state,
    };
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics::render(&snapshot),
    )
        .into_response()
}
