//! Effects on the world, each behind a small interface and tested against
//! the real thing: database fencing, promotion and rejoin, the
//! `monitorsEnabled` flip, Elasticsearch and front-door repointing, STONITH.
//! Databases: [`postgres`] (primary/standby), [`mariadb`] (master-master pairs).

pub mod atomic_file;
pub mod command;
pub mod config_file;
pub mod elasticsearch;
pub mod haproxy;
pub mod key_value;
pub mod mariadb;
pub mod monitors;
pub mod postgres;
pub mod retry;
pub mod webhook;

/// Applies the TLS keys of a client palisade drives (`ca_file`,
/// `client_cert_file`, `client_key_file`) to an HTTP client: with a CA
/// bundle, its certificates become the only trusted roots (the built-in
/// public roots are switched off, as libpq's `sslrootcert` does); with a
/// client identity, the client presents it when the server asks. Fails on
/// PEM that holds no usable certificate or key. (palisade-probe has the
/// same function for its Elasticsearch probe.)
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
