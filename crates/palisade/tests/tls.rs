//! Mutual TLS on a real three-witness cluster: who is refused, and that a
//! refused attempt changes nothing; roles on the control port; the name
//! recorded is the certificate's; certificate rotation without a restart
//! or a leader change.
//!
//! Each hostile client dials with a TLS config of its own making (no
//! certificate, another CA's, an expired one, another witness's), through
//! the same connector the witnesses use.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::Vote;
use palisade_api::v1::raft_peer_client::RaftPeerClient;
use palisade_api::v1::witness_peer_client::WitnessPeerClient;
use palisade_api::v1::{RaftPayload, SiteActionRequest};
use palisade_testkit::cluster::Cluster;
use palisade_testkit::pki::{TestPki, OPERATOR, VIEWER};
use palisade_testkit::{step, wait_for};
use palisade_tls::{CertStore, ExpectOwn, TlsPaths, Validity};
use rustls::pki_types::ServerName;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

const SETTLE: Duration = Duration::from_secs(20);

fn raft_addr(c: &Cluster, id: u64) -> String {
    let config = std::fs::read_to_string(&c.nodes[(id - 1) as usize].config).expect("config");
    let mut addrs = config
        .lines()
        .filter_map(|l| l.strip_prefix("raft_addr = \""))
        .map(|a| a.trim_end_matches('"').to_string());
    addrs.nth((id - 1) as usize).expect("raft_addr")
}

/// A channel to `addr` with exactly this client TLS config, connected
/// eagerly: `Err` is the refusal.
async fn dial(
    config: Arc<rustls::ClientConfig>,
    addr: &str,
    server_name: &str,
) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(3))
        .connect_with_connector(palisade_tls::dial::connector(
            config,
            addr.to_string(),
            ServerName::try_from(server_name.to_string()).expect("dns name"),
        ))
        .await
}

fn roots(pki: &TestPki) -> rustls::RootCertStore {
    let pem = std::fs::read(pki.dir.join("ca.crt")).expect("ca.crt");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.expect("ca pem")).expect("ca cert");
    }
    roots
}

use rustls::pki_types::pem::PemObject;

