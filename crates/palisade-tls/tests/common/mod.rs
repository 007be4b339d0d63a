//! Shared fixtures: a cluster PKI in a tempdir, a loopback TLS echo server
//! and clients, all bounded by timeouts.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use palisade_tls::{
    init_ca, issue_operator, issue_witness, CertStore, ExpectOwn, Role, TlsPaths, Validity,
};
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::{client, TlsAcceptor, TlsConnector};

pub const CLUSTER: &str = "prod";
const STEP: Duration = Duration::from_secs(10);

pub fn site(node: u64) -> String {
    ["a", "b", "c", "d"][(node - 1) as usize].to_owned()
}

pub fn members() -> BTreeMap<u64, String> {
    (1..=3).map(|n| (n, site(n))).collect()
}

/// A CA for `cluster`, three witnesses, viewer `alice` and operator `bob`,
/// all in one directory (as a test deployment would lay them out).
pub struct Pki {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub cluster: String,
}

impl Pki {
    pub fn new() -> Self {
        Self::for_cluster(CLUSTER)
    }

    pub fn for_cluster(cluster: &str) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_owned();
        init_ca(&dir, cluster, Validity::days(3650), false).expect("init_ca");
        for node in 1..=3 {
            issue_witness(&dir, &dir, node, &site(node), Validity::days(30)).expect("witness");
        }
        issue_operator(&dir, &dir, "alice", Role::Viewer, Validity::days(30)).expect("viewer");
        issue_operator(&dir, &dir, "bob", Role::Operator, Validity::days(30)).expect("operator");
        Pki {
            _tmp: tmp,
            dir,
            cluster: cluster.to_owned(),
        }
    }

    pub fn witness(&self, node: u64) -> Arc<CertStore> {
        CertStore::load(
            TlsPaths::witness(&self.dir, node),
            ExpectOwn::Witness {
                cluster: self.cluster.clone(),
                node,
                site: site(node),
            },
        )
        .expect("load witness store")
    }

    pub fn operator(&self, name: &str) -> Arc<CertStore> {
        CertStore::load(
            TlsPaths::operator(&self.dir, name),
            ExpectOwn::Operator {
                cluster: Some(self.cluster.clone()),
            },
        )
        .expect("load operator store")
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

/// A client config that bypasses CertStore so tests can present any
/// certificate (or none): trusts `ca`, TLS 1.3, h2.
pub fn raw_client(ca: &Path, cert_and_key: Option<(&Path, &Path)>) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(ca).expect("ca pem") {
        roots.add(ca.expect("ca cert")).expect("add root");
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(palisade_tls::provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(roots);
    let mut config = match cert_and_key {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .expect("cert pem")
                .collect::<Result<Vec<_>, _>>()
                .expect("certs");
            let key = PrivateKeyDer::from_pem_file(key).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
    };
    config.alpn_protocols = vec![palisade_tls::ALPN_H2.to_vec()];
    Arc::new(config)
}

/// Outcome of one accepted connection: the client's leaf cert, or the
/// handshake error text.
pub type Accepted = Result<CertificateDer<'static>, String>;

/// A TLS echo server on 127.0.0.1 reporting each handshake.
pub struct EchoServer {
    pub addr: SocketAddr,
    accepted: mpsc::UnboundedReceiver<Accepted>,
    task: JoinHandle<()>,
}

impl EchoServer {
    pub async fn start(config: Arc<ServerConfig>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let acceptor = TlsAcceptor::from(config);
        let (tx, accepted) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                conns.spawn(async move {
                    let mut tls = match acceptor.accept(tcp).await {
                        Ok(tls) => tls,
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let leaf = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| c.clone().into_owned());
                    let _ = tx.send(leaf.ok_or_else(|| "no peer certificate".to_owned()));
                    let mut buf = [0u8; 64];
                    while let Ok(n) = tls.read(&mut buf).await {
                        if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        EchoServer {
            addr,
            accepted,
            task,
        }
    }

    /// The next handshake outcome, waiting at most 10 s.
    pub async fn next_accepted(&mut self) -> Accepted {
        tokio::time::timeout(STEP, self.accepted.recv())
            .await
            .expect("server reports a handshake within 10 s")
            .expect("server task alive")
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn connect(
    config: Arc<ClientConfig>,
    addr: SocketAddr,
    server_name: &str,
) -> std::io::Result<client::TlsStream<TcpStream>> {
    let name = ServerName::try_from(server_name.to_owned()).expect("server name");
    tokio::time::timeout(STEP, async {
        let tcp = TcpStream::connect(addr).await?;
        TlsConnector::from(config).connect(name, tcp).await
    })
    .await
    .map_err(|_| std::io::Error::other("connect timed out"))?
}

/// Writes "ping" and expects it echoed; in TLS 1.3 a server's refusal of
/// the client certificate surfaces here, on the client's first read.
pub async fn ping(stream: &mut client::TlsStream<TcpStream>) -> std::io::Result<()> {
    tokio::time::timeout(STEP, async {
        stream.write_all(b"ping").await?;
        stream.flush().await?;
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await?;
        if &buf != b"ping" {
            return Err(std::io::Error::other(format!("echo mismatch: {buf:?}")));
        }
        Ok(())
    })
    .await
    .map_err(|_| std::io::Error::other("ping timed out"))?
}

/// The server certificate a client connection saw.
pub fn server_leaf(stream: &client::TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("server presented a certificate")
        .clone()
        .into_owned()
}

pub fn serial_of(der: &[u8]) -> Vec<u8> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("parse cert");
    cert.raw_serial().to_vec()
}
