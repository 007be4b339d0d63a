//! Elasticsearch probe: `GET /_cluster/health` from this witness's site.
//!
//! The guide's "Failover Check" starts with "check Elasticsearch service on
//! the secondary site"; palisade reads the cluster's own verdict (`green`,
//! `yellow`, `red`), how many nodes it sees, and whether the health call
//! itself timed out inside ES. A cluster that answers `red` is *reachable*
//! (the observation says `Up` with `status: Red`): reachability is about the
//! service answering, health is the service's own opinion, and the post-
//! failover check decides what counts as good enough (green or yellow).
//!
//! The request carries `master_timeout` at half the probe timeout, so that a
//! cluster without an elected master answers `503 master_not_discovered`
//! (`NotReady`) within our budget instead of running into it (`Timeout`):
//! "ES is up but has no master" and "ES does not answer" are different
//! outages.

use std::time::{Duration, Instant};

use palisade_core::observe::{ErrorClass, Reachability};
use reqwest::{Client, StatusCode, Url};
use serde::{Deserialize, Serialize};

use crate::{classify_io, find_io_error, millis, redact, with_client_tls, ProbeConfigError};

/// The cluster's own health verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EsHealth {
    /// All primary and replica shards allocated.
    Green,
    /// All primaries allocated, some replicas not: serving, less redundant.
    Yellow,
    /// Some primary shards unallocated: some data unavailable.
    Red,
}

/// What one Elasticsearch probe saw. Fields ES did not report (or that
/// could not be read because it did not answer) are `None`: unknown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EsObservation {
    /// `Up` when `_cluster/health` answered with a health document, whatever
    /// its colour.
    pub reachability: Reachability,
    /// `status` from the health document.
    pub status: Option<EsHealth>,
    /// `number_of_nodes`: nodes in the cluster as the answering node sees it.
    pub number_of_nodes: Option<u32>,
    /// `timed_out`: whether ES itself gave up waiting inside the call.
    pub timed_out: Option<bool>,
    /// `cluster_name`, to notice a probe pointed at the wrong cluster.
    pub cluster_name: Option<String>,
    /// How long the probe took, in milliseconds.
    pub latency_ms: u64,
}

impl EsObservation {
    fn down(class: ErrorClass, detail: impl Into<String>, latency_ms: u64) -> Self {
        Self {
            reachability: Reachability::Down {
                class,
                detail: detail.into(),
            },
            status: None,
            number_of_nodes: None,
            timed_out: None,
            cluster_name: None,
            latency_ms,
        }
    }

    /// True when ES answered green or yellow: the guide's "Elasticsearch
    /// service" check after a failover.
    pub fn is_serving(&self) -> bool {
        self.reachability.is_up() && matches!(self.status, Some(EsHealth::Green | EsHealth::Yellow))
    }
}

/// The part of the `_cluster/health` answer we read.
#[derive(Deserialize)]
struct HealthBody {
    status: EsHealth,
    #[serde(default)]
    number_of_nodes: Option<u32>,
    #[serde(default)]
    timed_out: Option<bool>,
    #[serde(default)]
    cluster_name: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: Option<ErrorDetail>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    reason: Option<String>,
}

/// Optional HTTP basic authentication for the probe.
#[derive(Clone, PartialEq, Eq)]
pub struct EsAuth {
    /// User name.
    pub user: String,
    /// Password; never logged or shown (`Secret`'s `Debug` shows only
    /// where it came from).
    pub password: palisade_core::Secret,
}

impl std::fmt::Debug for EsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EsAuth")
            .field("user", &self.user)
            .field("password", &self.password)
            .finish()
    }
}

/// How the probe authenticates to the cluster and the cluster to it: basic
/// auth, and the TLS roots and client identity (`[[elasticsearch]]`
/// `ca_file`, `client_cert_file`, `client_key_file`). Converts from a bare
/// `Option<EsAuth>` (public roots, no client certificate).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EsAccess {
    /// HTTP basic auth, if the cluster needs it.
    pub basic: Option<EsAuth>,
    /// CA bundle and client identity for `https://` URLs.
    pub tls: palisade_core::secret::ClientTls,
}