/// A client that trusts the cluster's CA but presents no certificate.
fn no_certificate(pki: &TestPki) -> Arc<rustls::ClientConfig> {
    let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(palisade_tls::provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls 1.3")
        .with_root_certificates(roots(pki))
        .with_no_client_auth();
    c.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(c)
}

/// A witness's client config from the files in `paths`.
fn as_witness(paths: TlsPaths, node: u64, site: &str, cluster: &str) -> Arc<rustls::ClientConfig> {
    let store = CertStore::load(
        paths,
        ExpectOwn::Witness {
            cluster: cluster.into(),
            node,
            site: site.into(),
        },
    )
    .expect("the certificate loads");
    palisade_tls::client_config(store)
}

/// A forged AppendEntries from "leader 1" in a term well above the
/// cluster's, carrying nothing: accepted, it would depose the leader.
fn forged_append(term: u64) -> RaftPayload {
    let rpc = openraft::raft::AppendEntriesRequest::<palisade_raft::TypeConfig> {
        vote: Vote::new_committed(term + 100, 1),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    };
    RaftPayload {
        json: serde_json::to_vec(&rpc).expect("json"),
    }
}

/// What every witness has applied, as each reports it (log index, term,
/// journal): identical everywhere when nothing was forged in.
fn replicated_views(c: &Cluster) -> Vec<(u64, u64, Vec<String>)> {
    (1..=3)
        .map(|id| {
            let s = c.status(id).expect("status");
            let me = s["nodes"]
                .as_array()
                .and_then(|n| n.iter().find(|n| n["id"].as_u64() == Some(id)).cloned())
                .expect("own node status");
            (
                me["last_applied_index"].as_u64().unwrap_or_default(),
                s["term"].as_u64().unwrap_or_default(),
                c.journal(id).expect("journal"),
            )
        })
        .collect()
}

async fn settled_views(c: &Cluster) -> Vec<(u64, u64, Vec<String>)> {
    wait_for("every witness applied the same log", SETTLE, async || {
        let v = replicated_views(c);
        v.windows(2).all(|w| w[0] == w[1]).then_some(v)
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"))
}

#[tokio::test]
async fn hostile_peers_are_refused_and_change_nothing() {
    let mut c = Cluster::start();
    let (leader, term) = c.wait_for_agreed_leader("initial leader", SETTLE).await;
    c.annotate(leader, "before the attacks");
    let before = settled_views(&c).await;
    let pki = c.pki.clone().expect("a TLS cluster");
    let target = if leader == 1 { 2 } else { 1 };
    let addr = raft_addr(&c, target);
    let name = palisade_tls::server_name_for("test", target);

    step("no client certificate: the handshake is refused");
    let refused = match dial(no_certificate(&pki), &addr, &name).await {
        Err(_) => true,
        // TLS 1.3 may complete the client side before the server's
        // refusal arrives: then the first call fails.
        Ok(ch) => RaftPeerClient::new(ch)
            .append_entries(forged_append(term))
            .await
            .is_err(),
    };
    assert!(refused, "a peer without a certificate got through");
    let refused = match dial(no_certificate(&pki), &addr, &name).await {
        Err(_) => true,
        Ok(ch) => WitnessPeerClient::new(ch)
            .site_action(SiteActionRequest::default())
            .await
            .is_err(),
    };
    assert!(refused, "a site action without a certificate got through");

    step("a certificate from another CA (same cluster name, same witness id)");
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = TestPki::create(other_dir.path(), "test", &[(1, "a"), (2, "b"), (3, "c")])
        .expect("another CA");
    let foreign = as_witness(TlsPaths::witness(other_dir.path(), 3), 3, "c", "test");
    // Our own trust must not decide this: the foreign client trusts only
    // its own CA, so dial with a config that trusts ours but presents theirs.
    let foreign_cert_ours_trusted = {
        let store = CertStore::load(
            TlsPaths {
                ca_cert: pki.dir.join("ca.crt"),
                cert: other_dir.path().join("witness-3.crt"),
                key: other_dir.path().join("witness-3.key"),
            },
            ExpectOwn::Witness {
                cluster: "test".into(),
                node: 3,
                site: "c".into(),
            },
        );
        // The store itself refuses a certificate that does not chain to
        // the CA it is given: the client cannot even be built this way.
        assert!(store.is_err(), "a foreign certificate chained to our CA");
        foreign
    };
    let refused = match dial(foreign_cert_ours_trusted, &addr, &name).await {
        Err(_) => true,
        Ok(ch) => RaftPeerClient::new(ch)
            .append_entries(forged_append(term))
            .await
            .is_err(),
    };
    assert!(refused, "a peer with another CA's certificate got through");
    drop(other);

    step("an expired certificate of the right CA");
    let expired_dir = tempfile::tempdir().expect("tempdir");
    let now = time::OffsetDateTime::now_utc();
    palisade_tls::issue_witness(
        &pki.dir,
        expired_dir.path(),
        3,
        "c",
        Validity::between(
            now - time::Duration::days(10),
            now - time::Duration::days(1),
        ),
    )
    .expect("issue an expired certificate");
    assert!(
        CertStore::load(
            TlsPaths {
                ca_cert: pki.dir.join("ca.crt"),
                cert: expired_dir.path().join("witness-3.crt"),
                key: expired_dir.path().join("witness-3.key"),
            },
            ExpectOwn::Witness {
                cluster: "test".into(),
                node: 3,
                site: "c".into()
            },
        )
        .is_err(),
        "an expired certificate loads"
    );
    let expired = {
        let cert = std::fs::read(expired_dir.path().join("witness-3.crt")).expect("crt");
        let key = std::fs::read(expired_dir.path().join("witness-3.key")).expect("key");
        let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&cert)
            .collect::<Result<Vec<_>, _>>()
            .expect("pem");
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&key).expect("key pem");
        let mut cfg =
            rustls::ClientConfig::builder_with_provider(Arc::new(palisade_tls::provider()))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("tls 1.3")
                .with_root_certificates(roots(&pki))
                .with_client_auth_cert(certs, key)
                .expect("client auth");
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(cfg)
    };
    let refused = match dial(expired, &addr, &name).await {
        Err(_) => true,
        Ok(ch) => RaftPeerClient::new(ch)
            .append_entries(forged_append(term))
            .await
            .is_err(),
    };
    assert!(refused, "a peer with an expired certificate got through");

    step("an operator's certificate on the peer port");
    let operator = {
        let store = pki.store(OPERATOR).expect("operator store");
        palisade_tls::client_config(store)
    };
    let refused = match dial(operator, &addr, &name).await {
        Err(_) => true,
        Ok(ch) => WitnessPeerClient::new(ch)
            .site_action(SiteActionRequest::default())
            .await
            .is_err(),
    };
    assert!(
        refused,
        "an operator's certificate was admitted on the peer port"
    );

    step("witness 3's own certificate, forging leader 1's AppendEntries and a vote");
    let witness3 = as_witness(TlsPaths::witness(&pki.dir, 3), 3, "c", "test");
    let ch = dial(witness3, &addr, &name)
        .await
        .expect("witness 3 may connect to a peer port");
    let err = RaftPeerClient::new(ch.clone())
        .append_entries(forged_append(term))
        .await
        .expect_err("an append claiming to come from witness 1");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message()
            .contains("witness 3 sent an append claiming to come from witness 1"),
        "{err:?}"
    );
    let vote = openraft::raft::VoteRequest::<u64> {
        vote: Vote::new(term + 100, 1),
        last_log_id: None,
    };
    let err = RaftPeerClient::new(ch)
        .vote(RaftPayload {
            json: serde_json::to_vec(&vote).expect("json"),
        })
        .await
        .expect_err("a vote request for witness 1 sent by witness 3");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    step("nothing changed: same leader, same term, same log and journal on every witness");
    let (leader_after, term_after) = c.wait_for_agreed_leader("leader after", SETTLE).await;
    assert_eq!((leader_after, term_after), (leader, term));
    let after = settled_views(&c).await;
    assert_eq!(after, before);

    step("each refusal was recorded in the target's log");
    let log = c.node(target).log_text();
    assert!(
        log.contains("refused a connection: its TLS handshake failed"),
        "no handshake refusal logged"
    );
    assert!(
        log.matches("refused a connection").count() >= 3,
        "not every refused handshake was logged"
    );
}

