//! The live status console (issue 15), served on the witness's HTTP
//! listener: server-rendered pages, a stylesheet and a small script, all
//! embedded in the binary (no CDN, nothing fetched at run time).
//!
//! * `GET /`: the overview: the three sites side by side, each witness's
//!   view of each database, the links between sites, the detector's
//!   assessment, the lease, the replication mode, maintenance, the current
//!   or last operation's timeline and the charts.
//! * `GET /history`: every operation, rejoin and drill.
//! * `GET /operation/{epoch}`: one operation's timeline.
//! * `GET /drill/{n}`: the n-th recorded drill's report (0 is the oldest).
//! * `GET /console/events`: server-sent events that keep the pages live.
//! * `GET /console/app.js`, `GET /console/style.css`,
//!   `GET /console/actions.js`: the assets.
//! * `POST /console/actions/{switchover,failover,pause,resume}`: an
//!   operator's actions, on an HTTPS listener only (`actions`).
//!
//! The data is the control API's: the console calls this witness's own
//! [`ControlService`] in process (`Status`, `History`, `Watch`), so a
//! follower shows the cluster as the leader reports it, exactly as
//! `palisadectl status` would, and says which witness it is. The events
//! are the `Watch` stream's; the status is refreshed once a second while
//! a page is open (every 5 s otherwise, for the charts' samples) and pushed
//! to every open page: the browser never polls.
//!
//! Read-only unless an operator acts: the console's copy of the control
//! service checks no certificate, so the console calls only its read RPCs
//! on its own; the changing ones (switchover, failover, pause, resume) are
//! called only by `actions`, after it checked the request's TLS client
//! certificate (operator role), the page's token and, for a forced
//! failover, the typed site name, and with the certificate's name as
//! `who`.

mod actions;
mod charts;
mod render;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use palisade_api::v1 as pb;
use palisade_api::v1::control_server::Control;
use palisade_raft::store::StateView;
use tokio::sync::{mpsc, watch, Notify};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::Request;

use super::tls::Peer;
use super::HttpState;
use crate::control::ControlService;
pub use actions::Actions;
use render::Nav;

const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// The assets' version (a hash of their text): pages link them with it,
/// so a browser caches them for a day and fetches them again only when
/// the binary serves different ones.
static ASSETS_VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    // FNV-1a, 64 bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in APP_JS
        .bytes()
        .chain(STYLE_CSS.bytes())
        .chain(actions::ACTIONS_JS.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
});

/// How often the status is refreshed while a page is open.
const LIVE_REFRESH: Duration = Duration::from_secs(1);
/// How often it is refreshed otherwise (the charts' samples).
const IDLE_REFRESH: Duration = Duration::from_millis(charts::SAMPLE_EVERY_MS as u64);
/// How long a page waits for a fresh status before it shows the last one:
/// a page loads in well under 200 ms even while a peer does not answer.
const PAGE_STATUS_WAIT: Duration = Duration::from_millis(120);
/// The longest one refresh may take (a peer that does not answer costs
/// the control service's own bound, 1 s).
const REFRESH_BOUND: Duration = Duration::from_secs(3);

/// The latest status, with when it was had.
type Latest = Option<(Instant, Arc<pb::StatusReply>)>;

/// The console of one witness.
pub struct Console {
    node: u64,
    site: String,
    /// This witness's control service, its certificate checks off (see the
    /// module's doc): only its read RPCs are called.
    control: ControlService,
    state: StateView,
    /// The latest status; every open event stream watches it.
    status: watch::Sender<Latest>,
    /// Asks the refresher for a status now (a page just opened).
    wake: Notify,
    charts: Mutex<charts::Charts>,
    /// Ends the event streams and the refresher when the witness stops.
    shutdown: CancellationToken,
}

