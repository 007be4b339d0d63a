//! The crate's one error type.

use std::path::PathBuf;

use time::OffsetDateTime;

use crate::identity::Identity;

/// Everything that can go wrong loading, issuing or checking certificates.
///
/// [`TlsError::is_retryable`] tells the one class worth retrying (file I/O,
/// e.g. a rotation caught half-written) from the fatal rest (bad names, a
/// wrong identity, an untrusted or expired certificate, unsafe key modes),
/// which need an operator.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or writing a file failed. The operating system's reason is
    /// part of the message (not a separate source), so that a report of the
    /// whole chain does not say it twice.
    #[error("{path}: {cause}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's reason.
        cause: std::io::Error,
    },
    /// A file holding a private key is accessible by group or other.
    #[error(
        "key file {path} has mode {mode:04o}: it must not be readable or writable by group \
         or other (chmod 600 {path})"
    )]
    InsecureKeyFile {
        /// The key file.
        path: PathBuf,
        /// Its permission bits (`st_mode & 0o7777`).
        mode: u32,
    },
    /// `init_ca` found an existing CA and was not told to overwrite it.
    #[error(
        "{path} already exists: refusing to overwrite an existing CA (use force to replace it)"
    )]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// A cluster, operator name, site or node id is not acceptable.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        /// Which input: "cluster", "operator name", "site", "node id".
        what: &'static str,
        /// The value given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A PEM file could not be parsed or holds the wrong number of items.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate could not be parsed as X.509.
    #[error("malformed certificate: {reason}")]
    BadCertificate {
        /// The parser's complaint.
        reason: String,
    },
    /// A certificate does not carry exactly one well-formed palisade identity.
    #[error("certificate identity: {reason}")]
    Identity {
        /// What was found instead.
        reason: String,
    },
    /// The private key does not belong to the certificate.
    #[error("key {key} does not match certificate {cert}: {reason}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' explanation.
        reason: String,
    },
    /// The certificate does not chain to the CA (or lacks the needed usage or name).
    #[error("{path} is not trusted by CA {ca}: {reason}")]
    Untrusted {
        /// The certificate file.
        path: PathBuf,
        /// The CA file it was checked against.
        ca: PathBuf,
        /// The verifier's explanation.
        reason: String,
    },
    /// A certificate is outside its validity window.
    #[error("{path} is not valid now: valid from {not_before} until {not_after}")]
    NotValidNow {
        /// The certificate file.
        path: PathBuf,
        /// Start of validity.
        not_before: OffsetDateTime,
        /// End of validity.
        not_after: OffsetDateTime,
    },
    /// Our own certificate carries a different identity than configured.
    #[error("{path} holds identity {found}, expected {expected}")]
    UnexpectedIdentity {
        /// The certificate file.
        path: PathBuf,
        /// What the configuration asked for.
        expected: String,
        /// What the certificate says.
        found: Box<Identity>,
    },
    /// A verified peer is not allowed here.
    #[error("peer {peer} refused: {reason}")]
    Unauthorized {
        /// The peer's identity URI.
        peer: String,
        /// Why it is refused.
        reason: String,
    },
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused something (e.g. building a verifier).
    #[error("rustls: {0}")]
    Rustls(#[from] rustls::Error),
}

impl TlsError {
    /// True when trying again later may succeed without a human: only file
    /// I/O errors (e.g. a file being replaced during rotation).
    pub fn is_retryable(&self) -> bool {
        matches!(self, TlsError::Io { .. })
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TlsError::Io {
            path: path.into(),
            cause: source,
        }
    }
}