impl From<Option<EsAuth>> for EsAccess {
    fn from(basic: Option<EsAuth>) -> Self {
        Self {
            basic,
            tls: Default::default(),
        }
    }
}

/// Probes one Elasticsearch endpoint. The HTTP client is built once.
#[derive(Clone, Debug)]
pub struct EsProbe {
    client: Client,
    url: Url,
    /// The base URL with its password redacted, for logs and details.
    target: String,
    timeout: Duration,
    auth: Option<EsAuth>,
}

impl EsProbe {
    /// A probe of the cluster at `base_url` (`http://es-b:9200`, optionally
    /// with a path prefix for a proxy), giving each probe `timeout` overall.
    /// Fails on a URL that is not `http`/`https` with a host, or a zero
    /// timeout, or a CA bundle or client identity that does not parse,
    /// naming the URL (password redacted).
    pub fn new(
        base_url: &str,
        timeout: Duration,
        access: impl Into<EsAccess>,
    ) -> Result<Self, ProbeConfigError> {
        let EsAccess { basic: auth, tls } = access.into();
        let target = redact(base_url);
        let invalid = |reason: String| ProbeConfigError::InvalidUrl {
            url: target.clone(),
            reason,
        };
        let mut url = Url::parse(base_url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "scheme {:?} is not http or https",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host".to_owned()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a base URL takes no query or fragment".to_owned()));
        }
        if timeout.is_zero() {
            return Err(ProbeConfigError::ZeroTimeout { target, timeout });
        }
        let path = format!("{}/_cluster/health", url.path().trim_end_matches('/'));
        url.set_path(&path);
        let master_timeout_ms = (millis(timeout) / 2).max(1);
        url.set_query(Some(&format!("master_timeout={master_timeout_ms}ms")));
        let builder =
            with_client_tls(Client::builder(), &tls).map_err(|e| ProbeConfigError::HttpClient {
                url: target.clone(),
                reason: error_chain(&e),
            })?;
        let client = builder
            .timeout(timeout)
            .connect_timeout(timeout)
            // A witness observes ES from its own site, not through whatever
            // proxy the service manager's environment names.
            .no_proxy()
            .user_agent(concat!("palisade-probe/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProbeConfigError::HttpClient {
                url: target.clone(),
                reason: error_chain(&e),
            })?;
        Ok(Self {
            client,
            url,
            target,
            timeout,
            auth,
        })
    }

    /// The base URL probed, password redacted.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Sends one `GET /_cluster/health` and reports what came back. Never
    /// fails.
    #[tracing::instrument(name = "es_probe", skip_all, fields(target = %self.target))]
    pub async fn probe(&self) -> EsObservation {
        let started = Instant::now();
        let mut request = self.client.get(self.url.clone());
        if let Some(auth) = &self.auth {
            request = request.basic_auth(&auth.user, Some(auth.password.expose()));
        }
        // reqwest's timeout covers the request; this outer one also covers
        // reading the body, so a probe never outlives its budget.
        let exchange = async {
            let response = request.send().await?;
            let status = response.status();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        };
        let answered = tokio::time::timeout(self.timeout, exchange).await;
        let latency_ms = millis(started.elapsed());
        let observation = match answered {
            Ok(Ok((status, body))) => interpret(status, &body, latency_ms),
            Ok(Err(e)) => EsObservation::down(
                classify_reqwest(&e),
                error_chain(&e.without_url()),
                latency_ms,
            ),
            Err(_) => EsObservation::down(
                ErrorClass::Timeout,
                format!("no answer within {:?}", self.timeout),
                latency_ms,
            ),
        };
        if let Reachability::Down { class, detail } = &observation.reachability {
            tracing::debug!(?class, %detail, latency_ms, "elasticsearch unreachable");
        }
        observation
    }
}

