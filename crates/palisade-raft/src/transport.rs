//! How a witness is reached: mutual TLS 1.3 (the default), or plaintext
//! when its configuration says `tls.insecure = true`.
//!
//! Both ports (peer and control) and every client of them (the Raft
//! network, the witnesses' own peer calls, the control port's forwarding,
//! the campaign's pre-votes, the lease guard, `palisadectl`) go through
//! [`Transport`] and [`serve`], so no path can speak plaintext by accident
//! while the cluster runs with TLS.
//!
//! tonic 0.14 takes no rustls config of our own, and ours must be: it reads
//! the reloadable [`CertStore`] on every handshake (a rotated certificate
//! or CA takes effect without a restart). So the client dials through its
//! own connector (TCP, then tokio-rustls), and the server accepts its own
//! connections and hands tonic finished TLS streams; tonic then exposes the
//! peer's certificates to every handler (`Request::peer_certs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::NodeId;
use palisade_tls::{CertStore, Identity};
use rustls_pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

/// How long a client may take to complete its TLS handshake on our ports:
/// a connection that stalls there holds nothing else up (each handshake
/// runs on its own task), and is dropped after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The client side: how this process dials witnesses.
#[derive(Clone)]
pub struct Transport {
    tls: Option<Arc<ClientTls>>,
}

struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    cluster: String,
}

impl Transport {
    /// Plaintext: only for a cluster configured `tls.insecure = true`.
    pub fn plaintext() -> Self {
        Self { tls: None }
    }

    /// Mutual TLS as a witness of `cluster`: presents the store's current
    /// certificate, and accepts only the witness it dialed (the server name
    /// pins cluster and node id).
    pub fn witness(store: Arc<CertStore>, cluster: &str) -> Result<Self, palisade_tls::TlsError> {
        palisade_tls::validate_cluster(cluster)?;
        Ok(Self::with_config(
            palisade_tls::client_config(store),
            cluster,
        ))
    }

    /// Mutual TLS as an operator's CLI: presents the operator certificate,
    /// and accepts any witness of the CA's cluster (the CLI dials an address
    /// and does not know which witness answers there).
    pub fn operator(store: Arc<CertStore>) -> Result<Self, palisade_tls::TlsError> {
        let cluster = store.identity().cluster().to_string();
        palisade_tls::validate_cluster(&cluster)?;
        Ok(Self::with_config(
            palisade_tls::client_config_any_witness(store),
            &cluster,
        ))
    }

    fn with_config(config: Arc<rustls::ClientConfig>, cluster: &str) -> Self {
        Self {
            tls: Some(Arc::new(ClientTls {
                config,
                cluster: cluster.to_string(),
            })),
        }
    }

    /// Whether calls are encrypted and authenticated.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A lazily connected channel to witness `node` at `addr` (`host:port`):
    /// nothing is sent until the first call, and a witness that is down now
    /// is retried later. `connect_timeout` bounds the TCP connect and the
    /// TLS handshake together.
    pub fn channel(
        &self,
        node: NodeId,
        addr: &str,
        connect_timeout: Duration,
    ) -> Result<Channel, tonic::transport::Error> {
        // The scheme stays http: the TLS is the connector's, not tonic's.
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        let Some(tls) = &self.tls else {
            return Ok(endpoint.connect_lazy());
        };
        // The cluster name was checked to be a DNS label when the
        // transport was made, and a node id is digits.
        let name = ServerName::try_from(palisade_tls::server_name_for(&tls.cluster, node))
            .expect("a checked cluster name and a node id make a DNS name");
        Ok(
            endpoint.connect_with_connector_lazy(palisade_tls::dial::connector(
                tls.config.clone(),
                addr.to_string(),
                name,
            )),
        )
    }
}

/// The server side of one port: plaintext, or TLS with this config (built
/// with `palisade_tls::server_config`, whose `allow` already refused every
/// identity that may not use the port).
#[derive(Clone)]
pub enum Listening {
    /// Plaintext (`tls.insecure = true`).
    Plaintext,
    /// Mutual TLS.
    Tls(Arc<rustls::ServerConfig>),
}

/// A gRPC server's task.
pub type ServerTask = tokio::task::JoinHandle<Result<(), tonic::transport::Error>>;

/// Serves `router` on `listener` until `shutdown`. With TLS, each
/// connection's handshake runs on its own task (a slow or hostile client
/// holds up no other), and a refused one is logged at WARN with the
/// client's address and the reason (no certificate, another CA, expired,
/// an identity the port does not admit).
pub fn serve(
    router: tonic::transport::server::Router,
    listener: TcpListener,
    listening: Listening,
    port: &'static str,
    shutdown: CancellationToken,
) -> ServerTask {
    match listening {
        Listening::Plaintext => tokio::spawn(router.serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )),
        Listening::Tls(config) => {
            let incoming = tls_incoming(listener, config, port, shutdown.clone());
            tokio::spawn(router.serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned()))
        }
    }
}

fn tls_incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    port: &'static str,
    shutdown: CancellationToken,
) -> tokio_stream::wrappers::ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tx.closed() => break,
                a = listener.accept() => a,
            };
            let (tcp, addr) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off a
                    // little rather than spin.
                    tracing::warn!(port, error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => refused(port, addr, &e.to_string()),
                    Err(_) => refused(
                        port,
                        addr,
                        &format!("no TLS handshake within {HANDSHAKE_TIMEOUT:?}"),
                    ),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

fn refused(port: &str, addr: SocketAddr, reason: &str) {
    tracing::warn!(
        port,
        client = %addr,
        reason,
        "refused a connection: its TLS handshake failed"
    );
}

/// Who is calling, from the certificate its connection presented: `None`
/// on a plaintext port (nobody is authenticated there). A TLS port
/// admitted the connection only with a valid certificate of this cluster,
/// so a missing one here is a bug, and refused.
pub fn caller<T>(req: &Request<T>, tls: bool) -> Result<Option<Identity>, Status> {
    if !tls {
        return Ok(None);
    }
    let certs = req.peer_certs();
    palisade_tls::peer_identity(certs.as_deref().map(|v| v.as_slice()))
        .map(Some)
        .map_err(|e| Status::unauthenticated(format!("no verified client certificate: {e}")))
}

/// What a witness may send on the peer port: only a witness of this
/// cluster, and only as itself. `claimed` is the node id the message says
/// it comes from (a report's witness, a vote's candidate, an append's
/// leader); `None` when the message names none.
pub fn check_peer<T>(
    req: &Request<T>,
    tls: bool,
    claimed: Option<NodeId>,
) -> Result<Option<Identity>, Status> {
    let Some(identity) = caller(req, tls)? else {
        return Ok(None);
    };
    match (&identity, claimed) {
        (Identity::Witness { node, .. }, Some(c)) if *node != c => Err(Status::permission_denied(
            format!("{} may not speak for witness {c}", identity.uri()),
        )),
        (Identity::Witness { .. }, _) => Ok(Some(identity)),
        _ => Err(Status::permission_denied(format!(
            "{} is not a witness: the peer port admits witnesses only",
            identity.uri()
        ))),
    }
}
