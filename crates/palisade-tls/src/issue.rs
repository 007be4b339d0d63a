//! Certificate tooling: a per-cluster CA and the witness and operator
//! certificates it signs (ECDSA P-256, via rcgen).
//!
//! The cluster name lives in the CA certificate (subject OU), so a leaf can
//! only be issued for the CA's own cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::error::TlsError;
use crate::files::{self, CERT_MODE, KEY_MODE};
use crate::identity::{
    server_name_for, validate_cluster, validate_node, validate_operator_name, validate_site,
    Identity, Role,
};

/// File name of the CA certificate inside a CA or credentials directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// File name of the CA private key (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";

/// How long a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From five minutes ago (tolerating small clock skew between hosts) to
    /// `days` days from now.
    pub fn days(days: u32) -> Self {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - Duration::from_secs(300),
            not_after: now + Duration::from_secs(u64::from(days) * 86_400),
        }
    }

    /// An explicit window (tests use one in the past to make expired certs).
    pub fn between(not_before: OffsetDateTime, not_after: OffsetDateTime) -> Self {
        Validity {
            not_before,
            not_after,
        }
    }
}

/// The two files an issue call wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedFiles {
    /// The PEM certificate (mode 0644).
    pub cert: PathBuf,
    /// The PEM PKCS#8 private key (mode 0600).
    pub key: PathBuf,
}

/// The file stem used for witness `node`'s files: `witness-<node>`.
pub fn witness_file_stem(node: u64) -> String {
    format!("witness-{node}")
}

/// Creates the cluster CA in `dir`: `ca.crt` and `ca.key` (0600).
///
/// Refuses to overwrite an existing `ca.crt` or `ca.key` unless `force`:
/// replacing the CA invalidates every certificate it issued.
pub fn init_ca(
    dir: &Path,
    cluster: &str,
    validity: Validity,
    force: bool,
) -> Result<IssuedFiles, TlsError> {
    validate_cluster(cluster)?;
    let files = IssuedFiles {
        cert: dir.join(CA_CERT_FILE),
        key: dir.join(CA_KEY_FILE),
    };
    if !force {
        for path in [&files.cert, &files.key] {
            if path.exists() {
                return Err(TlsError::AlreadyExists { path: path.clone() });
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| TlsError::io(dir, e))?;

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = ca_subject(cluster);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params.serial_number = Some(random_serial()?);
    let cert = params.self_signed(&key)?;

    // Key first: a crash in between leaves a key without cert, which a
    // retry with force repairs, rather than a cert nobody can sign with.
    files::write_atomic(&files.key, key.serialize_pem().as_bytes(), KEY_MODE)?;
    files::write_atomic(&files.cert, cert.pem().as_bytes(), CERT_MODE)?;
    Ok(files)
}

/// Issues witness `node`'s certificate into `out_dir` as
/// `witness-<node>.crt`/`.key`, signed by the CA in `ca_dir`.
///
/// The certificate carries the URI SAN
/// `palisade://<cluster>/witness/<node>?site=<site>` and the DNS SAN
/// [`server_name_for`]`(cluster, node)`, and is valid for both server and
/// client authentication (a witness dials its peers too). Overwrites an
/// existing certificate: that is how rotation works.
pub fn issue_witness(
    ca_dir: &Path,
    out_dir: &Path,
    node: u64,
    site: &str,
    validity: Validity,
) -> Result<IssuedFiles, TlsError> {
    validate_node(node)?;
    validate_site(site)?;
    let ca = LoadedCa::load(ca_dir)?;
    let identity = Identity::Witness {
        cluster: ca.cluster.clone(),
        node,
        site: site.to_owned(),
    };
    let dns = server_name_for(&ca.cluster, node);
    let mut params = leaf_params(&identity, &dns, validity)?;
    params.subject_alt_names.push(SanType::DnsName(
        dns.clone().try_into().map_err(TlsError::Generate)?,
    ));
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    ca.sign_into(params, out_dir, &witness_file_stem(node))
}

/// Issues operator `name`'s client certificate into `out_dir` as
/// `<name>.crt`/`<name>.key`: URI SAN
/// `palisade://<cluster>/operator/<name>?role=<role>`, CN = `name`,
/// client authentication only.
pub fn issue_operator(
    ca_dir: &Path,
    out_dir: &Path,
    name: &str,
    role: Role,
    validity: Validity,
) -> Result<IssuedFiles, TlsError> {
    validate_operator_name(name)?;
    let ca = LoadedCa::load(ca_dir)?;
    let identity = Identity::Operator {
        cluster: ca.cluster.clone(),
        name: name.to_owned(),
        role,
    };
    let mut params = leaf_params(&identity, name, validity)?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    ca.sign_into(params, out_dir, name)
}

/// The cluster a palisade CA certificate was made for (its subject OU).
pub fn cluster_of_ca(ca_der: &[u8]) -> Result<String, TlsError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(ca_der).map_err(|e| TlsError::BadCertificate {
            reason: e.to_string(),
        })?;
    let ou = cert
        .subject()
        .iter_organizational_unit()
        .next()
        .and_then(|a| a.as_str().ok())
        .ok_or_else(|| TlsError::BadCertificate {
            reason: format!(
                "CA subject {} has no organizational unit naming the cluster",
                cert.subject()
            ),
        })?;
    validate_cluster(ou)?;
    Ok(ou.to_owned())
}

fn ca_subject(cluster: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "palisade");
    dn.push(DnType::OrganizationalUnitName, cluster);
    dn.push(
        DnType::CommonName,
        format!("palisade CA for cluster {cluster}"),
    );
    dn
}

