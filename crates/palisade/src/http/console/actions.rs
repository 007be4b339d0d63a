//! The console's actions (issue 15 item 5): switchover, pause, resume and
//! a forced failover, for operators only, on an HTTPS listener
//! (`http.tls = true`, docs/console.md "Actions").
//!
//! * Who may act is read from the TLS session of each request: an
//!   operator certificate of this cluster with the operator role. A page
//!   without one (no certificate, a viewer's, plain HTTP) renders no
//!   control, and every `POST /console/actions/...` from it is refused
//!   (403) whatever it sends.
//! * Every page with controls carries a random token tied to the operator
//!   who loaded it; each POST must bring it back (a cross-site request
//!   cannot read it), else 403.
//! * The action is this witness's in-process control service's
//!   (`Control::switchover`, ...), recorded under the certificate's name
//!   (what `palisadectl` records for the same operator); a follower
//!   forwards it to the leader as for the CLI.
//! * The page asks for confirmation in a dialog that says what will
//!   happen; a forced failover needs the target site's name typed, which
//!   the server checks too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use palisade_api::v1 as pb;
use palisade_api::v1::control_server::Control;
use palisade_tls::{Identity, Role};
use serde::Deserialize;
use tonic::Request;

use super::render::esc;
use super::Console;
use crate::http::tls::Peer;
use crate::http::HttpState;

pub(super) const ACTIONS_JS: &str = include_str!("assets/actions.js");

/// How long a page's token stays good.
const TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// How many tokens are remembered (the oldest go first).
const MAX_TOKENS: usize = 4096;

/// The actions of an HTTPS console.
pub struct Actions {
    /// The cluster whose operators may act.
    cluster: String,
    /// Page tokens: token → (the operator's identity URI, issued at).
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

impl Actions {
    /// Actions for the operators of `cluster`.
    pub fn new(cluster: String) -> Self {
        Self {
            cluster,
            tokens: Mutex::default(),
        }
    }

    /// The operator's name when `peer` may act: an operator certificate of
    /// this cluster with the operator role.
    pub(super) fn operator(&self, peer: &Peer) -> Option<String> {
        match &peer.identity {
            Some(Identity::Operator {
                cluster,
                name,
                role,
            }) if *cluster == self.cluster && *role >= Role::Operator => Some(name.clone()),
            _ => None,
        }
    }

    /// A fresh token for a page loaded by `peer` (an operator).
    pub(super) fn issue(&self, peer: &Peer) -> String {
        let mut bytes = [0u8; 32];
        palisade_tls::provider()
            .secure_random
            .fill(&mut bytes)
            .expect("the system's random source works");
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let uri = peer
            .identity
            .as_ref()
            .map(Identity::uri)
            .unwrap_or_default();
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.retain(|_, (_, at)| at.elapsed() < TOKEN_LIFETIME);
        if tokens.len() >= MAX_TOKENS {
            if let Some(oldest) = tokens
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(t, _)| t.clone())
            {
                tokens.remove(&oldest);
            }
        }
        tokens.insert(token.clone(), (uri, Instant::now()));
        token
    }

    /// Whether `token` was issued to `peer`'s identity and is still good.
    fn check(&self, peer: &Peer, token: &str) -> bool {
        let Some(uri) = peer.identity.as_ref().map(Identity::uri) else {
            return false;
        };
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(token)
            .is_some_and(|(owner, at)| *owner == uri && at.elapsed() < TOKEN_LIFETIME)
    }
}

/// The controls' section of the overview for an operator: the buttons
/// (re-rendered with the status, [`buttons`]), the confirmation dialog
/// and where the result shows.
pub(super) fn panel(token: &str, status: Option<&pb::StatusReply>, assets: &str) -> String {
    format!(
        "<section id=\"actions\" aria-label=\"Actions\" data-csrf=\"{token}\"><h2>Actions</h2>\
         <div id=\"action-buttons\">{}</div>\
         <p id=\"action-result\" role=\"status\" aria-live=\"polite\"></p>\
         <dialog id=\"action-dialog\" aria-labelledby=\"action-dialog-title\">\
         <h3 id=\"action-dialog-title\">Confirm</h3>\
         <p id=\"action-dialog-text\"></p>\
         <p id=\"action-dialog-typed\" hidden><label>Type the site's name to confirm: \
         <input id=\"action-dialog-input\" autocomplete=\"off\" spellcheck=\"false\"></label></p>\
         <p id=\"action-dialog-error\" class=\"bad\" role=\"alert\"></p>\
         <p class=\"dialog-buttons\"><button type=\"button\" id=\"action-cancel\">Cancel</button> \
         <button type=\"button\" id=\"action-confirm\">Confirm</button></p>\
         </dialog></section>\
         <script src=\"/console/actions.js?v={assets}\" defer></script>",
        buttons(status),
        token = esc(token),
    )
}