impl Console {
    /// The console of witness `node` at `site`, reading through `control`
    /// (a copy of the witness's control service without certificate
    /// checks), ending its streams on `shutdown`.
    pub fn new(
        node: u64,
        site: String,
        control: ControlService,
        state: StateView,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            node,
            site,
            control,
            state,
            status: watch::Sender::new(None),
            wake: Notify::new(),
            charts: Mutex::default(),
            shutdown,
        })
    }

    /// The control service's status, bounded by `within`.
    async fn fetch_status(&self, within: Duration) -> Option<pb::StatusReply> {
        let call = Control::status(&self.control, Request::new(pb::StatusRequest {}));
        match tokio::time::timeout(within, call).await {
            Ok(Ok(r)) => Some(r.into_inner()),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "console: status failed");
                None
            }
            Err(_) => None,
        }
    }

    /// Keeps the status fresh (see the module's doc) until the witness stops.
    pub async fn refresh(self: Arc<Self>) {
        loop {
            if let Some(s) = self.fetch_status(REFRESH_BOUND).await {
                self.publish(s);
            }
            let period = if self.status.receiver_count() > 0 {
                LIVE_REFRESH
            } else {
                IDLE_REFRESH
            };
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    fn publish(&self, s: pb::StatusReply) {
        self.charts
            .lock()
            .expect("console charts lock poisoned")
            .record(palisade_raft::unix_ms_now(), &s);
        self.status
            .send_replace(Some((Instant::now(), Arc::new(s))));
    }

    /// The last status refreshed when it is younger than [`LIVE_REFRESH`];
    /// else a fresh one if it comes quickly, else the last one.
    async fn status_for_page(&self) -> Option<(Instant, Arc<pb::StatusReply>)> {
        let cached = self.status.borrow().clone();
        if cached
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < LIVE_REFRESH)
        {
            return cached;
        }
        if let Some(s) = self.fetch_status(PAGE_STATUS_WAIT).await {
            self.publish(s);
        }
        self.status.borrow().clone()
    }

    async fn history(&self) -> pb::HistoryReply {
        match Control::history(&self.control, Request::new(pb::HistoryRequest {})).await {
            Ok(r) => r.into_inner(),
            Err(e) => {
                tracing::warn!(error = %e, "console: history failed");
                pb::HistoryReply::default()
            }
        }
    }

    fn page(&self, title: &str, nav: Nav, body: &str) -> Response {
        html(render::page(
            title,
            self.node,
            &self.site,
            nav,
            &ASSETS_VERSION,
            body,
        ))
    }

    fn overview_html(&self, latest: &Latest) -> String {
        match latest {
            Some((at, s)) => render::overview(s, self.node, at.elapsed().as_millis() as u64),
            None => "<p class=\"stale\">The status is not available yet: this witness could not build it.</p>"
                .into(),
        }
    }

    fn charts_html(&self) -> String {
        self.charts
            .lock()
            .expect("console charts lock poisoned")
            .html(palisade_raft::unix_ms_now())
    }
}

/// The console's routes, for the listener's router.
pub fn routes() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/", get(overview))
        .route("/history", get(history))
        .route("/operation/{epoch}", get(operation))
        .route("/drill/{n}", get(drill))
        .route("/console/events", get(events))
        .route("/console/app.js", get(app_js))
        .route("/console/style.css", get(style_css))
        .route("/console/actions.js", get(actions_js))
        .route("/console/actions/{action}", post(actions::act))
}

fn html(body: String) -> Response {
    (
        StatusCode::OK,
        [
            (header::CACHE_CONTROL, "no-store"),
            // Never framed (no click-jacking of the action controls).
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        Html(body),
    )
        .into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            // Linked with their version (see `ASSETS_VERSION`).
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, what.to_string()).into_response()
}

