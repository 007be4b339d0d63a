//! Certificates for test clusters, the demo and the chaos worlds: a CA and
//! every witness's and operator's certificate, made with the same code as
//! `palisade cert` (`palisade_tls`), so that everything runs with mutual
//! TLS on, as in production.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use palisade_tls::{CertStore, ExpectOwn, Role, TlsPaths, Validity};
use tonic::transport::{Channel, Endpoint};

/// The operator with the `operator` role every test cluster has.
pub const OPERATOR: &str = "test-operator";
/// The operator with the `viewer` role every test cluster has.
pub const VIEWER: &str = "test-viewer";

/// A cluster's CA and certificates in one directory (`ca.crt`,
/// `witness-<id>.crt`/`.key`, `<operator>.crt`/`.key`).
#[derive(Clone, Debug)]
pub struct TestPki {
    /// The directory: `tls.dir` of every witness's config.
    pub dir: PathBuf,
    /// The cluster name the certificates carry.
    pub cluster: String,
}

impl TestPki {
    /// Creates the CA for `cluster` in `dir`, a certificate for each
    /// `(node id, site)` witness, and the [`OPERATOR`] and [`VIEWER`]
    /// operators.
    pub fn create(dir: &Path, cluster: &str, witnesses: &[(u64, &str)]) -> Result<Self> {
        let validity = Validity::days(365);
        palisade_tls::init_ca(dir, cluster, validity, false)
            .with_context(|| format!("creating a test CA in {}", dir.display()))?;
        for (node, site) in witnesses {
            palisade_tls::issue_witness(dir, dir, *node, site, validity)
                .with_context(|| format!("issuing witness {node}'s certificate"))?;
        }
        palisade_tls::issue_operator(dir, dir, OPERATOR, Role::Operator, validity)?;
        palisade_tls::issue_operator(dir, dir, VIEWER, Role::Viewer, validity)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            cluster: cluster.to_string(),
        })
    }

    /// The `[tls]` section of a witness's config.
    pub fn config_section(&self) -> String {
        format!("\n[tls]\ndir = {:?}\n", self.dir.display().to_string())
    }

    /// An operator's files.
    pub fn operator(&self, name: &str) -> TlsPaths {
        TlsPaths::operator(&self.dir, name)
    }

    /// `palisadectl`'s environment for operator `name`: its certificate,
    /// key and the CA.
    pub fn ctl_env(&self, name: &str) -> Vec<(&'static str, String)> {
        let p = self.operator(name);
        vec![
            ("PALISADE_CERT", p.cert.display().to_string()),
            ("PALISADE_KEY", p.key.display().to_string()),
            ("PALISADE_CA", p.ca_cert.display().to_string()),
        ]
    }

    /// A channel to a control port at `addr` (`host:port`) as operator
    /// `name`, connected eagerly within `connect`; every call bounded by
    /// `call`.
    pub async fn control_channel(
        &self,
        name: &str,
        addr: &str,
        connect: Duration,
        call: Duration,
    ) -> Result<Channel> {
        let store = CertStore::load(self.operator(name), ExpectOwn::Operator { cluster: None })?;
        let config = palisade_tls::client_config_any_witness(store);
        let server_name = rustls_pki_types::ServerName::try_from("witness.palisade")
            .expect("a constant DNS name");
        Ok(Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(connect)
            .timeout(call)
            .connect_with_connector(palisade_tls::dial::connector(
                config,
                addr.to_string(),
                server_name,
            ))
            .await?)
    }

    /// [`TestPki::control_channel`], connected lazily (on the first call;
    /// reconnected after a failure).
    pub fn control_channel_lazy(
        &self,
        name: &str,
        addr: &str,
        connect: Duration,
        call: Duration,
    ) -> Result<Channel> {
        let store = CertStore::load(self.operator(name), ExpectOwn::Operator { cluster: None })?;
        let config = palisade_tls::client_config_any_witness(store);
        let server_name = rustls_pki_types::ServerName::try_from("witness.palisade")
            .expect("a constant DNS name");
        Ok(Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(connect)
            .timeout(call)
            .connect_with_connector_lazy(palisade_tls::dial::connector(
                config,
                addr.to_string(),
                server_name,
            )))
    }

    /// The operator's loaded certificate store.
    pub fn store(&self, name: &str) -> Result<Arc<CertStore>> {
        Ok(CertStore::load(
            self.operator(name),
            ExpectOwn::Operator { cluster: None },
        )?)
    }
}

/// `host:port` of an endpoint URL (`https://host:port`, `http://...`) or
/// an address as is.
pub fn authority(endpoint: &str) -> &str {
    endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest)
        .trim_end_matches('/')
}