/// The action buttons for the cluster as `status` shows it, each with
/// the words its confirmation states.
pub(super) fn buttons(status: Option<&pb::StatusReply>) -> String {
    let Some(s) = status else {
        return "<p class=\"stale\">No status yet: no action is offered.</p>".into();
    };
    if s.primary_site.is_empty() || s.standby_site.is_empty() {
        return "<p>No database is configured: there is nothing to act on.</p>".into();
    }
    let sb = esc(&s.standby_site);
    let mut out = String::from("<p class=\"action-row\">");
    let button = |action: &str, label: &str, confirm: String, extra: &str| {
        format!(
            "<button type=\"button\" data-action=\"{action}\" data-to=\"{sb}\" data-confirm=\"{}\"{extra}>{label}</button> ",
            esc(&confirm)
        )
    };
    let busy = s.failover_in_progress.is_some();
    if busy {
        out.push_str("<span>An operation is in progress: no switchover or failover is offered until it ends.</span> ");
    } else {
        out.push_str(&button(
            "switchover",
            &format!("Switch over to {sb}"),
            format!(
                "Switch over from {p} to {sb}: {p} is shut down cleanly, {sb} is promoted once it has \
                 replayed everything {p} wrote, then the applications and front doors are repointed to \
                 {sb}. Writes pause for about a second. If {sb} does not catch up in time, the switchover \
                 is aborted and {p} carries on as primary.",
                p = s.primary_site,
                sb = s.standby_site
            ),
            "",
        ));
        out.push_str(&button(
            "failover",
            &format!("Force a failover to {sb}…"),
            format!(
                "Force a failover to {sb} now: {p} is fenced (its agent, STONITH or its lease) without \
                 waiting for {sb} to catch up, and {sb} is promoted even if it lags: whatever {p} had not \
                 yet sent to {sb} is LOST. Type {sb} below to confirm.",
                p = s.primary_site,
                sb = s.standby_site
            ),
            &format!(" data-type-to-confirm=\"{sb}\" class=\"danger\""),
        ));
    }
    if let Some(m) = &s.maintenance {
        out.push_str(&button(
            "resume",
            "Resume automatic failover",
            format!(
                "Resume automatic failover (paused by {}): the detector acts on its decisions again, \
                 and operator operations are accepted.",
                m.by
            ),
            "",
        ));
    } else {
        out.push_str(&button(
            "pause",
            "Pause automatic failover",
            "Pause automatic failover until someone resumes it: the detector's decisions are only \
             logged, and switchovers and failovers are refused meanwhile. Nothing else changes."
                .into(),
            "",
        ));
    }
    out.push_str("</p>");
    out
}

/// A POST's form.
#[derive(Debug, Default, Deserialize)]
pub struct ActionForm {
    /// The page's token.
    #[serde(default)]
    csrf: String,
    /// The target site (switchover, failover).
    #[serde(default)]
    to_site: String,
    /// The site name the operator typed (failover).
    #[serde(default)]
    confirm: String,
}

fn answer(status: StatusCode, text: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}

fn refusal(e: &tonic::Status) -> Response {
    let status = match e.code() {
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::FailedPrecondition => StatusCode::CONFLICT,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        tonic::Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    };
    answer(status, format!("Refused: {}", e.message()))
}

fn operation_text(what: &str, r: &pb::OperationReply) -> String {
    format!(
        "{what} from {} to {} committed by leader {} at epoch {}; follow it on the timeline.{}",
        r.from_site,
        r.to_site,
        r.leader_id,
        r.epoch,
        if r.data_loss_bound.is_empty() {
            String::new()
        } else {
            format!(" Possible data loss: {}.", r.data_loss_bound)
        }
    )
}

/// `POST /console/actions/{action}`.
pub(super) async fn act(
    State(st): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Path(action): Path<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let (Some(c), Some(actions)) = (&st.console, &st.actions) else {
        return answer(
            StatusCode::NOT_FOUND,
            "this console offers no actions (http.tls is off)".into(),
        );
    };
    let Some(who) = actions.operator(&peer) else {
        let what = peer
            .identity
            .as_ref()
            .map(Identity::uri)
            .unwrap_or_else(|| "a client without a certificate".into());
        tracing::warn!(peer = %peer.addr, caller = %what, action = %action, "console: refused an action: not an operator");
        return answer(
            StatusCode::FORBIDDEN,
            format!("Refused: {action} needs an operator certificate with the operator role; {what} has none"),
        );
    };
    let form = match form {
        Ok(Form(f)) => f,
        Err(e) => return answer(StatusCode::BAD_REQUEST, format!("Refused: {e}")),
    };
    if !actions.check(&peer, &form.csrf) {
        tracing::warn!(peer = %peer.addr, who = %who, action = %action, "console: refused an action: bad page token");
        return answer(
            StatusCode::FORBIDDEN,
            "Refused: the page's token is missing, expired or not yours; reload the page".into(),
        );
    }
    tracing::info!(peer = %peer.addr, who = %who, action = %action, to = %form.to_site, "console: action requested");
    run(c, &action, who, form).await
}