/// The answer of a witness that serves no console.
fn no_console() -> Response {
    not_found("this witness serves no console")
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

async fn actions_js() -> Response {
    asset("text/javascript; charset=utf-8", actions::ACTIONS_JS)
}

/// The operator's name when the page's connection may act (see
/// `actions`); `None` on plain HTTP, without a certificate or with a
/// viewer's.
fn operator(st: &HttpState, peer: &Peer) -> Option<String> {
    st.actions.as_ref().and_then(|a| a.operator(peer))
}

async fn overview(
    State(st): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
) -> Response {
    let Some(c) = &st.console else {
        return no_console();
    };
    let latest = c.status_for_page().await;
    let h = c.history().await;
    // Controls only for an operator's certificate (never for a viewer).
    let controls = match (&st.actions, operator(&st, &peer)) {
        (Some(a), Some(_)) => actions::panel(
            &a.issue(&peer),
            latest.as_ref().map(|(_, s)| s.as_ref()),
            &ASSETS_VERSION,
        ),
        _ => String::new(),
    };
    let body = format!(
        "<div id=\"overview\">{}</div>{controls}\
         <section aria-label=\"Current or last operation\"><h2>Current or last operation</h2><div id=\"live-timeline\">{}</div></section>\
         <section aria-label=\"Charts\"><h2>Replication lag and probe latency</h2><div id=\"charts\">{}</div></section>\
         <section aria-label=\"Events\"><h2>Events</h2><ol id=\"events\" class=\"events\" aria-live=\"polite\"></ol></section>",
        c.overview_html(&latest),
        render::live_timeline(h.in_progress.as_ref(), h.operations.last()),
        c.charts_html(),
    );
    c.page("Overview", Nav::Overview, &body)
}

async fn history(State(st): State<Arc<HttpState>>) -> Response {
    let Some(c) = &st.console else {
        return no_console();
    };
    let h = c.history().await;
    c.page("History", Nav::History, &render::history(&h))
}

async fn operation(State(st): State<Arc<HttpState>>, Path(epoch): Path<u64>) -> Response {
    let Some(c) = &st.console else {
        return no_console();
    };
    let h = c.history().await;
    let Some(f) = h
        .in_progress
        .iter()
        .chain(h.operations.iter())
        .find(|f| f.epoch == epoch)
    else {
        return not_found(&format!("no operation of epoch {epoch} in the history"));
    };
    let body = format!(
        "<h1>Operation of epoch {epoch}</h1><div class=\"timeline-page\" data-timeline-epoch=\"{epoch}\">{}</div>",
        render::timeline(f)
    );
    c.page(&format!("Epoch {epoch}"), Nav::Other, &body)
}

async fn drill(State(st): State<Arc<HttpState>>, Path(n): Path<usize>) -> Response {
    let Some(c) = &st.console else {
        return no_console();
    };
    let state = c.state.cluster_state();
    let Some(record) = state.drills.get(n) else {
        return not_found(&format!("no drill {n}: {} recorded", state.drills.len()));
    };
    let json = match serde_json::to_value(record) {
        Ok(v) => v,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    c.page(
        &format!("Drill {}", record.name),
        Nav::Other,
        &render::drill(n, &json),
    )
}

/// A fragment of server-rendered HTML for the pages' elements that match
/// `targets` (CSS selectors).
fn fragment(targets: &[String], html: String) -> Event {
    Event::default()
        .event("fragment")
        .data(serde_json::json!({ "targets": targets, "html": html }).to_string())
}

async fn events(
    State(st): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
) -> Response {
    let Some(c) = st.console.clone() else {
        return no_console();
    };
    let operator = operator(&st, &peer).is_some();
    let (tx, rx) = mpsc::channel(32);
    tokio::spawn(feed(c, tx, operator));
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Sends `e` unless the page went away or the witness stops first.
async fn send(tx: &mpsc::Sender<Event>, stop: &CancellationToken, e: Event) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        sent = tx.send(e) => sent.is_ok(),
    }
}

/// Feeds one page's event stream: every `Watch` event (with the current
/// or last operation's timeline re-rendered when it concerns one) and
/// every status refresh (the overview and the charts), until the page
/// goes away or the witness stops. An operator's page also gets its
/// action buttons re-rendered with each status (`operator`).
async fn feed(c: Arc<Console>, tx: mpsc::Sender<Event>, operator: bool) {
    let stop = c.shutdown.clone();
    let mut stream = match Control::watch(&c.control, Request::new(pb::WatchRequest {})).await {
        Ok(r) => r.into_inner(),
        Err(e) => {
            tracing::warn!(error = %e, "console: watch failed");
            return;
        }
    };
    let mut status = c.status.subscribe();
    status.mark_changed();
    c.wake.notify_one();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tx.closed() => return,
            event = stream.next() => {
                let e = match event {
                    Some(Ok(e)) => e,
                    // The witness stops (or the stream broke): the page
                    // reconnects, to this witness once it is back.
                    Some(Err(_)) | None => return,
                };
                let log = Event::default().event("log").data(
                    serde_json::json!({
                        "at_ms": e.at_ms, "kind": e.kind, "epoch": e.epoch, "text": e.text,
                    })
                    .to_string(),
                );
                if !send(&tx, &stop, log).await {
                    return;
                }
                if matches!(
                    e.kind.as_str(),
                    "snapshot" | "operation_started" | "step_done" | "operation_finished"
                ) {
                    let h = c.history().await;
                    let live = h.in_progress.as_ref().or(h.operations.last());
                    let mut targets = vec!["#live-timeline".to_string()];
                    if let Some(f) = live {
                        targets.push(format!("[data-timeline-epoch=\"{}\"]", f.epoch));
                    }
                    let html = render::live_timeline(h.in_progress.as_ref(), h.operations.last());
                    if !send(&tx, &stop, fragment(&targets, html)).await {
                        return;
                    }
                }
            }
            changed = status.changed() => {
                if changed.is_err() {
                    return;
                }
                let latest = status.borrow_and_update().clone();
                let overview = fragment(&["#overview".into()], c.overview_html(&latest));
                let charts = fragment(&["#charts".into()], c.charts_html());
                if !send(&tx, &stop, overview).await || !send(&tx, &stop, charts).await {
                    return;
                }
                if operator {
                    let html = actions::buttons(latest.as_ref().map(|(_, s)| s.as_ref()));
                    if !send(&tx, &stop, fragment(&["#action-buttons".into()], html)).await {
                        return;
                    }
                }
            }
        }
    }
}
