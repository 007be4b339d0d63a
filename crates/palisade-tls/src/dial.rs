//! Dialing a witness over mutual TLS from a tonic channel.
//!
//! tonic 0.14 cannot take a rustls config of our own (and ours reads the
//! reloadable store on every handshake), so its channel is given this
//! connector instead: TCP, then the TLS handshake. The channel's endpoint
//! keeps the `http://` scheme (the TLS is here, not tonic's), and its
//! `connect_timeout` bounds connect and handshake together.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rustls_pki_types::ServerName;

/// A connection a tonic channel can use.
pub type Connection =
    hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

type Connecting = Pin<Box<dyn Future<Output = std::io::Result<Connection>> + Send>>;

/// A connector for `Endpoint::connect_with_connector(_lazy)`: dials `addr`
/// (`host:port`) and completes a TLS 1.3 handshake with `config`, checking
/// the server as `server_name` (see [`crate::server_name_for`]).
pub fn connector(
    config: Arc<rustls::ClientConfig>,
    addr: String,
    server_name: ServerName<'static>,
) -> impl tower::Service<http::Uri, Response = Connection, Error = std::io::Error, Future = Connecting>
       + Clone
       + Send
       + 'static {
    let connector = tokio_rustls::TlsConnector::from(config);
    tower::service_fn(move |_uri: http::Uri| -> Connecting {
        let (connector, addr, server_name) = (connector.clone(), addr.clone(), server_name.clone());
        Box::pin(async move {
            let tcp = tokio::net::TcpStream::connect(&addr).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(server_name, tcp).await?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        })
    })
}
