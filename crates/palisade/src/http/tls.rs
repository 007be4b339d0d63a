//! HTTPS for the HTTP listener (`http.tls = true`): the witness's own
//! certificate (the [`CertStore`], so a SIGHUP reload applies to new
//! connections), and an *optional* client certificate verified against the
//! cluster CA. A browser without a certificate (or a load balancer's health
//! check) gets everything the plain listener serves; an operator's
//! certificate with the operator role also gets the console's action
//! controls (`console::actions`). The identity is read from the TLS session
//! of each request's connection, never from the page.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use palisade_tls::{CertStore, Identity};
use rustls::ServerConfig;
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
/// client certificate requested but not required (palisade_tls).
pub fn server_config(store: Arc<CertStore>) -> Arc<ServerConfig> {
    palisade_tls::server_config_optional_client(store)
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
