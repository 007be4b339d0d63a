//! Notifying (or repointing through) an HTTP webhook, signed and idempotent.
//!
//! Some front doors are not HAProxy or a file but a service that moves
//! traffic when told to (a DNS API wrapper, a GSLB, a chat-ops bot). The
//! leader POSTs a small JSON document about the failover:
//!
//! ```json
//! {"epoch":7,"from_site":"a","to_site":"b","reason":"…","event":"repointed","at_unix_ms":…}
//! ```
//!
//! with two headers:
//!
//! * `X-Palisade-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>`
//!   keyed with the configured secret, so a receiver can tell palisade from
//!   anyone else who can reach it ([`verify_signature`] does the check in
//!   constant time);
//! * `X-Palisade-Delivery: <epoch>-<event>`, an idempotency key: a retried
//!   delivery, or a new leader re-running the step after a leader change,
//!   sends the same key, and receivers must treat a key they have already
//!   acted on as done.
//!
//! Connect errors, timeouts and 5xx answers are retried with backoff; a 4xx
//! (or a redirect) is the receiver saying no, and is not.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::retry::{self, RetryPolicy, Retryable};

/// Header carrying `sha256=<hex HMAC>` of the body.
pub const SIGNATURE_HEADER: &str = "X-Palisade-Signature";
/// Header carrying the idempotency key `<epoch>-<event>`.
pub const DELIVERY_HEADER: &str = "X-Palisade-Delivery";

type HmacSha256 = Hmac<Sha256>;

/// The JSON body of a webhook delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// The failover epoch (fencing token) this event belongs to.
    pub epoch: u64,
    /// The site traffic moves away from.
    pub from_site: String,
    /// The site traffic moves to.
    pub to_site: String,
    /// Why, for humans (`"primary db down on 2 of 3 witnesses"`).
    pub reason: String,
    /// Which step or event this is (`"repointed"`, `"failover-started"`).
    /// Together with `epoch` it forms the delivery id.
    pub event: String,
    /// When the leader decided it, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
}

impl WebhookEvent {
    /// The idempotency key sent as [`DELIVERY_HEADER`]: `<epoch>-<event>`.
    pub fn delivery_id(&self) -> String {
        format!("{}-{}", self.epoch, self.event)
    }
}

/// A webhook target.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL to POST to.
    pub url: String,
    /// HMAC key. Shared with the receiver out of band; never logged
    /// (its `Debug` shows only where it came from).
    pub secret: palisade_core::Secret,
    /// Timeout of one attempt (connect + request + response).
    pub timeout: Duration,
    /// How to retry transient failures.
    pub retry: RetryPolicy,
    /// CA bundle and client identity for an `https://` URL (default: the
    /// built-in public roots, no client certificate).
    pub tls: palisade_core::secret::ClientTls,
}

/// A successful delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// The idempotency key sent.
    pub delivery_id: String,
    /// The receiver's 2xx status code.
    pub status: u16,
    /// How many attempts it took.
    pub attempts: u32,
    /// Wall time over all attempts.
    pub elapsed: Duration,
}

/// Why a webhook was not delivered. Each variant names the URL.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The configuration is unusable. Fatal.
    #[error("webhook {url}: invalid configuration: {reason}")]
    Config {
        /// The configured URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The receiver answered 4xx or 3xx: it will not accept this delivery.
    /// Fatal, not retried.
    #[error("webhook {url} rejected delivery {delivery_id} with HTTP {status} after {attempts} attempt(s): {body}")]
    Rejected {
        /// The URL.
        url: String,
        /// The idempotency key.
        delivery_id: String,
        /// The status code.
        status: u16,
        /// The start of the response body.
        body: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The receiver kept answering 5xx. Retryable later.
    #[error("webhook {url} unavailable for delivery {delivery_id}: HTTP {status} after {attempts} attempt(s): {body}")]
    Unavailable {
        /// The URL.
        url: String,
        /// The idempotency key.
        delivery_id: String,
        /// The last status code.
        status: u16,
        /// The start of the last response body.
        body: String,
        /// Attempts made.
        attempts: u32,
    },
    /// Could not connect, or no answer in time. Retryable later.
    #[error("webhook {url} unreachable for delivery {delivery_id} after {attempts} attempt(s): {detail}")]
    Unreachable {
        /// The URL.
        url: String,
        /// The idempotency key.
        delivery_id: String,
        /// The last transport error, with its causes.
        detail: String,
        /// Attempts made.
        attempts: u32,
    },
}

impl WebhookError {
    /// True when delivering again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            WebhookError::Unavailable { .. } | WebhookError::Unreachable { .. }
        )
    }
}

impl Retryable for WebhookError {
    fn is_retryable(&self) -> bool {
        WebhookError::is_retryable(self)
    }
}

/// One attempt's failure, before we know how many attempts there will be.
#[derive(Debug)]
enum AttemptError {
    Status { status: u16, body: String },
    Transport(String),
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptError::Status { status, body } => write!(f, "HTTP {status}: {body}"),
            AttemptError::Transport(detail) => f.write_str(detail),
        }
    }
}

impl Retryable for AttemptError {
    fn is_retryable(&self) -> bool {
        match self {
            AttemptError::Status { status, .. } => *status >= 500,
            AttemptError::Transport(_) => true,
        }
    }
}

