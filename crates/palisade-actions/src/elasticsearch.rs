//! Elasticsearch failover actions: pointing the surviving app at the
//! surviving site's Elasticsearch, and, for deployments with two clusters
//! linked by cross-cluster replication (CCR), promoting the surviving
//! cluster's follower indices to ordinary writable indices.
//!
//! # CCR promotion and the answers it relies on
//!
//! Elasticsearch turns a follower index into a normal index with four calls
//! (ES reference, "Cross-cluster replication" → "Failover / unfollow"):
//! `POST /<index>/_ccr/pause_follow`, `POST /<index>/_close`,
//! `POST /<index>/_ccr/unfollow`, `POST /<index>/_open`. A leader that dies
//! mid-sequence is replaced by one that runs it again from the start, so each
//! call must be safe to repeat. Assumptions, from the ES 7.x/8.x sources
//! (`TransportPauseFollowAction`, `TransportUnfollowAction`) since no ES
//! server can be run here; they are the answers the test double gives:
//!
//! * `pause_follow` on an index that is not (or no longer) a follower:
//!   HTTP 400, `error.type = illegal_argument_exception`,
//!   `error.reason = "index [<index>] is not a follower index"`. We read
//!   that as "already unfollowed by an earlier run": `close` and `unfollow`
//!   are skipped, `open` still runs (the earlier run may have died between
//!   `unfollow` and `open`).
//! * `pause_follow` on a follower that is already paused: HTTP 400,
//!   `illegal_argument_exception`, `"no shard follow tasks for [<index>]"`
//!   — already done, continue.
//! * `_close` on a closed index and `_open` on an open one: HTTP 200,
//!   acknowledged — naturally idempotent.
//! * `unfollow` on a non-follower: HTTP 400 `illegal_argument_exception`
//!   `"index [<index>] is not a follower index"` — already done.
//! * a missing index: HTTP 404 `index_not_found_exception` — fatal, the
//!   configured index list is wrong.
//!
//! Any other 4xx is fatal; 5xx, connect errors and timeouts are retried.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::key_value::{self, KeyValueError};
use crate::monitors::{self, FlipOutcome, XmlEditError};
use crate::retry::{self, RetryPolicy, Retryable};

/// Where the app reads its Elasticsearch hosts from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EsHostsTarget {
    /// `<property name="PROPERTY" value="…"/>` in an XML file (for example
    /// in `threatconnect.xml`).
    XmlProperty {
        /// The XML file.
        path: PathBuf,
        /// The property name.
        property: String,
    },
    /// A `key=value` line in a properties-style file.
    KeyValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
}

/// Why the ES hosts could not be repointed.
#[derive(Debug, thiserror::Error)]
pub enum RepointError {
    /// Editing the XML property failed.
    #[error(transparent)]
    Xml(#[from] XmlEditError),
    /// Editing the key=value line failed.
    #[error(transparent)]
    KeyValue(#[from] KeyValueError),
}

impl RepointError {
    /// True when trying again later may succeed without an operator.
    pub fn is_retryable(&self) -> bool {
        match self {
            RepointError::Xml(e) => e.is_retryable(),
            RepointError::KeyValue(e) => e.is_retryable(),
        }
    }
}

/// Points the app at `hosts` (the value is written as given, for example
/// `http://es-b1:9200,http://es-b2:9200`). Atomic, idempotent, with a backup;
/// see [`monitors::set_property`] and [`key_value::set_key_value`].
/// Blocking.
pub fn repoint_hosts(target: &EsHostsTarget, hosts: &str) -> Result<FlipOutcome, RepointError> {
    Ok(match target {
        EsHostsTarget::XmlProperty { path, property } => {
            monitors::set_property(path, property, hosts)?
        }
        EsHostsTarget::KeyValue { path, key } => key_value::set_key_value(path, key, hosts)?,
    })
}

/// Reads the hosts the app is currently pointed at.
pub fn read_hosts(target: &EsHostsTarget) -> Result<String, RepointError> {
    Ok(match target {
        EsHostsTarget::XmlProperty { path, property } => monitors::read_property(path, property)?,
        EsHostsTarget::KeyValue { path, key } => key_value::read_key_value(path, key)?,
    })
}

/// One call of the promotion sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CcrStep {
    /// `POST /<index>/_ccr/pause_follow`
    PauseFollow,
    /// `POST /<index>/_close`
    Close,
    /// `POST /<index>/_ccr/unfollow`
    Unfollow,
    /// `POST /<index>/_open`
    Open,
}

impl CcrStep {
    /// The sequence, in order.
    pub const ALL: [CcrStep; 4] = [
        CcrStep::PauseFollow,
        CcrStep::Close,
        CcrStep::Unfollow,
        CcrStep::Open,
    ];

