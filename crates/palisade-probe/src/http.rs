//! HTTP probe: an app server's health endpoint answers with the expected
//! status.
//!
//! The client is built once per probe (connection pooling is fine here:
//! reqwest notices a dead keep-alive connection and reconnects within the
//! same request). Proxies from the environment are ignored, since a witness must
//! observe the target from its own site, not through whatever `HTTPS_PROXY`
//! the service manager inherited.

use std::time::{Duration, Instant};

use palisade_core::observe::{ErrorClass, Reachability};
use reqwest::{redirect, Client, Url};
use serde::{Deserialize, Serialize};

use crate::{classify_io, find_io_error, millis, redact, ProbeConfigError};

/// How many redirects the probe follows before calling the answer broken.
const MAX_REDIRECTS: usize = 3;

/// What one HTTP probe saw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpObservation {
    /// `Up` when the target answered with the expected status. A wrong
    /// status is `Down { class: NotReady }` (the server answered but is not
    /// healthy), with the status in `status`.
    pub reachability: Reachability,
    /// The HTTP status of the final response (after redirects); `None` when
    /// no response arrived.
    pub status: Option<u16>,
    /// How long the probe took, in milliseconds.
    pub latency_ms: u64,
}

/// Probes one HTTP(S) URL with `GET`.
#[derive(Clone, Debug)]
pub struct HttpProbe {
    client: Client,
    url: Url,
    /// The URL with its password redacted, for logs and details.
    target: String,
    timeout: Duration,
    /// The status that means healthy; `None` accepts any 2xx.
    expect_status: Option<u16>,
}

impl HttpProbe {
    /// Builds a probe of `url` that gives each probe `timeout` overall
    /// (connect, redirects, response headers) and counts the target healthy
    /// on `expect_status`, or on any 2xx when `None`. Fails on a URL that is
    /// not `http`/`https` with a host, a zero timeout or a status outside
    /// 100..=599, naming the URL (password redacted).
    pub fn new(
        url: &str,
        timeout: Duration,
        expect_status: Option<u16>,
    ) -> Result<Self, ProbeConfigError> {
        let target = redact(url);
        let invalid = |reason: String| ProbeConfigError::InvalidUrl {
            url: target.clone(),
            reason,
        };
        let parsed = Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "scheme {:?} is not http or https",
                parsed.scheme()
            )));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host".to_owned()));
        }
        if let Some(status) = expect_status {
            if !(100..=599).contains(&status) {
                return Err(invalid(format!(
                    "expected status {status} is not an HTTP status"
                )));
            }
        }
        if timeout.is_zero() {
            return Err(ProbeConfigError::ZeroTimeout { target, timeout });
        }
        let client = Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(redirect::Policy::limited(MAX_REDIRECTS))
            .no_proxy()
            .user_agent(concat!("palisade-probe/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProbeConfigError::HttpClient {
                url: target.clone(),
                reason: error_chain(&e),
            })?;
        Ok(Self {
            client,
            url: parsed,
            target,
            timeout,
            expect_status,
        })
    }

    /// The URL probed, password redacted.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Sends one `GET` and reports what came back. Never fails. The body is
    /// not read: the status is the health signal.
    #[tracing::instrument(name = "http_probe", skip_all, fields(target = %self.target))]
    pub async fn probe(&self) -> HttpObservation {
        let started = Instant::now();
        // reqwest's own timeout covers the request; the outer one is a
        // backstop so a probe can never outlive its budget.
        let sent =
            tokio::time::timeout(self.timeout, self.client.get(self.url.clone()).send()).await;
        let latency_ms = millis(started.elapsed());
        let (reachability, status) = match sent {
            Ok(Ok(response)) => {
                let status = response.status();
                let healthy = match self.expect_status {
                    Some(expected) => status.as_u16() == expected,
                    None => status.is_success(),
                };
                let reachability = if healthy {
                    Reachability::Up
                } else {
                    let expected = self
                        .expect_status
                        .map_or_else(|| "2xx".to_owned(), |s| s.to_string());
                    Reachability::Down {
                        class: ErrorClass::NotReady,
                        detail: format!("HTTP {status} (expected {expected})"),
                    }
                };
                (reachability, Some(status.as_u16()))
            }
            Ok(Err(e)) => (
                Reachability::Down {
                    class: classify_reqwest(&e),
                    detail: error_chain(&e.without_url()),
                },
                None,
            ),
            Err(_) => (
                Reachability::Down {
                    class: ErrorClass::Timeout,
                    detail: format!("no answer within {:?}", self.timeout),
                },
                None,
            ),
        };
        if let Reachability::Down { class, detail } = &reachability {
            tracing::debug!(?class, %detail, ?status, latency_ms, "http target unhealthy");
        }
        HttpObservation {
            reachability,
            status,
            latency_ms,
        }
    }
}

