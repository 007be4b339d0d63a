//! [`CertStore`]: the CA, our certificate and key, loaded from files,
//! checked, and swapped atomically on [`CertStore::reload`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use time::OffsetDateTime;

use crate::error::TlsError;
use crate::files;
use crate::identity::{identity_of, server_name_for, Identity};
use crate::issue::{witness_file_stem, CA_CERT_FILE};

/// Where a party's TLS material lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// PEM file with the cluster CA certificate(s); every certificate in it
    /// is trusted (two during a CA rollover).
    pub ca_cert: PathBuf,
    /// PEM file with our certificate (leaf first, then any intermediates).
    pub cert: PathBuf,
    /// PEM file with our private key; must not be accessible by group/other.
    pub key: PathBuf,
}

impl TlsPaths {
    /// The files `issue_witness` writes for `node` in `dir`, with `dir/ca.crt`.
    pub fn witness(dir: &Path, node: u64) -> Self {
        Self::in_dir(dir, &witness_file_stem(node))
    }

    /// The files `issue_operator` writes for `name` in `dir`, with `dir/ca.crt`.
    pub fn operator(dir: &Path, name: &str) -> Self {
        Self::in_dir(dir, name)
    }

    fn in_dir(dir: &Path, stem: &str) -> Self {
        TlsPaths {
            ca_cert: dir.join(CA_CERT_FILE),
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        }
    }
}

/// Which identity our own certificate must carry; checked on every load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectOwn {
    /// A witness daemon: exactly this cluster, node and site (from its config).
    Witness {
        /// Cluster name.
        cluster: String,
        /// Our node id.
        node: u64,
        /// Our site.
        site: String,
    },
    /// `palisadectl`: any operator, of `cluster` if given (`None`: the CLI
    /// learns the cluster from its certificate).
    Operator {
        /// Required cluster, if known.
        cluster: Option<String>,
    },
}

impl ExpectOwn {
    fn accepts(&self, id: &Identity) -> bool {
        match (self, id) {
            (
                ExpectOwn::Witness {
                    cluster,
                    node,
                    site,
                },
                Identity::Witness {
                    cluster: c,
                    node: n,
                    site: s,
                },
            ) => cluster == c && node == n && site == s,
            (ExpectOwn::Operator { cluster }, Identity::Operator { cluster: c, .. }) => {
                cluster.as_ref().is_none_or(|want| want == c)
            }
            _ => false,
        }
    }

    fn describe(&self) -> String {
        match self {
            ExpectOwn::Witness {
                cluster,
                node,
                site,
            } => format!("witness {node} of cluster {cluster} at site {site}"),
            ExpectOwn::Operator { cluster: Some(c) } => format!("an operator of cluster {c}"),
            ExpectOwn::Operator { cluster: None } => "an operator".into(),
        }
    }
}

/// One consistent, checked set of TLS material. Immutable; a reload makes a
/// new one.
pub struct Material {
    identity: Identity,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    serial: Vec<u8>,
    ca_certs: Vec<CertificateDer<'static>>,
    certified_key: Arc<CertifiedKey>,
    pub(crate) client_verifier: Arc<dyn ClientCertVerifier>,
    pub(crate) server_verifier: Arc<WebPkiServerVerifier>,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("identity", &self.identity)
            .field("serial", &self.serial_hex())
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Material {
    /// The identity our certificate carries.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Start of our certificate's validity.
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// End of our certificate's validity (for status output and alerts).
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Our certificate's serial number, big-endian bytes.
    pub fn serial(&self) -> &[u8] {
        &self.serial
    }

    /// Our certificate's serial number as lowercase hex.
    pub fn serial_hex(&self) -> String {
        self.serial.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    /// Our certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.certified_key.cert[0]
    }

    /// The trusted CA certificates, DER.
    pub fn ca_certs(&self) -> &[CertificateDer<'static>] {
        &self.ca_certs
    }

    /// Our certificate chain and signing key, as rustls presents them.
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.certified_key
    }
}

/// The CA, our certificate and key, loaded from [`TlsPaths`] and checked:
/// the key matches the certificate, the certificate chains to the CA, is
/// valid now and carries the [`ExpectOwn`] identity; key files readable by
/// group/other are refused.
///
/// The rustls configs from [`crate::server_config`] and
/// [`crate::client_config`] read the current material on every handshake,
/// so [`CertStore::reload`] takes effect for new connections without a
/// restart; established connections are unaffected.
pub struct CertStore {
    paths: TlsPaths,
    expect: ExpectOwn,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Material>>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("paths", &self.paths)
            .field("expect", &self.expect)
            .field("current", &*self.current())
            .finish_non_exhaustive()
    }
}

impl CertStore {
    /// Loads and checks the files; errors name the file and the problem.
    pub fn load(paths: TlsPaths, expect: ExpectOwn) -> Result<Arc<Self>, TlsError> {
        let provider = Arc::new(crate::provider());
        let material = load_material(&paths, &expect, &provider)?;
        Ok(Arc::new(CertStore {
            paths,
            expect,
            provider,
            current: RwLock::new(Arc::new(material)),
        }))
    }

