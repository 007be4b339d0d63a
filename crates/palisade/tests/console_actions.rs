//! The console's actions (issue 15 item 5) on an HTTPS listener
//! (`http.tls = true`), against three witnesses over a real PostgreSQL
//! pair: a page loaded without a certificate or with a viewer's shows no
//! action control, and a POST from either is refused (403) even with an
//! operator page's valid token; a forced failover without the typed site
//! name is refused by the page and by the witness; an operator starts a
//! switchover from the page in headless chromium, confirms it in the
//! dialog, and it completes (checked with the control API).
//!
//! The browser reaches the witness through a small TLS-originating proxy
//! of the test's (plain HTTP in, TLS with a client certificate out):
//! presenting a certificate is then the proxy's job, and the test needs no
//! certificate database or browser policy. Everything the witness sees is
//! what a browser with that certificate would send over TLS.

mod browser;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use browser::{js, screenshots_dir, Driver};
use fantoccini::{Client, Locator};
use palisade_api::v1::control_client::ControlClient;
use palisade_api::v1::StatusRequest;
use palisade_testkit::cluster::{
    db_config_rejoining, wait_ready, wait_status, Cluster, OPERATED, SETTLE, SLOTS,
};
use palisade_testkit::pg::PgPair;
use palisade_testkit::pki::{TestPki, OPERATOR, VIEWER};
use palisade_testkit::{step, wait_for};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::json;

/// Clicks the action button `action` in one script (the buttons are
/// re-rendered with every status, so a found element may be replaced
/// before a WebDriver click reaches it).
async fn click_action(c: &Client, action: &str) {
    let clicked = js(
        c,
        &format!(
            "const b = document.querySelector('#action-buttons button[data-action=\"{action}\"]'); \
             if (!b) return false; b.click(); return true;"
        ),
    )
    .await;
    assert_eq!(clicked, json!(true), "no {action} button on the page");
}

async fn dialog(c: &Client) -> (bool, String, String) {
    let v = js(
        c,
        "const d = document.getElementById('action-dialog'); \
         return [d.open, document.getElementById('action-dialog-text').innerText, \
                 document.getElementById('action-dialog-error').innerText];",
    )
    .await;
    (
        v[0].as_bool().unwrap_or(false),
        v[1].as_str().unwrap_or_default().to_string(),
        v[2].as_str().unwrap_or_default().to_string(),
    )
}

/// (the HTTP status, the text) shown under the controls, once an answer came.
async fn result(c: &Client) -> Option<(u16, String)> {
    let v = js(
        c,
        "const r = document.getElementById('action-result'); \
         return [r.getAttribute('data-status'), r.innerText];",
    )
    .await;
    let status = v[0].as_str()?.parse().ok()?;
    Some((status, v[1].as_str().unwrap_or_default().to_string()))
}

/// Saves a screenshot under target/console-screenshots/ (docs/console.md).
async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    let dir = screenshots_dir();
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    std::fs::write(dir.join(name), png).expect("write screenshot");
}

/// A plain-HTTP front for the witness's HTTPS listener at `upstream`: each
/// connection is dialed over TLS with `config` (a client certificate or
/// none), verifying the witness as `name`.
struct Proxy {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn proxy(
    upstream: SocketAddr,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
) -> Proxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the proxy");
    let url = format!("http://{}", listener.local_addr().expect("proxy address"));
    let connector = tokio_rustls::TlsConnector::from(config);
    let task = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let connector = connector.clone();
            let name = name.clone();
            tokio::spawn(async move {
                let Ok(tcp) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let Ok(mut tls) = connector.connect(name, tcp).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut tls).await;
            });
        }
    });
    Proxy { url, task }
}