fn interpret(status: StatusCode, body: &[u8], latency_ms: u64) -> EsObservation {
    // 408 is ES's answer when a health call with wait conditions timed out;
    // it still carries a health document, with `timed_out: true`.
    if status.is_success() || status == StatusCode::REQUEST_TIMEOUT {
        return match serde_json::from_slice::<HealthBody>(body) {
            Ok(h) => EsObservation {
                reachability: Reachability::Up,
                status: Some(h.status),
                number_of_nodes: h.number_of_nodes,
                timed_out: h.timed_out,
                cluster_name: h.cluster_name,
                latency_ms,
            },
            Err(e) => EsObservation::down(
                ErrorClass::Other,
                format!("HTTP {status} with a body that is not a cluster health document: {e}"),
                latency_ms,
            ),
        };
    }
    let detail = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error: Some(d) }) => format!(
            "HTTP {status}: {}: {}",
            d.kind,
            d.reason.as_deref().unwrap_or("(no reason)")
        ),
        _ => format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ),
    };
    let class = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ErrorClass::Auth,
        // 503 master_not_discovered_exception, cluster_block_exception:
        // the node is up but the cluster cannot serve.
        s if s.is_server_error() => ErrorClass::NotReady,
        _ => ErrorClass::Other,
    };
    EsObservation::down(class, detail, latency_ms)
}

/// Maps a reqwest error to the class the detector decides on.
fn classify_reqwest(err: &reqwest::Error) -> ErrorClass {
    if err.is_timeout() {
        return ErrorClass::Timeout;
    }
    find_io_error(err).map_or(ErrorClass::Other, classify_io)
}

/// An error and its sources, `: `-separated.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_url_without_password() {
        for url in ["ftp://h", "nope", "http://u:pw@/x", "http://h:9200/?x=1"] {
            let e = EsProbe::new(url, Duration::from_secs(1), None).expect_err(url);
            assert!(
                matches!(e, ProbeConfigError::InvalidUrl { .. }),
                "{url}: {e}"
            );
            assert!(!e.to_string().contains("pw@"), "{e}");
        }
        assert!(matches!(
            EsProbe::new("http://h:9200", Duration::ZERO, None),
            Err(ProbeConfigError::ZeroTimeout { .. })
        ));
    }

    #[test]
    fn health_url_keeps_a_path_prefix() {
        let p = EsProbe::new("http://h:9200/es/", Duration::from_secs(2), None).expect("probe");
        assert_eq!(
            p.url.as_str(),
            "http://h:9200/es/_cluster/health?master_timeout=1000ms"
        );
    }

    #[test]
    fn answers_are_interpreted() {
        let ok = interpret(
            StatusCode::OK,
            br#"{"cluster_name":"c","status":"yellow","timed_out":false,"number_of_nodes":2}"#,
            5,
        );
        assert_eq!(ok.status, Some(EsHealth::Yellow));
        assert_eq!(ok.number_of_nodes, Some(2));
        assert!(ok.is_serving());
        let no_master = interpret(
            StatusCode::SERVICE_UNAVAILABLE,
            br#"{"error":{"type":"master_not_discovered_exception","reason":null},"status":503}"#,
            5,
        );
        assert!(matches!(
            no_master.reachability,
            Reachability::Down {
                class: ErrorClass::NotReady,
                ..
            }
        ));
        let auth = interpret(StatusCode::UNAUTHORIZED, b"{}", 5);
        assert!(matches!(
            auth.reachability,
            Reachability::Down {
                class: ErrorClass::Auth,
                ..
            }
        ));
        let junk = interpret(StatusCode::OK, b"<html>", 5);
        assert!(matches!(
            junk.reachability,
            Reachability::Down {
                class: ErrorClass::Other,
                ..
            }
        ));
    }
}