#[tokio::test]
async fn a_viewer_may_look_but_not_fail_over_and_names_come_from_certificates() {
    let c = Cluster::start();
    let (leader, _) = c.wait_for_agreed_leader("initial leader", SETTLE).await;

    step("a viewer reads status");
    let o = c.ctl_as(leader, VIEWER, &["status", "--output", "json"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert!(
        s["transport"]
            .as_str()
            .is_some_and(|t| t.starts_with("mutual TLS 1.3")),
        "{s}"
    );
    assert_eq!(s["caller"], "operator test-viewer (role viewer)", "{s}");

    step("a viewer asks for a forced failover and a note: refused, nothing recorded");
    let o = c.ctl_as(
        leader,
        VIEWER,
        &[
            "failover",
            "--to",
            "b",
            "--force",
            "--yes-i-accept-data-loss",
            "--yes",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_ne!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("needs the operator role"), "{err}");
    let o = c.ctl_as(leader, VIEWER, &["annotate", "from a viewer"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(!c
        .journal(leader)
        .expect("journal")
        .contains(&"from a viewer".to_string()));
    let log = c.nodes[(leader - 1) as usize].log_text();
    assert!(
        log.contains("refused: a viewer asked for a change")
            && log.contains("palisade://test/operator/test-viewer"),
        "the refusal is not in the log with the viewer's identity"
    );

    step("an operator typing --who ceo@corp is recorded under its certificate's name");
    let o = c.ctl(
        leader,
        &[
            "--who", "ceo@corp", "pause", "--for", "1m", "--reason", "tls test",
        ],
    );
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("--who (or PALISADE_WHO) is not used over TLS"),
        "{stderr}"
    );
    let s = c.status(leader).expect("status");
    assert_eq!(s["maintenance"]["by"], OPERATOR, "{s}");
    // Through a follower too: it forwards, and the leader records the
    // operator the follower authenticated, not the follower.
    let follower = if leader == 1 { 2 } else { 1 };
    let o = c.ctl(follower, &["--who", "ceo@corp", "resume"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = c.ctl(
        follower,
        &["annotate", "forwarded note", "--author", "mallory"],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = c.ctl(leader, &["journal", "--output", "json"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let note = j["entries"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["text"] == "forwarded note").cloned())
        .expect("the forwarded note");
    assert_eq!(note["author"], OPERATOR, "{note}");
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_a_restart_or_a_leader_change() {
    let mut c = Cluster::start();
    let (leader, term) = c.wait_for_agreed_leader("initial leader", SETTLE).await;
    let pki = c.pki.clone().expect("a TLS cluster");
    let rotated = if leader == 1 { 2 } else { 1 };
    let site = ["a", "b", "c"][(rotated - 1) as usize];
    let addr = raft_addr(&c, rotated);
    let name = palisade_tls::server_name_for("test", rotated);
    let serial_of = async |addr: &str| -> Vec<u8> {
        let store = CertStore::load(
            TlsPaths::witness(&pki.dir, 3),
            ExpectOwn::Witness {
                cluster: "test".into(),
                node: 3,
                site: "c".into(),
            },
        )
        .expect("witness 3's certificate");
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
        let tls = tokio_rustls::TlsConnector::from(palisade_tls::client_config(store))
            .connect(ServerName::try_from(name.clone()).expect("dns name"), tcp)
            .await
            .expect("handshake");
        let leaf = tls
            .get_ref()
            .1
            .peer_certificates()
            .expect("server certificate")[0]
            .clone();
        x509_serial(&leaf)
    };
    let old_serial = serial_of(&addr).await;

    step("load: notes through the leader every 50 ms while the certificate rotates");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Notes acknowledged so far: the rotation must happen under load, and
    // load must go on after it.
    let acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let load = {
        let stop = stop.clone();
        let acked = acked.clone();
        let ctl = palisade_testkit::cluster::palisadectl_bin();
        let endpoint = c.nodes[(leader - 1) as usize].control.clone();
        let env = pki.ctl_env(OPERATOR);
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let o = std::process::Command::new(&ctl)
                    .args(["--endpoint", &endpoint, "annotate", &format!("load {n}")])
                    .envs(env.clone())
                    .output()
                    .expect("palisadectl");
                if o.status.code() != Some(0) {
                    failures.push(String::from_utf8_lossy(&o.stderr).to_string());
                } else {
                    acked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                // The load's pace, not a wait on anything.
                std::thread::sleep(Duration::from_millis(50));
            }
            (n, failures)
        })
    };

    step(&format!(
        "re-issue witness {rotated}'s certificate and send SIGHUP"
    ));
    let notes_at_least = async |n: usize, what: &str| {
        wait_for(what, SETTLE, async || {
            (acked.load(std::sync::atomic::Ordering::Relaxed) >= n).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    };
    notes_at_least(3, "three notes acknowledged before the rotation").await;
    palisade_tls::issue_witness(&pki.dir, &pki.dir, rotated, site, Validity::days(60))
        .expect("re-issue");
    c.node(rotated).signal(nix::sys::signal::Signal::SIGHUP);
    let reloaded = wait_for("the reload in the witness's log", SETTLE, async || {
        c.nodes[(rotated - 1) as usize]
            .log_text()
            .contains("SIGHUP: certificates reloaded")
            .then_some(())
    })
    .await;
    reloaded.unwrap_or_else(|e| panic!("{e:#}"));
    let new_serial = serial_of(&addr).await;
    assert_ne!(
        new_serial, old_serial,
        "new connections still get the old certificate"
    );
    let before = acked.load(std::sync::atomic::Ordering::Relaxed);
    notes_at_least(
        before + 3,
        "three more notes acknowledged after the rotation",
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, failures) = load.join().expect("load thread");
    assert!(sent > 5, "the load sent only {sent} notes");
    assert!(
        failures.is_empty(),
        "notes failed during the rotation: {failures:?}"
    );

    step("same leader and term: the rotation cost no election");
    let t0 = Instant::now();
    let (leader_after, term_after) = c.wait_for_agreed_leader("leader after", SETTLE).await;
    assert_eq!(
        (leader_after, term_after),
        (leader, term),
        "after {:?}",
        t0.elapsed()
    );
    // The rotated witness still talks to its peers (new handshakes with its
    // new certificate): a note through it commits.
    c.annotate(rotated, "after the rotation");
}

/// The serial number of a DER certificate.
fn x509_serial(der: &[u8]) -> Vec<u8> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("x509");
    cert.tbs_certificate.raw_serial().to_vec()
}