/// `name`'s client config (its certificate), speaking HTTP/1.1.
fn with_cert(pki: &TestPki, name: &str) -> Arc<ClientConfig> {
    let store = pki.store(name).expect("the operator's certificate");
    let mut config = (*palisade_tls::client_config_any_witness(store)).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A client config without a certificate, trusting the cluster CA.
fn without_cert(pki: &TestPki) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pki.dir.join("ca.crt")).expect("ca.crt") {
        roots
            .add(cert.expect("a CA certificate"))
            .expect("a trust root");
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(palisade_tls::provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// The page's action token.
fn token_of(page: &str) -> String {
    let (_, rest) = page
        .split_once("data-csrf=\"")
        .expect("an operator's page carries a token");
    rest.split('"').next().expect("a token").to_string()
}

async fn post(http: &reqwest::Client, base: &str, action: &str, body: &str) -> (u16, String) {
    let r = http
        .post(format!("{base}/console/actions/{action}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {action}: {e}"));
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_switches_over_from_the_console_and_a_viewer_cannot() {
    let _slot = SLOTS.acquire().await.expect("test slot");
    let driver = Driver::start("console-actions").await;
    let pair = PgPair::start().await.expect("PostgreSQL pair");
    let mut c = Cluster::with_config(&db_config_rejoining(&pair, OPERATED));
    let pki = c.pki.clone().expect("a cluster with certificates");
    for n in &c.nodes {
        let addr = n
            .http
            .as_deref()
            .expect("the test kit gives every witness an HTTP listener")
            .trim_start_matches("http://")
            .to_string();
        let text = std::fs::read_to_string(&n.config).expect("read config");
        let listen = format!("listen = \"{addr}\"\n");
        assert!(text.contains(&listen), "{text}");
        std::fs::write(
            &n.config,
            text.replacen(&listen, &format!("{listen}tls = true\n"), 1),
        )
        .expect("write config");
    }
    for n in &mut c.nodes {
        n.start();
    }
    wait_ready(&c).await;
    let leader = wait_status(&c, "a leader", SETTLE, |s| s.leader_id).await;
    // A follower's console: the action is forwarded to the leader.
    let via = [3, 2, 1]
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    let node = &c.nodes[(via - 1) as usize];
    let upstream: SocketAddr = node
        .http
        .as_deref()
        .expect("an HTTP listener")
        .trim_start_matches("http://")
        .parse()
        .expect("an address");
    let name = ServerName::try_from(palisade_tls::server_name_for("test", via)).expect("a name");
    let operator = proxy(upstream, with_cert(&pki, OPERATOR), name.clone()).await;
    let viewer = proxy(upstream, with_cert(&pki, VIEWER), name.clone()).await;
    let anonymous = proxy(upstream, without_cert(&pki), name).await;
    // A new connection per request: a pooled one the witness closed
    // meanwhile would fail a POST through the proxy for the wrong reason.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTP client");

    step("the HTTPS listener serves no plain HTTP, and the health endpoints need no certificate");
    let plain = reqwest::get(format!("http://{upstream}/health")).await;
    assert!(
        !plain.as_ref().is_ok_and(|r| r.status().is_success()),
        "plain HTTP answered: {plain:?}"
    );
    let health = http
        .get(format!("{}/health", anonymous.url))
        .send()
        .await
        .expect("GET /health over TLS");
    assert_eq!(health.status().as_u16(), 200);

    step("a viewer sees no action controls (no certificate, or a viewer's)");
    for (who, p) in [("no certificate", &anonymous), ("a viewer", &viewer)] {
        let page = http
            .get(format!("{}/", p.url))
            .send()
            .await
            .expect("GET /")
            .text()
            .await
            .expect("the page");
        assert!(page.contains("id=\"overview\""), "{who}: {page}");
        for control in ["<button", "<form", "data-action", "data-csrf", "actions.js"] {
            assert!(!page.contains(control), "{who}'s page has {control}");
        }
    }
    let b = driver.browser(1280, 900).await;
    b.goto(&format!("{}/", anonymous.url))
        .await
        .expect("open the overview");
    wait_for("the page is live", SETTLE, async || {
        let live = js(&b, "return document.getElementById('live').innerText;").await;
        live.as_str()?.contains("live").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let controls = b
        .find_all(Locator::Css(
            "button, form, [data-action], #actions, dialog",
        ))
        .await
        .expect("find controls");
    assert!(
        controls.is_empty(),
        "a viewer sees {} controls",
        controls.len()
    );

    step("an operator's page has the controls and a token");
    let page = http
        .get(format!("{}/", operator.url))
        .send()
        .await
        .expect("GET / as the operator")
        .text()
        .await
        .expect("the page");
    assert!(page.contains("data-action=\"switchover\""), "{page}");
    let token = token_of(&page);

    step("a POST without an operator certificate is refused (403), even with a valid token");
    for (who, p) in [("no certificate", &anonymous), ("a viewer", &viewer)] {
        let (status, text) = post(
            &http,
            &p.url,
            "switchover",
            &format!("csrf={token}&to_site=b"),
        )
        .await;
        assert_eq!(status, 403, "{who}: {text}");
    }
    let (status, text) = post(&http, &operator.url, "pause", "csrf=forged").await;
    assert_eq!(status, 403, "a forged token: {text}");

    step("a forced failover without the typed site name is refused by the witness");
    for typed in ["", "a", "B"] {
        let (status, text) = post(
            &http,
            &operator.url,
            "failover",
            &format!("csrf={token}&to_site=b&confirm={typed}"),
        )
        .await;
        assert_eq!(status, 400, "typed {typed:?}: {text}");
        assert!(text.contains("typed"), "{text}");
    }

    step("... and by the page");
    b.goto(&format!("{}/", operator.url))
        .await
        .expect("open the overview as the operator");
    wait_for("the action buttons", SETTLE, async || {
        let n = js(
            &b,
            "return document.querySelectorAll('#action-buttons button[data-action]').length;",
        )
        .await;
        (n.as_u64()? >= 3).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    click_action(&b, "failover").await;
    let (open, said, _) = dialog(&b).await;
    assert!(open, "the failover's confirmation is open");
    assert!(
        said.contains("Force a failover to b") && said.contains("LOST") && said.contains("Type b"),
        "{said}"
    );
    b.find(Locator::Css("#action-dialog-input"))
        .await
        .expect("the typed name's field")
        .send_keys("a")
        .await
        .expect("type");
    b.find(Locator::Css("#action-confirm"))
        .await
        .expect("confirm")
        .click()
        .await
        .expect("click confirm");
    let (open, _, error) = dialog(&b).await;
    assert!(open, "the dialog stays open");
    assert!(error.contains("Type b exactly"), "{error}");
    assert_eq!(result(&b).await, None, "nothing was sent");
    b.find(Locator::Css("#action-cancel"))
        .await
        .expect("cancel")
        .click()
        .await
        .expect("click cancel");
    assert!(!dialog(&b).await.0, "cancelled");
    let mut ctl = ControlClient::new(
        node.control_channel(Duration::from_secs(3), Duration::from_secs(15))
            .await
            .expect("the control API"),
    );
    let s = ctl
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(
        (s.epoch, s.primary_site.as_str()),
        (0, "a"),
        "nothing happened"
    );

    step("the operator starts a switchover from the page and confirms it");
    let deadline = Instant::now() + SETTLE;
    let answer = loop {
        click_action(&b, "switchover").await;
        let (open, said, _) = dialog(&b).await;
        assert!(open, "the switchover's confirmation is open");
        assert!(
            said.contains("Switch over from a to b")
                && said.contains("shut down cleanly")
                && said.contains("Writes pause for about a second"),
            "{said}"
        );
        screenshot(&b, "actions-confirm.png").await;
        b.find(Locator::Css("#action-confirm"))
            .await
            .expect("confirm")
            .click()
            .await
            .expect("click confirm");
        let (status, text) = wait_for("the switchover's answer", SETTLE, async || result(&b).await)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        // No leader for a moment, or the standby not yet ready right
        // after the start, is worth a retry.
        if (status == 503 || status == 409) && Instant::now() < deadline {
            eprintln!("--- switchover refused for now ({status}): {text}");
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        break (status, text);
    };
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert!(
        answer.1.contains("Switchover from a to b committed"),
        "{}",
        answer.1
    );
    js(
        &b,
        "document.getElementById('actions').scrollIntoView(); return null;",
    )
    .await;
    screenshot(&b, "actions-switchover.png").await;

    step("the switchover completes, recorded under the operator's certificate name");
    let f = wait_status(&c, "the switchover finished", SETTLE, |s| {
        s.last_failover
            .clone()
            .filter(|f| f.kind == "switchover" && !f.outcome.is_empty())
    })
    .await;
    assert_eq!(f.outcome, "completed", "{f:?}");
    assert_eq!((f.from_site.as_str(), f.to_site.as_str()), ("a", "b"));
    assert_eq!(f.trigger, format!("operator:{OPERATOR}"));
    wait_status(&c, "b is the primary", SETTLE, |s| {
        (s.primary_site == "b").then_some(())
    })
    .await;
    b.close().await.expect("close the browser");
}