fn leaf_params(
    identity: &Identity,
    common_name: &str,
    validity: Validity,
) -> Result<CertificateParams, TlsError> {
    identity.validate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "palisade");
    dn.push(DnType::OrganizationalUnitName, identity.cluster());
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::URI(identity.uri().try_into()?)];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

/// 16 random bytes, positive and without a leading zero byte, so every
/// certificate (and every re-issue) has a distinct serial.
fn random_serial() -> Result<SerialNumber, TlsError> {
    let mut bytes = [0u8; 16];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(rustls::Error::from)?;
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

struct LoadedCa {
    cluster: String,
    issuer: Issuer<'static, KeyPair>,
}

impl LoadedCa {
    fn load(ca_dir: &Path) -> Result<Self, TlsError> {
        let cert_path = ca_dir.join(CA_CERT_FILE);
        let key_path = ca_dir.join(CA_KEY_FILE);
        let certs = files::read_certs(&cert_path)?;
        let ca_der: &CertificateDer<'_> = &certs[0];
        let cluster = cluster_of_ca(ca_der)?;
        let key_pem = files::read_key(&key_path)?;
        let key_pem = String::from_utf8(key_pem).map_err(|_| TlsError::Pem {
            path: key_path.clone(),
            reason: "not UTF-8 PEM".into(),
        })?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| TlsError::Pem {
            path: key_path.clone(),
            reason: format!("not a usable private key: {e}"),
        })?;
        let (_, parsed) =
            x509_parser::parse_x509_certificate(ca_der).map_err(|e| TlsError::BadCertificate {
                reason: format!("{}: {e}", cert_path.display()),
            })?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(TlsError::KeyMismatch {
                cert: cert_path,
                key: key_path,
                reason: "public keys differ".into(),
            });
        }
        let issuer = Issuer::from_ca_cert_der(ca_der, key)?;
        Ok(LoadedCa { cluster, issuer })
    }

    fn sign_into(
        &self,
        params: CertificateParams,
        out_dir: &Path,
        stem: &str,
    ) -> Result<IssuedFiles, TlsError> {
        std::fs::create_dir_all(out_dir).map_err(|e| TlsError::io(out_dir, e))?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let files = IssuedFiles {
            cert: out_dir.join(format!("{stem}.crt")),
            key: out_dir.join(format!("{stem}.key")),
        };
        // Each file is replaced atomically; a reload between the two renames
        // sees a key that does not match the cert, fails, and keeps the old
        // material, so the next reload picks up the complete pair.
        files::write_atomic(&files.key, key.serialize_pem().as_bytes(), KEY_MODE)?;
        files::write_atomic(&files.cert, cert.pem().as_bytes(), CERT_MODE)?;
        Ok(files)
    }
}