async fn run(c: &Console, action: &str, who: String, form: ActionForm) -> Response {
    let control = &c.control;
    match action {
        "switchover" => {
            let req = pb::SwitchoverRequest {
                to_site: form.to_site,
                who,
                request_id: String::new(),
            };
            match Control::switchover(control, Request::new(req)).await {
                Ok(r) => answer(StatusCode::OK, operation_text("Switchover", r.get_ref())),
                Err(e) => refusal(&e),
            }
        }
        "failover" => {
            if form.to_site.is_empty() || form.confirm.trim() != form.to_site {
                return answer(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "Refused: a forced failover needs the target site's name typed ({:?}), got {:?}",
                        form.to_site,
                        form.confirm.trim()
                    ),
                );
            }
            let req = pb::FailoverRequest {
                to_site: form.to_site,
                who,
                force: true,
                accept_data_loss: true,
                request_id: String::new(),
            };
            match Control::failover(control, Request::new(req)).await {
                Ok(r) => answer(
                    StatusCode::OK,
                    operation_text("Forced failover", r.get_ref()),
                ),
                Err(e) => refusal(&e),
            }
        }
        "pause" => {
            let req = pb::PauseRequest {
                reason: format!("paused from the console by {who}"),
                who,
                for_ms: None,
                request_id: String::new(),
                force: false,
            };
            match Control::pause(control, Request::new(req)).await {
                Ok(_) => answer(
                    StatusCode::OK,
                    "Automatic failover is paused until someone resumes it.".into(),
                ),
                Err(e) => refusal(&e),
            }
        }
        "resume" => {
            let req = pb::ResumeRequest {
                who,
                request_id: String::new(),
            };
            match Control::resume(control, Request::new(req)).await {
                Ok(_) => answer(StatusCode::OK, "Automatic failover is resumed.".into()),
                Err(e) => refusal(&e),
            }
        }
        other => answer(StatusCode::NOT_FOUND, format!("no action {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(identity: Option<Identity>) -> Peer {
        Peer {
            addr: "127.0.0.1:1".parse().expect("addr"),
            identity,
        }
    }

    fn operator(cluster: &str, name: &str, role: Role) -> Peer {
        peer(Some(Identity::Operator {
            cluster: cluster.into(),
            name: name.into(),
            role,
        }))
    }

    #[test]
    fn only_operators_of_this_cluster_may_act() {
        let a = Actions::new("prod".into());
        assert_eq!(
            a.operator(&operator("prod", "alice", Role::Operator)),
            Some("alice".into())
        );
        assert_eq!(a.operator(&operator("prod", "bob", Role::Viewer)), None);
        assert_eq!(a.operator(&operator("test", "alice", Role::Operator)), None);
        assert_eq!(
            a.operator(&peer(Some(Identity::Witness {
                cluster: "prod".into(),
                node: 1,
                site: "a".into(),
            }))),
            None
        );
        assert_eq!(a.operator(&peer(None)), None);
    }

    #[test]
    fn a_token_is_good_only_for_the_operator_it_was_issued_to() {
        let a = Actions::new("prod".into());
        let alice = operator("prod", "alice", Role::Operator);
        let token = a.issue(&alice);
        assert_eq!(token.len(), 64);
        assert!(a.check(&alice, &token));
        assert!(!a.check(&operator("prod", "carol", Role::Operator), &token));
        assert!(!a.check(&peer(None), &token));
        assert!(!a.check(&alice, "forged"));
        assert!(!a.check(&alice, ""));
        assert_ne!(a.issue(&alice), token, "a fresh token per page");
    }

    #[test]
    fn the_buttons_follow_the_status_and_say_what_happens() {
        let mut s = pb::StatusReply {
            primary_site: "a".into(),
            standby_site: "b<".into(),
            ..Default::default()
        };
        let html = buttons(Some(&s));
        assert!(html.contains("data-action=\"switchover\""), "{html}");
        assert!(
            html.contains("Switch over from a to b&lt;: a is shut down cleanly"),
            "{html}"
        );
        assert!(html.contains("data-type-to-confirm=\"b&lt;\""), "{html}");
        assert!(html.contains("data-action=\"pause\"") && !html.contains("\"resume\""));
        s.maintenance = Some(pb::Maintenance {
            by: "alice".into(),
            ..Default::default()
        });
        s.failover_in_progress = Some(pb::FailoverSummary::default());
        let html = buttons(Some(&s));
        assert!(html.contains("data-action=\"resume\"") && !html.contains("\"pause\""));
        assert!(!html.contains("\"switchover\"") && !html.contains("\"failover\""));
        assert!(!buttons(None).contains("<button"));
        s.primary_site.clear();
        assert!(!buttons(Some(&s)).contains("<button"));
    }
}
