//! Health probes. Every witness runs them against every target from its own
//! site; a probe never fails, it returns what it saw (see
//! `palisade_core::observe`).
//!
//! Only building a probe can fail ([`ProbeConfigError`]): a DSN or URL that
//! cannot work is a configuration mistake to report at start-up, not an
//! outage to observe forever.
//!
//! * [`postgres`]: PostgreSQL role, WAL positions and replication state.
//! * [`mariadb`]: a MariaDB master-master pair's server: `read_only`,
//!   binary log and GTID positions, replication from the other master.
//! * [`http`]: an app server's HTTP health endpoint.
//! * [`elasticsearch`]: `_cluster/health` of an Elasticsearch node.
//! * [`tcp`]: whether anything accepts connections on a port.

use std::io;
use std::time::Duration;

use palisade_core::observe::ErrorClass;

pub mod elasticsearch;
pub mod http;
pub mod mariadb;
pub mod postgres;
pub mod tcp;

/// A probe that cannot be built from its configuration. Fatal: retrying
/// with the same input fails the same way.
#[derive(Debug, thiserror::Error)]
pub enum ProbeConfigError {
    /// The PostgreSQL DSN does not parse. `dsn` has its password redacted.
    #[error("invalid PostgreSQL DSN {dsn:?}: {reason}")]
    InvalidDsn {
        /// The DSN as given, password replaced by `***`.
        dsn: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The MariaDB/MySQL DSN does not parse or is not `mysql://` /
    /// `mariadb://`. `dsn` has its password redacted.
    #[error("invalid MariaDB DSN {dsn:?}: {reason}")]
    InvalidMysqlDsn {
        /// The DSN as given, password replaced by `***`.
        dsn: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The URL does not parse or is not `http`/`https`. `url` has its
    /// password redacted.
    #[error("invalid probe URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given, password replaced by `***`.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A probe timeout of zero would report every target as down.
    #[error("invalid probe timeout {timeout:?} for {target:?}: must be greater than zero")]
    ZeroTimeout {
        /// The probe's target (redacted DSN or URL).
        target: String,
        /// The timeout given.
        timeout: Duration,
    },
    /// The HTTP client could not be built (e.g. the TLS backend failed to
    /// initialise).
    #[error("cannot build the HTTP client for {url:?}: {reason}")]
    HttpClient {
        /// The URL the client was for, password redacted.
        url: String,
        /// What the HTTP library said.
        reason: String,
    },
}

/// Classifies a socket error: `Refused` means the host answered and nothing
/// listens; `Timeout` covers every way of getting no answer from the host,
/// including an unreachable host or network (a down host or a partition,
/// which is what `Timeout` stands for in decisions).
pub(crate) fn classify_io(err: &io::Error) -> ErrorClass {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => ErrorClass::Refused,
        io::ErrorKind::TimedOut
        | io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable => ErrorClass::Timeout,
        _ => ErrorClass::Other,
    }
}

/// Finds the first `io::Error` in an error's source chain.
pub(crate) fn find_io_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a io::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io);
        }
        current = e.source();
    }
    None
}

/// Applies `[[elasticsearch]]`'s TLS keys to an HTTP client: with a CA
/// bundle, its certificates become the only trusted roots (the built-in
/// public roots are switched off, as libpq's `sslrootcert` does); with a
/// client identity, the client presents it when the server asks. Fails on
/// PEM that holds no usable certificate or key. (palisade-actions has the
/// same function for the clients it builds.)
pub fn with_client_tls(
    mut builder: reqwest::ClientBuilder,
    tls: &palisade_core::secret::ClientTls,
) -> Result<reqwest::ClientBuilder, reqwest::Error> {
    if let Some(pem) = &tls.ca_pem {
        builder = builder.tls_built_in_root_certs(false);
        for cert in reqwest::Certificate::from_pem_bundle(pem.as_bytes())? {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let Some(pem) = &tls.identity_pem {
        builder = builder.identity(reqwest::Identity::from_pem(pem.expose().as_bytes())?);
    }
    Ok(builder)
}

/// Milliseconds in `d`, saturating (observations carry whole milliseconds).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Replaces the password of a URL-style DSN or URL
/// (`scheme://user:password@host/...`, and a `password=` query parameter)
/// with `***`, so errors and logs can name the target safely.
pub fn redact(target: &str) -> String {
    let mut out = target.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let auth_start = scheme_end + 3;
        let auth_end = out[auth_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| auth_start + i);
        if let Some(at) = out[auth_start..auth_end].rfind('@') {
            let userinfo = &out[auth_start..auth_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(auth_start + colon + 1..auth_start + at, "***");
            }
        }
    }
    // Query parameter form (`?password=...`, `&password=...`).
    let mut search_from = 0;
    while let Some(found) = out[search_from..].find("password=") {
        let start = search_from + found;
        let preceded_ok = start == 0 || matches!(out.as_bytes()[start - 1], b'?' | b'&' | b' ');
        let value_start = start + "password=".len();
        let value_end = out[value_start..]
            .find(['&', '#', ' '])
            .map_or(out.len(), |i| value_start + i);
        if preceded_ok {
            out.replace_range(value_start..value_end, "***");
            search_from = value_start + 3;
        } else {
            search_from = value_start;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords_and_keeps_the_rest() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("postgres://h/db?user=u&password=pw&sslmode=disable"),
            "postgres://h/db?user=u&password=***&sslmode=disable"
        );
        assert_eq!(redact("http://a:b:c@host/x?y=1"), "http://a:***@host/x?y=1");
        assert_eq!(redact("not a url"), "not a url");
        assert_eq!(
            redact("host=h password=pw user=u"),
            "host=h password=*** user=u"
        );
        assert_eq!(redact("postgres://u:p@ss@h/db"), "postgres://u:***@h/db");
    }

    #[test]
    fn io_errors_are_classified_by_kind() {
        let e = |kind| io::Error::new(kind, "x");
        assert_eq!(
            classify_io(&e(io::ErrorKind::ConnectionRefused)),
            ErrorClass::Refused
        );
        assert_eq!(
            classify_io(&e(io::ErrorKind::TimedOut)),
            ErrorClass::Timeout
        );
        assert_eq!(
            classify_io(&e(io::ErrorKind::HostUnreachable)),
            ErrorClass::Timeout
        );
        assert_eq!(
            classify_io(&e(io::ErrorKind::ConnectionReset)),
            ErrorClass::Other
        );
    }
}