/// Maps a reqwest error to the class the detector decides on.
fn classify_reqwest(err: &reqwest::Error) -> ErrorClass {
    if err.is_timeout() {
        return ErrorClass::Timeout;
    }
    find_io_error(err).map_or(ErrorClass::Other, classify_io)
}

/// An error and its sources, `: `-separated (reqwest's own message alone
/// is only "error sending request").
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
    use axum::http::StatusCode;
    use axum::response::Redirect;
    use axum::routing::get;
    use axum::Router;
    use std::net::SocketAddr;

    /// A tiny app server on a free loopback port.
    async fn serve() -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let app = Router::new()
            .route("/ok", get(|| async { "ok" }))
            .route(
                "/fail",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
            )
            .route("/teapot", get(|| async { StatusCode::IM_A_TEAPOT }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    "late"
                }),
            )
            .route("/hop", get(|| async { Redirect::temporary("/ok") }))
            .route("/loop", get(|| async { Redirect::temporary("/loop") }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                panic!("test server failed: {e}");
            }
        });
        (addr, server)
    }

    async fn probe(
        addr: SocketAddr,
        path: &str,
        timeout: Duration,
        expect: Option<u16>,
    ) -> HttpObservation {
        HttpProbe::new(&format!("http://{addr}{path}"), timeout, expect)
            .expect("valid URL")
            .probe()
            .await
    }

    fn class(o: &HttpObservation) -> Option<ErrorClass> {
        match &o.reachability {
            Reachability::Up => None,
            Reachability::Down { class, .. } => Some(*class),
        }
    }

    #[tokio::test]
    async fn statuses_decide_health() {
        let (addr, server) = serve().await;
        let t = Duration::from_secs(2);

        let ok = probe(addr, "/ok", t, None).await;
        assert_eq!(
            (ok.reachability.clone(), ok.status),
            (Reachability::Up, Some(200)),
            "{ok:?}"
        );

        let fail = probe(addr, "/fail", t, None).await;
        assert_eq!(
            (class(&fail), fail.status),
            (Some(ErrorClass::NotReady), Some(500)),
            "{fail:?}"
        );

        let teapot = probe(addr, "/teapot", t, Some(418)).await;
        assert!(teapot.reachability.is_up(), "{teapot:?}");
        let not_teapot = probe(addr, "/ok", t, Some(418)).await;
        assert_eq!(
            (class(&not_teapot), not_teapot.status),
            (Some(ErrorClass::NotReady), Some(200))
        );

        let hop = probe(addr, "/hop", t, None).await;
        assert_eq!(
            (hop.reachability.clone(), hop.status),
            (Reachability::Up, Some(200)),
            "{hop:?}"
        );
        let endless = probe(addr, "/loop", t, None).await;
        assert_eq!(
            (class(&endless), endless.status),
            (Some(ErrorClass::Other), None),
            "{endless:?}"
        );
        server.abort();
    }

    #[tokio::test]
    async fn slow_answer_times_out_within_the_timeout() {
        let (addr, server) = serve().await;
        let timeout = Duration::from_millis(300);
        let started = Instant::now();
        let slow = probe(addr, "/slow", timeout, None).await;
        let took = started.elapsed();
        assert_eq!(
            (class(&slow), slow.status),
            (Some(ErrorClass::Timeout), None),
            "{slow:?}"
        );
        assert!(
            took >= timeout && took < timeout + Duration::from_millis(200),
            "took {took:?}"
        );
        server.abort();
    }

    #[tokio::test]
    async fn closed_port_is_refused() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
            listener.local_addr().expect("bound address").port()
        };
        let o = probe(
            SocketAddr::from(([127, 0, 0, 1], port)),
            "/ok",
            Duration::from_secs(2),
            None,
        )
        .await;
        assert_eq!(
            (class(&o), o.status),
            (Some(ErrorClass::Refused), None),
            "{o:?}"
        );
    }

    #[test]
    fn bad_urls_are_config_errors_naming_the_url() {
        for (url, why) in [
            ("ftp://h/x", "scheme"),
            ("not a url", "relative URL"),
            ("http://u:pw@/x", "empty host"),
        ] {
            let err = HttpProbe::new(url, Duration::from_secs(1), None).expect_err(why);
            assert!(
                matches!(err, ProbeConfigError::InvalidUrl { .. }),
                "{url}: {err}"
            );
            assert!(!err.to_string().contains("pw@"), "{err}");
        }
        let err =
            HttpProbe::new("http://h/x", Duration::from_secs(1), Some(42)).expect_err("status");
        assert!(err.to_string().contains("42"), "{err}");
        let err = HttpProbe::new("http://h/x", Duration::ZERO, None).expect_err("zero timeout");
        assert!(matches!(err, ProbeConfigError::ZeroTimeout { .. }), "{err}");
    }
}
