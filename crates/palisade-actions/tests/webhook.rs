//! Webhook deliveries against real HTTP receivers (axum on loopback): the
//! signature verifies, retries after 5xx produce exactly one effective
//! change thanks to the delivery id, and a 4xx is final.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use palisade_actions::retry::RetryPolicy;
use palisade_actions::webhook::{
    verify_signature, Webhook, WebhookConfig, WebhookError, WebhookEvent, DELIVERY_HEADER,
    SIGNATURE_HEADER,
};

const SECRET: &str = "s3cret-shared-with-the-receiver";

/// What a test receiver saw and did.
#[derive(Default)]
struct Receiver {
    /// Answers to give, in order; 200 once exhausted.
    script: Vec<u16>,
    attempts: u32,
    bad_signatures: u32,
    seen: HashSet<String>,
    /// Effective changes: deliveries acted on (first time a delivery id is
    /// seen with a good signature and a 2xx answer).
    applied: Vec<WebhookEvent>,
}

type Shared = Arc<Mutex<Receiver>>;

async fn receive(State(r): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut r = r.lock().expect("receiver lock");
    r.attempts += 1;
    let sig = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !verify_signature(SECRET.as_bytes(), &body, sig) {
        r.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let idx = (r.attempts - 1) as usize;
    let status = r.script.get(idx).copied().unwrap_or(200);
    if status != 200 {
        return StatusCode::from_u16(status).expect("valid status");
    }
    let id = headers
        .get(DELIVERY_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    // De-duplicate by delivery id: a repeat is acknowledged, not re-applied.
    if r.seen.insert(id) {
        let event: WebhookEvent = serde_json::from_slice(&body).expect("json body");
        r.applied.push(event);
    }
    StatusCode::OK
}

async fn start_receiver(script: Vec<u16>) -> (String, Shared, tokio::task::JoinHandle<()>) {
    let state: Shared = Arc::new(Mutex::new(Receiver {
        script,
        ..Receiver::default()
    }));
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (url, state, task)
}

fn event() -> WebhookEvent {
    WebhookEvent {
        epoch: 7,
        from_site: "a".into(),
        to_site: "b".into(),
        reason: "primary db down on 2 of 3 witnesses".into(),
        event: "repointed".into(),
        at_unix_ms: 1_700_000_000_000,
    }
}

fn hook(url: &str, secret: &str, attempts: u32) -> Webhook {
    Webhook::new(&WebhookConfig {
        url: url.into(),
        secret: secret.into(),
        timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            attempts,
            initial_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
            jitter: true,
        },
        tls: Default::default(),
    })
    .expect("webhook config")
}

#[tokio::test]
async fn signed_delivery_is_verified_and_deduplicated() {
    let (url, state, task) = start_receiver(vec![]).await;
    let d = hook(&url, SECRET, 3)
        .send(&event())
        .await
        .expect("delivered");
    assert_eq!(
        (d.status, d.attempts, d.delivery_id.as_str()),
        (200, 1, "7-repointed")
    );
    // The same event again (a new leader re-running the step): acknowledged,
    // not applied twice.
    hook(&url, SECRET, 3)
        .send(&event())
        .await
        .expect("re-delivered");
    {
        let r = state.lock().expect("lock");
        assert_eq!(r.bad_signatures, 0);
        assert_eq!(r.attempts, 2);
        assert_eq!(r.applied, vec![event()]);
    }
    // A sender with the wrong secret is refused (401, fatal, no retry).
    let err = hook(&url, "wrong", 3)
        .send(&event())
        .await
        .expect_err("bad signature");
    assert!(
        matches!(
            err,
            WebhookError::Rejected {
                status: 401,
                attempts: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(state.lock().expect("lock").bad_signatures, 1);
    task.abort();
}

#[tokio::test]
async fn two_503s_then_200_is_three_attempts_and_one_change() {
    let (url, state, task) = start_receiver(vec![503, 503]).await;
    let d = hook(&url, SECRET, 5)
        .send(&event())
        .await
        .expect("delivered on third attempt");
    assert_eq!(d.attempts, 3);
    let r = state.lock().expect("lock");
    assert_eq!(r.attempts, 3);
    assert_eq!(r.applied.len(), 1, "exactly one effective change");
    task.abort();
}

#[tokio::test]
async fn a_4xx_answer_is_final() {
    let (url, state, task) = start_receiver(vec![400, 400, 400]).await;
    let err = hook(&url, SECRET, 5)
        .send(&event())
        .await
        .expect_err("400 is fatal");
    assert!(
        matches!(
            err,
            WebhookError::Rejected {
                status: 400,
                attempts: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert!(err.to_string().contains(&url), "names the URL: {err}");
    assert_eq!(state.lock().expect("lock").attempts, 1, "no retry");
    task.abort();
}

#[tokio::test]
async fn persistent_5xx_gives_up_retryable() {
    let (url, state, task) = start_receiver(vec![502; 10]).await;
    let err = hook(&url, SECRET, 3)
        .send(&event())
        .await
        .expect_err("gives up");
    assert!(
        matches!(
            err,
            WebhookError::Unavailable {
                status: 502,
                attempts: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_retryable());
    assert_eq!(state.lock().expect("lock").applied.len(), 0);
    task.abort();
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    // Bind and drop to get a port with nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let err = hook(&url, SECRET, 2)
        .send(&event())
        .await
        .expect_err("refused");
    assert!(
        matches!(err, WebhookError::Unreachable { attempts: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().to_lowercase().contains("refused"), "{err}");
    assert!(err.is_retryable());
}
