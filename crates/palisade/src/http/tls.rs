//! HTTPS for the HTTP listener (`http.tls = true`): the witness's own
//! certificate (the [`CertStore`], so a SIGHUP reload applies to new
//! connections), and an *optional* client certificate verified against the
//! cluster CA. A browser without a certificate (or a load balancer's health
//! check) gets everything the plain listener serves; an operator's
//! certificate with the operator role also gets the console's action
//! controls (`console::actions`). The identity is read from the TLS session
//! of each request's connection, never from the page.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use palisade_tls::{CertStore, Identity, Material};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How long a client has for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many handshakes may be under way at once.
const MAX_HANDSHAKES: usize = 256;

/// Who is on the other end of a request's connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its address.
    pub addr: SocketAddr,
    /// The identity of its verified client certificate; `None`: plain HTTP
    /// or no certificate.
    pub identity: Option<Identity>,
}

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Peer {
            addr: *stream.remote_addr(),
            identity: None,
        }
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// The server config: TLS 1.3, HTTP/1.1, this witness's certificate, a
/// client certificate requested (with the CA as hint) but not required.
pub fn server_config(store: Arc<CertStore>) -> Arc<ServerConfig> {
    let provider = Arc::new(palisade_tls::provider());
    let verifier = Arc::new(OptionalClientCert {
        store: store.clone(),
        provider: provider.clone(),
        cached: Mutex::new(None),
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(OwnCert { store }));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No resumption: a resumed session would keep the identity of the
    // first handshake across a reload (as palisade_tls does).
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Arc::new(config)
}

struct OwnCert {
    store: Arc<CertStore>,
}

impl fmt::Debug for OwnCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OwnCert")
    }
}

impl ResolvesServerCert for OwnCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.store.current().certified_key().clone())
    }
}

/// rustls' WebPKI client verifier over the store's current CA, with
/// unauthenticated clients allowed; rebuilt when the store reloads.
struct OptionalClientCert {
    store: Arc<CertStore>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    cached: Mutex<Option<Verifier>>,
}

/// A verifier and the material it was built from.
type Verifier = (Arc<Material>, Arc<dyn ClientCertVerifier>);

impl fmt::Debug for OptionalClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OptionalClientCert")
    }
}

impl OptionalClientCert {
    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        let material = self.store.current();
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((m, v)) = cached.as_ref() {
            if Arc::ptr_eq(m, &material) {
                return v.clone();
            }
        }
        let mut roots = RootCertStore::empty();
        for ca in material.ca_certs() {
            if let Err(e) = roots.add(ca.clone()) {
                tracing::warn!(error = %e, "http.tls: a CA certificate is not usable as a trust root");
            }
        }
        let verifier: Arc<dyn ClientCertVerifier> =
            match WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                self.provider.clone(),
            )
            .allow_unauthenticated()
            .build()
            {
                Ok(v) => v,
                Err(e) => {
                    // Without a usable CA nobody is authenticated: every
                    // visitor is a viewer.
                    tracing::error!(error = %e, "http.tls: no client certificate can be verified");
                    WebPkiClientVerifier::no_client_auth()
                }
            };
        *cached = Some((material, verifier.clone()));
        verifier
    }
}

impl ClientCertVerifier for OptionalClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // A hint slice cannot borrow from material a reload replaces; the
        // browser offers the certificates it has.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

/// A listener that accepts TCP connections and completes their TLS
/// handshakes concurrently (a slow client holds up nobody), handing axum
/// only the finished ones with their peer's identity.
pub struct TlsListener {
    done: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `tcp` with `config` until `shutdown`.
    pub fn new(
        tcp: TcpListener,
        config: Arc<ServerConfig>,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, done) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let permit = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                };
                let (tcp, addr) = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    a = tcp.accept() => match a {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::debug!(error = %e, "http: accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                        .await
                    {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %addr, error = %e, "http: TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let identity = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| palisade_tls::peer_identity(Some(c)).ok());
                    let _ = tx.send((tls, Peer { addr, identity })).await;
                });
            }
        });
        Ok(Self { done, local })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.done.recv().await {
            Some(c) => c,
            // Shut down: accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer {
            addr: self.local,
            identity: None,
        })
    }
}
