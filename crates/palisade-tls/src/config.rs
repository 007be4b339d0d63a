//! rustls configs that read the [`CertStore`] on every handshake, so a
//! reload changes what new connections present and trust without a restart.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::error::TlsError;
use crate::identity::{identity_of, Identity};
use crate::store::CertStore;

/// The ALPN protocol both configs offer: gRPC runs over HTTP/2, and tonic's
/// own TLS client insists on `h2` being negotiated.
pub const ALPN_H2: &[u8] = b"h2";

/// A server config for a witness' peer or control port: TLS 1.3 only, our
/// current certificate, and a mandatory client certificate that must chain
/// to the current CA and then pass `allow`.
///
/// `allow` runs inside the handshake on the verified client identity
/// (e.g. `move |id| authorize_peer(id, &expect)`), so refused peers never
/// get a connection; callers should still authorize per request from
/// [`crate::peer_identity`] (a handshake-time check cannot see later
/// membership changes on long-lived connections).
pub fn server_config<F>(store: Arc<CertStore>, allow: F) -> Arc<ServerConfig>
where
    F: Fn(&Identity) -> Result<(), TlsError> + Send + Sync + 'static,
{
    let verifier = Arc::new(StoreClientVerifier {
        store: store.clone(),
        allow: Box::new(allow),
        mandatory: true,
    });
    let mut config = ServerConfig::builder_with_provider(store.provider().clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(StoreServerResolver { store }));
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    disable_server_resumption(&mut config);
    Arc::new(config)
}

/// A server config for a browser-facing HTTPS listener (the witness's
/// console): TLS 1.3, our current certificate, ALPN `http/1.1`, and a
/// client certificate asked for but not required. One that is sent must
/// chain to the current CA (read who it is per request with
/// [`crate::peer_identity`]); a visitor who sends none is anonymous.
pub fn server_config_optional_client(store: Arc<CertStore>) -> Arc<ServerConfig> {
    let verifier = Arc::new(StoreClientVerifier {
        store: store.clone(),
        allow: Box::new(|_| Ok(())),
        mandatory: false,
    });
    let mut config = ServerConfig::builder_with_provider(store.provider().clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(StoreServerResolver { store }));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    disable_server_resumption(&mut config);
    Arc::new(config)
}

/// A client config: TLS 1.3 only, our current certificate as client
/// certificate, and the current CA as the only trust root. Connect with
/// [`crate::server_name_for`]`(cluster, node)` as the server name.
pub fn client_config(store: Arc<CertStore>) -> Arc<ClientConfig> {
    build_client_config(store, false)
}

/// A client config for an operator's CLI, which dials a witness by address
/// without knowing its node id: the server must present the certificate of
/// *some* witness of the CA's cluster, verified (chain and DNS name) as if
/// it had been dialed by that witness's name. Connect with any server name
/// (e.g. [`crate::server_name_for`]`(cluster, 0)`); it is not used.
pub fn client_config_any_witness(store: Arc<CertStore>) -> Arc<ClientConfig> {
    build_client_config(store, true)
}

fn build_client_config(store: Arc<CertStore>, any_witness: bool) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(store.provider().clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
        // "dangerous" only because the verifier is ours: it delegates to
        // rustls' WebPkiServerVerifier built from the store's current CA.
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(StoreServerVerifier {
            store: store.clone(),
            any_witness,
        }))
        .with_client_cert_resolver(Arc::new(StoreClientResolver { store }));
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    // See disable_server_resumption.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// No session resumption: a resumed TLS 1.3 session skips certificate
/// verification and reports the certificates of the original handshake, so
/// a reload (new CA, new certificate, narrowed `allow`) would not apply to
/// it. Our connections are few and long-lived (gRPC over HTTP/2), so full
/// handshakes cost nothing that matters.
fn disable_server_resumption(config: &mut ServerConfig) {
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
}

/// The identity of a connection's peer from its (already verified)
/// certificate chain, as `rustls::CommonState::peer_certificates()` or
/// tonic's `Request::peer_certs()` return it.
pub fn peer_identity(certs: Option<&[CertificateDer<'_>]>) -> Result<Identity, TlsError> {
    match certs.and_then(|c| c.first()) {
        Some(leaf) => identity_of(leaf),
        None => Err(TlsError::Identity {
            reason: "peer presented no certificate".into(),
        }),
    }
}

struct StoreServerResolver {
    store: Arc<CertStore>,
}

impl fmt::Debug for StoreServerResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreServerResolver")
    }
}

impl ResolvesServerCert for StoreServerResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.store.current().certified_key().clone())
    }
}

struct StoreClientResolver {
    store: Arc<CertStore>,
}

impl fmt::Debug for StoreClientResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreClientResolver")
    }
}

impl ResolvesClientCert for StoreClientResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.store.current().certified_key().clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

type Allow = Box<dyn Fn(&Identity) -> Result<(), TlsError> + Send + Sync>;

struct StoreClientVerifier {
    store: Arc<CertStore>,
    allow: Allow,
    /// A client without a certificate is refused (the peer and control
    /// ports), or let in anonymously (the console).
    mandatory: bool,
}

impl fmt::Debug for StoreClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreClientVerifier")
    }
}

fn refused(e: TlsError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

impl ClientCertVerifier for StoreClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    /// No CA hints: a hint slice cannot borrow from material that a reload
    /// may replace, and our clients send their one certificate regardless.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let material = self.store.current();
        let verified =
            material
                .client_verifier
                .verify_client_cert(end_entity, intermediates, now)?;
        let identity = identity_of(end_entity).map_err(refused)?;
        (self.allow)(&identity).map_err(refused)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.store
            .current()
            .client_verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.store
            .current()
            .client_verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.store
            .current()
            .client_verifier
            .supported_verify_schemes()
    }
}

struct StoreServerVerifier {
    store: Arc<CertStore>,
    /// Accept any witness of our own cluster, whatever name was dialed.
    any_witness: bool,
}

impl fmt::Debug for StoreServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreServerVerifier")
    }
}

impl ServerCertVerifier for StoreServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pinned;
        let server_name = if self.any_witness {
            // The name to check is the one the certificate claims, once it
            // is a witness of our cluster; the chain check below then
            // proves the CA issued exactly that name.
            match identity_of(end_entity).map_err(refused)? {
                Identity::Witness { cluster, node, .. }
                    if cluster == self.store.identity().cluster() =>
                {
                    pinned = ServerName::try_from(crate::identity::server_name_for(&cluster, node))
                        .map_err(|e| {
                            refused(TlsError::Identity {
                                reason: format!("witness name is not a DNS name: {e}"),
                            })
                        })?;
                    &pinned
                }
                other => {
                    return Err(refused(TlsError::Unauthorized {
                        peer: other.uri(),
                        reason: format!(
                            "not a witness of cluster {}",
                            self.store.identity().cluster()
                        ),
                    }))
                }
            }
        } else {
            server_name
        };
        let verified = self.store.current().server_verifier.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        // The DNS name already pins cluster and node; also insist on a
        // well-formed witness identity so operators' certs never pass as servers.
        match identity_of(end_entity).map_err(refused)? {
            Identity::Witness { .. } => Ok(verified),
            other => Err(refused(TlsError::Unauthorized {
                peer: other.uri(),
                reason: "a server must present a witness certificate".into(),
            })),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.store
            .current()
            .server_verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.store
            .current()
            .server_verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.store
            .current()
            .server_verifier
            .supported_verify_schemes()
    }
}