    fn path(self) -> &'static str {
        match self {
            CcrStep::PauseFollow => "_ccr/pause_follow",
            CcrStep::Close => "_close",
            CcrStep::Unfollow => "_ccr/unfollow",
            CcrStep::Open => "_open",
        }
    }
}

/// How one step ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum StepOutcome {
    /// The call succeeded (ES answered 2xx).
    Done,
    /// ES said the step's effect was already there; `reason` is its words.
    AlreadyDone {
        /// ES's `error.reason`.
        reason: String,
    },
    /// Not called, because an earlier answer showed it was done.
    Skipped,
}

/// The promotion of one index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPromotion {
    /// The index.
    pub index: String,
    /// Each step and how it ended, in order.
    pub steps: Vec<(CcrStep, StepOutcome)>,
}

impl IndexPromotion {
    /// True when any call changed something on the cluster.
    pub fn changed(&self) -> bool {
        self.steps.iter().any(|(step, o)| {
            *o == StepOutcome::Done && matches!(step, CcrStep::PauseFollow | CcrStep::Unfollow)
        })
    }
}

/// Why a CCR call failed. Each variant names the URL.
#[derive(Debug, thiserror::Error)]
pub enum CcrError {
    /// The configuration is unusable. Fatal.
    #[error("elasticsearch {url}: invalid configuration: {reason}")]
    Config {
        /// The configured base URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// ES answered with an error we do not read as "already done".
    /// Retryable for 5xx, fatal for 4xx.
    #[error("elasticsearch {method} {url} answered HTTP {status} {error_type}: {reason}")]
    Api {
        /// `POST`.
        method: &'static str,
        /// The full URL.
        url: String,
        /// The status code.
        status: u16,
        /// ES's `error.type`, or empty.
        error_type: String,
        /// ES's `error.reason`, or the start of the body.
        reason: String,
    },
    /// No answer (refused, timeout, reset). Retryable.
    #[error("elasticsearch {url} unreachable: {detail}")]
    Unreachable {
        /// The full URL.
        url: String,
        /// The transport error with its causes.
        detail: String,
    },
}

impl CcrError {
    /// True when trying again may succeed without an operator.
    pub fn is_retryable(&self) -> bool {
        match self {
            CcrError::Api { status, .. } => *status >= 500,
            CcrError::Unreachable { .. } => true,
            CcrError::Config { .. } => false,
        }
    }
}

impl Retryable for CcrError {
    fn is_retryable(&self) -> bool {
        CcrError::is_retryable(self)
    }
}

/// A client for the CCR promotion calls on the surviving cluster.
#[derive(Clone, Debug)]
pub struct CcrClient {
    client: reqwest::Client,
    base: reqwest::Url,
    /// Basic auth: the password is a `Secret`, so this client's `Debug`
    /// never shows it.
    auth: Option<(String, palisade_core::Secret)>,
    retry: RetryPolicy,
}

#[derive(Deserialize)]
struct EsErrorBody {
    error: Option<EsErrorDetail>,
}

#[derive(Deserialize)]
struct EsErrorDetail {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    reason: String,
}

impl CcrClient {
    /// A client for the cluster at `base_url` (`http://es-b:9200`), with a
    /// per-call timeout and optional basic auth `(user, password)`; the
    /// built-in public roots, no client certificate.
    pub fn new(
        base_url: &str,
        timeout: Duration,
        auth: Option<(String, palisade_core::Secret)>,
    ) -> Result<Self, CcrError> {
        Self::with_tls(base_url, timeout, auth, &Default::default())
    }

