//! `ca_file`, `client_cert_file` and `client_key_file` of the HTTPS clients
//! palisade drives (the Elasticsearch probe, the CCR client, the webhook
//! front door, the STONITH hook), from the config file to the wire, against
//! a local HTTPS server with a private CA: the right CA connects; without
//! it the built-in public roots refuse the server (unknown issuer); a
//! server that demands a client certificate accepts ours and refuses a
//! client without one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use palisade::config::{Config, FrontDoor, SearchConfig, StonithConfig};
use palisade_actions::elasticsearch::CcrClient;
use palisade_actions::retry::RetryPolicy;
use palisade_actions::webhook::{Webhook, WebhookConfig, WebhookEvent};
use palisade_core::observe::Reachability;
use palisade_probe::elasticsearch::EsProbe;
use palisade_testkit::step;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A test CA and the certificates it signs.
struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Self {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// `(certificate, key)` PEM for `name`.
    fn issue(&self, name: &str) -> (String, String) {
        let params = CertificateParams::new(vec![name.to_owned()]).expect("params");
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// An HTTPS server on 127.0.0.1 answering every request `200` with a
/// cluster health document (enough for the ES probe, the CCR calls, the
/// webhook and the STONITH hook). With `client_ca`, it demands a client
/// certificate signed by it. Returns the port; the server lives as long
/// as the test's runtime.
async fn https_server(pki: &Pki, client_ca: Option<&Pki>) -> u16 {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (cert, key) = pki.issue("localhost");
    let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).expect("cert")];
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocols");
    let config = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(ca.ca_pem.as_bytes()).expect("ca"))
                .expect("root");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
    }
    .with_single_cert(chain, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A refused handshake ends here: that is what the test
                // checks from the client's side.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let body = r#"{"status":"green","number_of_nodes":1,"cluster_name":"tls-test"}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

/// The test's files: the CA bundle and our client identity.
struct Files {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn files(dir: &Path, server_pki: &Pki, client_pki: &Pki) -> Files {
    use std::os::unix::fs::PermissionsExt;
    let (cert, key) = client_pki.issue("palisade");
    let f = Files {
        ca: dir.join("ca.pem"),
        cert: dir.join("client.crt"),
        key: dir.join("client.key"),
    };
    std::fs::write(&f.ca, &server_pki.ca_pem).expect("write");
    std::fs::write(&f.cert, cert).expect("write");
    std::fs::write(&f.key, key).expect("write");
    std::fs::set_permissions(&f.key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    f
}

/// The four clients as the config file builds them, all at `url`, with
/// `tls` (lines of TLS keys) on each.
struct Clients {
    search: SearchConfig,
    webhook: WebhookConfig,
    stonith: StonithConfig,
}

fn clients(url: &str, tls: &str) -> Clients {
    parse_clients(url, tls).expect("valid config")
}

/// Like [`clients`]; the config's error as text.
fn parse_clients(url: &str, tls: &str) -> Result<Clients, String> {
    let text = format!(
        r#"
node_id = 1
[tls]
insecure = true
[storage]
data_dir = "/var/lib/palisade/{{site}}"
[[witness]]
id = 1
site = "a"
raft_addr = "127.0.0.1:7301"
control_addr = "127.0.0.1:7401"
[[witness]]
id = 2
site = "b"
raft_addr = "127.0.0.1:7302"
control_addr = "127.0.0.1:7402"
[[witness]]
id = 3
site = "c"
raft_addr = "127.0.0.1:7303"
control_addr = "127.0.0.1:7403"

[[database]]
site = "a"
role = "primary"
dsn = "postgres://palisade@127.0.0.1:1/postgres"

[[database]]
site = "b"
role = "standby"
dsn = "postgres://palisade@127.0.0.1:2/postgres"

[[stonith]]
site = "a"
url = "{url}/off"
timeout_ms = 5000
{tls}

[[elasticsearch]]
site = "a"
url = "{url}"
hosts = "{url}"
{tls}

[[front_door]]
kind = "webhook"
url = "{url}/hook"
secret = "0123456789abcdef0123"
timeout_ms = 5000
{tls}
"#
    );
    let c =
        Config::parse(Path::new("/etc/palisade/site.toml"), &text).map_err(|e| e.to_string())?;
    let FrontDoor::Webhook {
        url: hook_url,
        secret,
        timeout,
        tls,
    } = c.actions.front_doors[0].clone()
    else {
        panic!("a webhook")
    };
    Ok(Clients {
        search: c.actions.search[0].clone(),
        webhook: WebhookConfig {
            url: hook_url,
            secret,
            timeout,
            retry: RetryPolicy::once(),
            tls,
        },
        stonith: c.database.expect("databases").stonith[0].clone(),
    })
}

/// Calls each client once; `Ok` per client or the error's text.
async fn call_all(c: &Clients) -> [(&'static str, Result<(), String>); 4] {
    let es = EsProbe::new(&c.search.url, Duration::from_secs(5), c.search.auth.clone())
        .expect("probe")
        .probe()
        .await;
    let es = match es.reachability {
        Reachability::Up => Ok(()),
        Reachability::Down { detail, .. } => Err(detail),
    };
    let ccr = CcrClient::with_tls(
        &c.search.url,
        Duration::from_secs(5),
        None,
        &c.search.auth.tls,
    )
    .expect("ccr client")
    .with_retry(RetryPolicy::once())
    .promote_follower("follower")
    .await
    .map(|_| ())
    .map_err(|e| e.to_string());
    let event = WebhookEvent {
        epoch: 1,
        from_site: "a".into(),
        to_site: "b".into(),
        reason: "test".into(),
        event: "repointed".into(),
        at_unix_ms: 0,
    };
    let hook = Webhook::new(&c.webhook)
        .expect("webhook")
        .send(&event)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    let stonith = palisade::stonith::fire(&c.stonith, 1).await.map(|_| ());
    [
        ("elasticsearch probe", es),
        ("ccr", ccr),
        ("webhook", hook),
        ("stonith", stonith),
    ]
}

fn assert_all_ok(results: &[(&str, Result<(), String>)]) {
    for (client, r) in results {
        assert!(r.is_ok(), "{client}: {r:?}");
    }
}

fn assert_all_refused(results: &[(&str, Result<(), String>)], because: &[&str]) {
    for (client, r) in results {
        let e = r.as_ref().expect_err(client);
        assert!(
            because.iter().any(|b| e.contains(b)),
            "{client}: {e} (expected one of {because:?})"
        );
    }
}

#[tokio::test]
async fn https_clients_trust_ca_file_and_present_the_client_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server_pki = Pki::new("server CA");
    let client_pki = Pki::new("client CA");
    let f = files(dir.path(), &server_pki, &client_pki);
    let q = |p: &Path| format!("{:?}", p.display().to_string());

    step("a server with a private CA: ca_file connects");
    let port = https_server(&server_pki, None).await;
    let url = format!("https://localhost:{port}");
    let with_ca = clients(&url, &format!("ca_file = {}", q(&f.ca)));
    assert_all_ok(&call_all(&with_ca).await);

    step("no ca_file: the built-in roots refuse the private CA");
    let without = clients(&url, "");
    assert_all_refused(&call_all(&without).await, &["UnknownIssuer"]);

    step("a server that demands a client certificate accepts ours");
    let port = https_server(&server_pki, Some(&client_pki)).await;
    let url = format!("https://localhost:{port}");
    let mtls = clients(
        &url,
        &format!(
            "ca_file = {}\nclient_cert_file = {}\nclient_key_file = {}",
            q(&f.ca),
            q(&f.cert),
            q(&f.key)
        ),
    );
    assert_all_ok(&call_all(&mtls).await);

    step("and refuses a client without one");
    let no_cert = clients(&url, &format!("ca_file = {}", q(&f.ca)));
    // The server's alert arrives after the client's handshake completes
    // (TLS 1.3), so the client sees the refusal as a broken connection.
    assert_all_refused(
        &call_all(&no_cert).await,
        &[
            "CertificateRequired",
            "certificate required",
            "connection",
            "closed",
            "error sending request",
        ],
    );
}

#[test]
fn tls_keys_of_http_clients_are_checked_and_errors_name_them() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new("CA");
    let f = files(dir.path(), &pki, &pki);
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    let refused = |url: &str, tls: &str| match parse_clients(url, tls) {
        Ok(_) => panic!("{tls} must be refused"),
        Err(e) => e,
    };
    let e = refused("http://localhost:1", &format!("ca_file = {}", q(&f.ca)));
    assert!(
        e.contains("stonith[0].ca_file: TLS settings need an https:// url"),
        "{e}"
    );
    let e = refused(
        "https://localhost:1",
        &format!("client_cert_file = {}", q(&f.cert)),
    );
    assert!(e.contains("stonith[0].client_key_file: required"), "{e}");
    let e = refused("https://localhost:1", &format!("ca_file = {}", q(&f.key)));
    assert!(
        e.contains("stonith[0].ca_file:") && e.contains("no PEM certificate"),
        "{e}"
    );
    std::fs::set_permissions(&f.key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let e = refused(
        "https://localhost:1",
        &format!(
            "client_cert_file = {}\nclient_key_file = {}",
            q(&f.cert),
            q(&f.key)
        ),
    );
    assert!(
        e.contains("stonith[0].client_key_file:") && e.contains("mode 0640"),
        "{e}"
    );
}
