//! Mutual TLS for palisade: identities in certificates, a CA and issuing
//! tools, a hot-reloadable [`CertStore`], and rustls configs built from it.
//!
//! Who may connect is decided in two steps: the handshake proves the peer
//! holds a certificate from the cluster CA (and runs an optional `allow`
//! check), then the caller authorizes per request with [`authorize_peer`]
//! on [`peer_identity`]. Certificates name identities, never IP addresses:
//! a client verifies a witness by [`server_name_for`].
//!
//! One crypto provider, ring (as reqwest and tonic's `tls-ring` feature use),
//! passed explicitly so the process-wide default is irrelevant.

mod authz;
mod config;
pub mod dial;
mod error;
mod files;
mod identity;
mod issue;
mod store;

pub use authz::{authorize_peer, Expect};
pub use config::{
    client_config, client_config_any_witness, peer_identity, server_config,
    server_config_optional_client, ALPN_H2,
};
pub use error::TlsError;
pub use identity::{
    identity_of, parse_identity_uri, server_name_for, validate_cluster, validate_node,
    validate_operator_name, validate_site, Identity, Role, URI_PREFIX,
};
pub use issue::{
    cluster_of_ca, init_ca, issue_operator, issue_witness, witness_file_stem, IssuedFiles,
    Validity, CA_CERT_FILE, CA_KEY_FILE,
};
pub use store::{CertStore, ExpectOwn, Material, TlsPaths};

/// The crypto provider every config here uses: ring.
pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}