    /// Like [`CcrClient::new`], trusting and presenting what `tls` holds
    /// (`[[elasticsearch]]` `ca_file`, `client_cert_file`,
    /// `client_key_file`).
    pub fn with_tls(
        base_url: &str,
        timeout: Duration,
        auth: Option<(String, palisade_core::Secret)>,
        tls: &palisade_core::secret::ClientTls,
    ) -> Result<Self, CcrError> {
        let bad = |reason: String| CcrError::Config {
            url: base_url.to_owned(),
            reason,
        };
        let mut base = reqwest::Url::parse(base_url).map_err(|e| bad(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(bad("expected an http:// or https:// base URL".into()));
        }
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let client = crate::with_client_tls(reqwest::Client::builder(), tls)
            .map_err(|e| bad(format!("TLS settings: {}", error_chain(&e))))?
            .timeout(timeout)
            .connect_timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| bad(format!("cannot build HTTP client: {}", error_chain(&e))))?;
        Ok(Self {
            client,
            base,
            auth,
            retry: RetryPolicy::default(),
        })
    }

    /// Sets how transient failures of each call are retried.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Promotes each index in turn; stops at the first index that fails
    /// (the caller re-runs the whole list, which is idempotent).
    pub async fn promote_followers(
        &self,
        indices: &[String],
    ) -> Result<Vec<IndexPromotion>, CcrError> {
        let mut out = Vec::with_capacity(indices.len());
        for index in indices {
            out.push(self.promote_follower(index).await?);
        }
        Ok(out)
    }

    /// Runs pause_follow, close, unfollow, open on one follower index,
    /// treating "already done" answers as success (see the module docs).
    #[tracing::instrument(skip_all, fields(index))]
    pub async fn promote_follower(&self, index: &str) -> Result<IndexPromotion, CcrError> {
        if index.is_empty()
            || index.contains(['/', '?', '#', ' ', ',', '*'])
            || index.starts_with(['_', '-', '+'])
        {
            return Err(CcrError::Config {
                url: self.base.to_string(),
                reason: format!("invalid index name {index:?}"),
            });
        }
        let mut steps = Vec::with_capacity(4);
        let mut unfollowed = false;
        for step in CcrStep::ALL {
            if unfollowed && matches!(step, CcrStep::Close | CcrStep::Unfollow) {
                steps.push((step, StepOutcome::Skipped));
                continue;
            }
            let outcome = match self.call(index, step).await {
                Ok(()) => StepOutcome::Done,
                Err(CcrError::Api {
                    status: 400,
                    error_type,
                    reason,
                    ..
                }) if error_type == "illegal_argument_exception" && already_done(step, &reason) => {
                    if step == CcrStep::PauseFollow && reason.contains("not a follower index") {
                        unfollowed = true;
                    }
                    StepOutcome::AlreadyDone { reason }
                }
                Err(e) => return Err(e),
            };
            steps.push((step, outcome));
        }
        let promotion = IndexPromotion {
            index: index.to_owned(),
            steps,
        };
        tracing::info!(
            index,
            changed = promotion.changed(),
            "follower index promoted"
        );
        Ok(promotion)
    }

    async fn call(&self, index: &str, step: CcrStep) -> Result<(), CcrError> {
        let url = self
            .base
            .join(&format!("{index}/{}", step.path()))
            .map_err(|e| CcrError::Config {
                url: self.base.to_string(),
                reason: e.to_string(),
            })?;
        retry::retry(&self.retry, "elasticsearch ccr call", |_| {
            let mut request = self.client.post(url.clone());
            if let Some((user, password)) = &self.auth {
                request = request.basic_auth(user, Some(password.expose()));
            }
            let url = url.to_string();
            async move {
                let response = request.send().await.map_err(|e| CcrError::Unreachable {
                    url: url.clone(),
                    detail: error_chain(&e),
                })?;
                let status = response.status();
                if status.is_success() {
                    return Ok(());
                }
                let body = response.text().await.unwrap_or_default();
                let (error_type, reason) = match serde_json::from_str::<EsErrorBody>(&body) {
                    Ok(EsErrorBody { error: Some(d) }) => (d.kind, d.reason),
                    _ => (String::new(), body.chars().take(300).collect()),
                };
                Err(CcrError::Api {
                    method: "POST",
                    url,
                    status: status.as_u16(),
                    error_type,
                    reason,
                })
            }
        })
        .await
        .map(|ok| ok.value)
        .map_err(|failed| failed.value)
    }
}

/// Whether a 400 `illegal_argument_exception` for `step` means its effect
/// is already in place.
fn already_done(step: CcrStep, reason: &str) -> bool {
    match step {
        CcrStep::PauseFollow => {
            reason.contains("not a follower index") || reason.contains("no shard follow tasks")
        }
        CcrStep::Unfollow => reason.contains("not a follower index"),
        CcrStep::Close | CcrStep::Open => false,
    }
}

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
