//! Real TLS 1.3 handshakes over loopback TCP with tokio-rustls: who gets in,
//! who is refused, and certificate rotation without restart.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{connect, members, ping, raw_client, serial_of, server_leaf, site, EchoServer, Pki};
use palisade_tls::{
    authorize_peer, client_config, identity_of, issue_operator, issue_witness, peer_identity,
    server_config, server_name_for, CertStore, Expect, ExpectOwn, Identity, Role, TlsError,
    TlsPaths, Validity,
};
use time::OffsetDateTime;

fn peer_port(store: Arc<CertStore>) -> Arc<rustls::ServerConfig> {
    let expect = Expect::WitnessPeer {
        cluster: common::CLUSTER.into(),
        members: members(),
    };
    server_config(store, move |id| authorize_peer(id, &expect))
}

fn control_port(store: Arc<CertStore>) -> Arc<rustls::ServerConfig> {
    let expect = Expect::Control {
        cluster: common::CLUSTER.into(),
        min_role: Role::Viewer,
    };
    server_config(store, move |id| authorize_peer(id, &expect))
}

fn w1_name() -> String {
    server_name_for(common::CLUSTER, 1)
}

#[tokio::test]
async fn two_witnesses_handshake_tls13_and_see_each_others_identity() {
    let pki = Pki::new();
    let mut server = EchoServer::start(peer_port(pki.witness(1))).await;
    let mut conn = connect(client_config(pki.witness(2)), server.addr, &w1_name())
        .await
        .expect("witness 2 connects to witness 1");
    ping(&mut conn).await.expect("echo over mutual TLS");

    let client_leaf = server.next_accepted().await.expect("server accepted");
    assert_eq!(
        identity_of(&client_leaf).unwrap(),
        Identity::Witness {
            cluster: "prod".into(),
            node: 2,
            site: site(2)
        }
    );
    let session = conn.get_ref().1;
    assert_eq!(
        session.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(session.alpn_protocol(), Some(palisade_tls::ALPN_H2));
    let server_id = peer_identity(session.peer_certificates()).unwrap();
    let want1 = Expect::Witness {
        cluster: "prod".into(),
        node: 1,
        site: site(1),
    };
    authorize_peer(&server_id, &want1).expect("the dialer got witness 1");
}

#[tokio::test]
async fn operator_reaches_control_port_and_server_sees_role() {
    let pki = Pki::new();
    let mut server = EchoServer::start(control_port(pki.witness(1))).await;
    let mut conn = connect(
        client_config(pki.operator("alice")),
        server.addr,
        &w1_name(),
    )
    .await
    .expect("viewer connects");
    ping(&mut conn).await.expect("echo");
    let id = identity_of(&server.next_accepted().await.unwrap()).unwrap();
    assert_eq!(id.control_role(), Role::Viewer);
    let write = Expect::Control {
        cluster: "prod".into(),
        min_role: Role::Operator,
    };
    let err = authorize_peer(&id, &write).unwrap_err().to_string();
    assert!(err.contains("below"), "{err}");
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let pki = Pki::new();
    let mut server = EchoServer::start(control_port(pki.witness(1))).await;
    let config = raw_client(&pki.path("ca.crt"), None);
    // TLS 1.3: the client finishes its half first; the refusal shows on read.
    let ping_result = match connect(config, server.addr, &w1_name()).await {
        Ok(mut conn) => ping(&mut conn).await,
        Err(e) => Err(e),
    };
    assert!(ping_result.is_err(), "a client without a cert got through");
    let err = server.next_accepted().await.expect_err("server refuses");
    assert!(err.contains("no certificates"), "{err}");
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_refused() {
    let pki = Pki::new();
    let rogue = Pki::new(); // same cluster name, different CA
    let mut server = EchoServer::start(peer_port(pki.witness(1))).await;

    // Trusts the real CA (so the client side is happy) but presents a
    // certificate the rogue CA signed: the server must refuse it.
    let config = raw_client(
        &pki.path("ca.crt"),
        Some((&rogue.path("witness-2.crt"), &rogue.path("witness-2.key"))),
    );
    let result = match connect(config, server.addr, &w1_name()).await {
        Ok(mut conn) => ping(&mut conn).await,
        Err(e) => Err(e),
    };
    assert!(result.is_err(), "a foreign-CA client got through");
    // Both CAs have the same subject (same cluster name), so webpki finds
    // the issuer by name and then fails on the signature.
    let err = server.next_accepted().await.expect_err("server refuses");
    assert!(
        err.contains("invalid peer certificate") && err.contains("BadSignature"),
        "{err}"
    );

    // And a rogue witness with its own store does not trust our server either.
    let result = match connect(client_config(rogue.witness(2)), server.addr, &w1_name()).await {
        Ok(mut conn) => ping(&mut conn).await,
        Err(e) => Err(e),
    };
    let err = result.expect_err("rogue store and our server do not trust each other");
    assert!(
        ["BadSignature", "DecryptError"]
            .iter()
            .any(|s| err.to_string().contains(s)),
        "{err}"
    );
    let _ = server.next_accepted().await;

    // A CA of another cluster name: unknown issuer.
    let staging = Pki::for_cluster("staging");
    let config = raw_client(
        &pki.path("ca.crt"),
        Some((
            &staging.path("witness-2.crt"),
            &staging.path("witness-2.key"),
        )),
    );
    let result = match connect(config, server.addr, &w1_name()).await {
        Ok(mut conn) => ping(&mut conn).await,
        Err(e) => Err(e),
    };
    assert!(result.is_err(), "a staging client got through");
    let err = server.next_accepted().await.expect_err("server refuses");
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn expired_client_certificate_is_refused_and_cannot_be_loaded() {
    let pki = Pki::new();
    let old = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    issue_witness(
        &pki.dir,
        old.path(),
        2,
        &site(2),
        Validity::between(
            now - Duration::from_secs(10 * 86_400),
            now - Duration::from_secs(86_400),
        ),
    )
    .unwrap();
    let mut server = EchoServer::start(peer_port(pki.witness(1))).await;
    let config = raw_client(
        &pki.path("ca.crt"),
        Some((
            &old.path().join("witness-2.crt"),
            &old.path().join("witness-2.key"),
        )),
    );
    let result = match connect(config, server.addr, &w1_name()).await {
        Ok(mut conn) => ping(&mut conn).await,
        Err(e) => Err(e),
    };
    assert!(result.is_err(), "an expired client cert got through");
    let err = server.next_accepted().await.expect_err("server refuses");
    assert!(err.to_lowercase().contains("expired"), "{err}");

    std::fs::copy(pki.path("ca.crt"), old.path().join("ca.crt")).unwrap();
    let err = CertStore::load(
        TlsPaths::witness(old.path(), 2),
        ExpectOwn::Witness {
            cluster: "prod".into(),
            node: 2,
            site: site(2),
        },
    )
    .expect_err("expired cert must not load");
    assert!(matches!(err, TlsError::NotValidNow { .. }), "{err}");
}

#[tokio::test]
async fn witness_2_answering_where_witness_1_is_expected_is_refused() {
    let pki = Pki::new();
    let mut server = EchoServer::start(peer_port(pki.witness(2))).await;
    // Dialing "witness 1" but reaching witness 2: the server name does not match.
    let err = connect(client_config(pki.witness(3)), server.addr, &w1_name())
        .await
        .expect_err("name mismatch must fail");
    assert!(err.to_string().contains("not valid for name"), "{err}");
    let _ = server.next_accepted().await; // the server sees the client's alert

    // And after any handshake, authorize_peer pins the exact witness.
    let w2 = identity_of(
        &std::fs::read(pki.path("witness-2.crt"))
            .map(pem_to_der)
            .unwrap(),
    )
    .unwrap();
    let want1 = Expect::Witness {
        cluster: "prod".into(),
        node: 1,
        site: site(1),
    };
    let err = authorize_peer(&w2, &want1).unwrap_err().to_string();
    assert!(err.contains("expected witness 1, got witness 2"), "{err}");
}

#[tokio::test]
async fn operator_is_refused_on_the_peer_port_during_the_handshake() {
    let pki = Pki::new();
    let mut server = EchoServer::start(peer_port(pki.witness(1))).await;
    let result = match connect(client_config(pki.operator("bob")), server.addr, &w1_name()).await {
        Ok(mut conn) => ping(&mut conn).await,
        Err(e) => Err(e),
    };
    assert!(result.is_err(), "an operator got onto the peer port");
    let err = server.next_accepted().await.expect_err("allow refuses");
    assert!(err.contains("not a witness"), "{err}");
}

#[tokio::test]
async fn operator_of_another_cluster_is_refused_even_when_its_ca_is_trusted() {
    let pki = Pki::new();
    let staging = Pki::for_cluster("staging");
    // A CA bundle trusting both CAs (as during a migration): the chain
    // verifies, so only the cluster check can refuse the staging operator.
    let both = tempfile::tempdir().unwrap();
    let bundle = [
        std::fs::read(pki.path("ca.crt")).unwrap(),
        std::fs::read(staging.path("ca.crt")).unwrap(),
    ]
    .concat();
    std::fs::write(both.path().join("ca.crt"), bundle).unwrap();
    for f in ["witness-1.crt", "witness-1.key"] {
        std::fs::copy(pki.path(f), both.path().join(f)).unwrap();
    }
    let store = CertStore::load(
        TlsPaths::witness(both.path(), 1),
        ExpectOwn::Witness {
            cluster: "prod".into(),
            node: 1,
            site: site(1),
        },
    )
    .unwrap();
    let mut server = EchoServer::start(control_port(store)).await;
    let config = raw_client(
        &pki.path("ca.crt"),
        Some((&staging.path("bob.crt"), &staging.path("bob.key"))),
    );
    let result = match connect(config, server.addr, &w1_name()).await {
        Ok(mut conn) => ping(&mut conn).await,
        Err(e) => Err(e),
    };
    assert!(result.is_err(), "a staging operator got into prod");
    let err = server.next_accepted().await.expect_err("allow refuses");
    assert!(err.contains("belongs to cluster staging"), "{err}");

    // The same operator from prod is fine.
    let mut ok = connect(client_config(pki.operator("bob")), server.addr, &w1_name())
        .await
        .unwrap();
    ping(&mut ok).await.unwrap();
    server.next_accepted().await.unwrap();
}

#[tokio::test]
async fn rotation_new_handshakes_present_the_new_cert_and_old_connections_continue() {
    let pki = Pki::new();
    let store = pki.witness(1);
    let mut server = EchoServer::start(peer_port(store.clone())).await;
    let client = client_config(pki.witness(2));

    let mut before = connect(client.clone(), server.addr, &w1_name())
        .await
        .unwrap();
    ping(&mut before).await.unwrap();
    server.next_accepted().await.unwrap();
    let old_serial = serial_of(&server_leaf(&before));
    assert_eq!(old_serial, store.current().serial());
    let old_not_after = store.not_after();

    // --- step: re-issue witness 1 with a longer validity and reload
    issue_witness(&pki.dir, &pki.dir, 1, &site(1), Validity::days(90)).unwrap();
    let new = store.reload().expect("reload picks up the new cert");
    assert_ne!(new.serial(), old_serial.as_slice());
    assert!(store.not_after() > old_not_after);
    assert!(store.days_left() >= 89, "days_left {}", store.days_left());

    // --- step: a new handshake sees the new certificate
    let mut after = connect(client, server.addr, &w1_name()).await.unwrap();
    ping(&mut after).await.unwrap();
    server.next_accepted().await.unwrap();
    assert_eq!(serial_of(&server_leaf(&after)), new.serial());

    // --- step: the connection made before the rotation still works
    ping(&mut before)
        .await
        .expect("existing connection survives reload");
}

#[tokio::test]
async fn failed_reload_keeps_the_old_material_in_service() {
    let pki = Pki::new();
    let store = pki.witness(1);
    let serial = store.current().serial().to_vec();
    let mut server = EchoServer::start(peer_port(store.clone())).await;

    // A half-finished rotation: the key of another witness next to our cert.
    std::fs::copy(pki.path("witness-2.key"), pki.path("witness-1.key")).unwrap();
    let err = store.reload().expect_err("mismatched key must not load");
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
    std::fs::write(pki.path("witness-1.crt"), "garbage").unwrap();
    let err = store.reload().expect_err("garbage must not load");
    assert!(err.to_string().contains("witness-1.crt"), "{err}");

    assert_eq!(store.current().serial(), serial.as_slice());
    let mut conn = connect(client_config(pki.witness(2)), server.addr, &w1_name())
        .await
        .expect("still serving the old cert");
    ping(&mut conn).await.unwrap();
    server.next_accepted().await.unwrap();
    assert_eq!(serial_of(&server_leaf(&conn)), serial);
}

#[tokio::test]
async fn reissued_operator_role_is_seen_after_client_reload() {
    let pki = Pki::new();
    let mut server = EchoServer::start(control_port(pki.witness(1))).await;
    let alice = pki.operator("alice");
    let config = client_config(alice.clone());
    issue_operator(
        &pki.dir,
        &pki.dir,
        "alice",
        Role::Operator,
        Validity::days(30),
    )
    .unwrap();
    alice.reload().unwrap();
    let mut conn = connect(config, server.addr, &w1_name()).await.unwrap();
    ping(&mut conn).await.unwrap();
    let id = identity_of(&server.next_accepted().await.unwrap()).unwrap();
    assert_eq!(id.control_role(), Role::Operator);
}

fn pem_to_der(pem: Vec<u8>) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(&pem)
        .unwrap()
        .to_vec()
}