    /// Re-reads and re-checks the files and, if all is well, swaps the new
    /// material in atomically and returns it. On error the old material
    /// stays in use and the error is returned (the caller logs it: a
    /// half-finished rotation is retryable, see [`TlsError::is_retryable`]).
    pub fn reload(&self) -> Result<Arc<Material>, TlsError> {
        let material = Arc::new(load_material(&self.paths, &self.expect, &self.provider)?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = material.clone();
        tracing::debug!(
            identity = %material.identity,
            serial = %material.serial_hex(),
            not_after = %material.not_after,
            "tls material reloaded"
        );
        Ok(material)
    }

    /// The material in use now.
    pub fn current(&self) -> Arc<Material> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Our identity.
    pub fn identity(&self) -> Identity {
        self.current().identity.clone()
    }

    /// When our certificate expires.
    pub fn not_after(&self) -> OffsetDateTime {
        self.current().not_after
    }

    /// Whole days until our certificate expires (negative once expired).
    pub fn days_left(&self) -> i64 {
        self.days_left_at(OffsetDateTime::now_utc())
    }

    /// [`CertStore::days_left`] as seen at `now`.
    pub fn days_left_at(&self, now: OffsetDateTime) -> i64 {
        (self.not_after() - now).whole_days()
    }

    /// The files this store reads.
    pub fn paths(&self) -> &TlsPaths {
        &self.paths
    }

    /// The crypto provider (ring) the configs use.
    pub(crate) fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }
}

struct LeafInfo {
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    serial: Vec<u8>,
}

fn leaf_info(path: &Path, der: &[u8]) -> Result<LeafInfo, TlsError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::BadCertificate {
            reason: format!("{}: {e}", path.display()),
        })?;
    let validity = cert.validity();
    Ok(LeafInfo {
        not_before: validity.not_before.to_datetime(),
        not_after: validity.not_after.to_datetime(),
        serial: cert.raw_serial().to_vec(),
    })
}

fn check_valid_now(path: &Path, info: &LeafInfo, now: OffsetDateTime) -> Result<(), TlsError> {
    if now < info.not_before || now > info.not_after {
        return Err(TlsError::NotValidNow {
            path: path.to_owned(),
            not_before: info.not_before,
            not_after: info.not_after,
        });
    }
    Ok(())
}

fn load_material(
    paths: &TlsPaths,
    expect: &ExpectOwn,
    provider: &Arc<CryptoProvider>,
) -> Result<Material, TlsError> {
    let now = OffsetDateTime::now_utc();
    let ca_certs = files::read_certs(&paths.ca_cert)?;
    let mut roots = RootCertStore::empty();
    for ca in &ca_certs {
        check_valid_now(&paths.ca_cert, &leaf_info(&paths.ca_cert, ca)?, now)?;
        roots.add(ca.clone()).map_err(|e| TlsError::Pem {
            path: paths.ca_cert.clone(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    let roots = Arc::new(roots);

    let chain = files::read_certs(&paths.cert)?;
    let key = files::read_private_key(&paths.key)?;
    let certified_key = CertifiedKey::from_der(chain.clone(), key, provider).map_err(|e| {
        TlsError::KeyMismatch {
            cert: paths.cert.clone(),
            key: paths.key.clone(),
            reason: e.to_string(),
        }
    })?;
    // from_der tolerates keys whose public half it cannot see; we cannot.
    certified_key
        .keys_match()
        .map_err(|e| TlsError::KeyMismatch {
            cert: paths.cert.clone(),
            key: paths.key.clone(),
            reason: e.to_string(),
        })?;

    let leaf = &chain[0];
    let info = leaf_info(&paths.cert, leaf)?;
    check_valid_now(&paths.cert, &info, now)?;

    let identity = identity_of(leaf)?;
    if !expect.accepts(&identity) {
        return Err(TlsError::UnexpectedIdentity {
            path: paths.cert.clone(),
            expected: expect.describe(),
            found: Box::new(identity),
        });
    }

    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError::Pem {
                path: paths.ca_cert.clone(),
                reason: format!("cannot build a client verifier: {e}"),
            })?;
    let server_verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| TlsError::Pem {
            path: paths.ca_cert.clone(),
            reason: format!("cannot build a server verifier: {e}"),
        })?;

    let untrusted = |e: rustls::Error| TlsError::Untrusted {
        path: paths.cert.clone(),
        ca: paths.ca_cert.clone(),
        reason: e.to_string(),
    };
    let unix_now = UnixTime::now();
    // Every identity authenticates as a client (a witness dials its peers).
    client_verifier
        .verify_client_cert(leaf, &chain[1..], unix_now)
        .map_err(untrusted)?;
    if let Identity::Witness { cluster, node, .. } = &identity {
        let name = ServerName::try_from(server_name_for(cluster, *node))
            .map_err(|e| untrusted(rustls::Error::General(e.to_string())))?;
        server_verifier
            .verify_server_cert(leaf, &chain[1..], &name, &[], unix_now)
            .map_err(untrusted)?;
    }

    Ok(Material {
        identity,
        not_before: info.not_before,
        not_after: info.not_after,
        serial: info.serial,
        ca_certs,
        certified_key: Arc::new(certified_key),
        client_verifier,
        server_verifier,
    })
}