/// A configured webhook, with its HTTP client built once.
#[derive(Debug, Clone)]
pub struct Webhook {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: palisade_core::Secret,
    retry: RetryPolicy,
}

impl Webhook {
    /// Checks the configuration and builds the client.
    pub fn new(config: &WebhookConfig) -> Result<Self, WebhookError> {
        let bad = |reason: String| WebhookError::Config {
            url: config.url.clone(),
            reason,
        };
        let url = reqwest::Url::parse(&config.url).map_err(|e| bad(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!(
                "scheme {:?} is not http or https",
                url.scheme()
            )));
        }
        if config.secret.expose().is_empty() {
            return Err(bad("secret is empty; deliveries must be signed".into()));
        }
        if config.timeout.is_zero() {
            return Err(bad("timeout must be greater than zero".into()));
        }
        let builder = crate::with_client_tls(reqwest::Client::builder(), &config.tls)
            .map_err(|e| bad(format!("TLS settings: {}", error_chain(&e))))?;
        let client = builder
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            // A redirected POST turns into a GET in most clients; the
            // receiver should be configured with its real URL instead.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("palisade/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| bad(format!("cannot build HTTP client: {}", error_chain(&e))))?;
        Ok(Self {
            client,
            url,
            secret: config.secret.clone(),
            retry: config.retry.clone(),
        })
    }

    /// Delivers `event`, retrying transient failures. The body is
    /// serialised and signed once, so every attempt sends identical bytes.
    #[tracing::instrument(skip_all, fields(epoch = event.epoch, event = %event.event, url = %self.url))]
    pub async fn send(&self, event: &WebhookEvent) -> Result<WebhookDelivery, WebhookError> {
        let delivery_id = event.delivery_id();
        let body = serde_json::to_vec(event).map_err(|e| WebhookError::Config {
            url: self.url.to_string(),
            reason: format!("cannot serialise event: {e}"),
        })?;
        let signature = sign(self.secret.expose().as_bytes(), &body);
        let started = Instant::now();
        let result = retry::retry(&self.retry, "webhook delivery", |_attempt| {
            let request = self
                .client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, signature.as_str())
                .header(DELIVERY_HEADER, delivery_id.as_str())
                .body(body.clone());
            async move {
                let response = request
                    .send()
                    .await
                    .map_err(|e| AttemptError::Transport(error_chain(&e)))?;
                let status = response.status();
                if status.is_success() {
                    return Ok(status.as_u16());
                }
                let body = response.text().await.unwrap_or_default();
                Err(AttemptError::Status {
                    status: status.as_u16(),
                    body: truncate(&body, 300),
                })
            }
        })
        .await;
        match result {
            Ok(ok) => {
                tracing::info!(
                    delivery_id,
                    status = ok.value,
                    attempts = ok.attempts,
                    "webhook delivered"
                );
                Ok(WebhookDelivery {
                    delivery_id,
                    status: ok.value,
                    attempts: ok.attempts,
                    elapsed: started.elapsed(),
                })
            }
            Err(failed) => {
                let url = self.url.to_string();
                let attempts = failed.attempts;
                Err(match failed.value {
                    AttemptError::Status { status, body } if status >= 500 => {
                        WebhookError::Unavailable {
                            url,
                            delivery_id,
                            status,
                            body,
                            attempts,
                        }
                    }
                    AttemptError::Status { status, body } => WebhookError::Rejected {
                        url,
                        delivery_id,
                        status,
                        body,
                        attempts,
                    },
                    AttemptError::Transport(detail) => WebhookError::Unreachable {
                        url,
                        delivery_id,
                        detail,
                        attempts,
                    },
                })
            }
        }
    }
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`, the [`SIGNATURE_HEADER`] value.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a [`SIGNATURE_HEADER`] value against the body, for receivers (and
/// tests). The comparison is constant-time (`hmac`'s `verify_slice`), so the
/// answer time does not leak how many leading bytes of a forgery matched.
pub fn verify_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// The error and its causes, `a: b: c` (reqwest's Display hides the cause,
/// which is where "connection refused" is).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trip_and_tamper() {
        let sig = sign(b"k", b"{\"a\":1}");
        assert!(sig.starts_with("sha256="));
        assert_eq!(sig.len(), 7 + 64);
        assert!(verify_signature(b"k", b"{\"a\":1}", &sig));
        assert!(!verify_signature(b"k", b"{\"a\":2}", &sig));
        assert!(!verify_signature(b"other", b"{\"a\":1}", &sig));
        assert!(!verify_signature(b"k", b"{\"a\":1}", &sig[7..]));
        assert!(!verify_signature(b"k", b"{\"a\":1}", "sha256=zz"));
    }

    #[test]
    fn known_hmac_vector() {
        // RFC 4231 test case 2.
        let sig = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn config_is_checked() {
        let cfg = |url: &str, secret: &str| WebhookConfig {
            url: url.into(),
            secret: secret.into(),
            timeout: Duration::from_secs(1),
            retry: RetryPolicy::once(),
            tls: Default::default(),
        };
        assert!(Webhook::new(&cfg("http://127.0.0.1:1/x", "s")).is_ok());
        assert!(Webhook::new(&cfg("ftp://h/x", "s")).is_err());
        assert!(Webhook::new(&cfg("not a url", "s")).is_err());
        assert!(Webhook::new(&cfg("http://h/x", "")).is_err());
    }
}
