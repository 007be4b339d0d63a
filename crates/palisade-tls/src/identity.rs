//! Who a certificate names: the palisade identity carried in one URI SAN.
//!
//! Identities live in a URI SAN rather than the subject so that there is one
//! machine-readable place to look, with room for the attributes that matter
//! for authorization (a witness' site, an operator's role). Witness
//! certificates additionally carry a DNS SAN, [`server_name_for`], which is
//! what a client verifies as the server name, so certificates never depend
//! on IP addresses.

use std::fmt;
use std::str::FromStr;

use x509_parser::extensions::GeneralName;

use crate::error::TlsError;

/// The URI scheme (with `//`) of identity SANs.
pub const URI_PREFIX: &str = "palisade://";

/// Longest accepted operator name or site.
const MAX_NAME_LEN: usize = 64;

/// What an operator may do on the control port. Ordered: `Viewer < Operator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Read-only: status, history.
    Viewer,
    /// May also change things: switchover, enable/disable monitors.
    Operator,
}

impl Role {
    /// The spelling used in identity URIs (`role=viewer`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            other => Err(TlsError::InvalidName {
                what: "role",
                value: other.to_owned(),
                reason: "must be \"viewer\" or \"operator\"".into(),
            }),
        }
    }
}

/// The identity a certificate asserts, from its `palisade://` URI SAN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A witness daemon: `palisade://<cluster>/witness/<node>?site=<site>`.
    Witness {
        /// Cluster name (a DNS label).
        cluster: String,
        /// Raft node id, > 0.
        node: u64,
        /// The site this witness runs at.
        site: String,
    },
    /// A human or tool using `palisadectl`:
    /// `palisade://<cluster>/operator/<name>?role=viewer|operator`.
    Operator {
        /// Cluster name (a DNS label).
        cluster: String,
        /// Operator name; also the certificate's CN.
        name: String,
        /// What the operator may do.
        role: Role,
    },
}

impl Identity {
    /// The cluster this identity belongs to.
    pub fn cluster(&self) -> &str {
        match self {
            Identity::Witness { cluster, .. } | Identity::Operator { cluster, .. } => cluster,
        }
    }

    /// The role this identity has on a control port. A witness counts as
    /// [`Role::Operator`]: followers forward control calls to the leader.
    pub fn control_role(&self) -> Role {
        match self {
            Identity::Witness { .. } => Role::Operator,
            Identity::Operator { role, .. } => *role,
        }
    }

    /// The URI SAN that encodes this identity.
    pub fn uri(&self) -> String {
        match self {
            Identity::Witness {
                cluster,
                node,
                site,
            } => format!("{URI_PREFIX}{cluster}/witness/{node}?site={site}"),
            Identity::Operator {
                cluster,
                name,
                role,
            } => format!("{URI_PREFIX}{cluster}/operator/{name}?role={role}"),
        }
    }

    /// Checks every component, so that [`Identity::uri`] parses back to `self`.
    pub fn validate(&self) -> Result<(), TlsError> {
        validate_cluster(self.cluster())?;
        match self {
            Identity::Witness { node, site, .. } => {
                validate_node(*node)?;
                validate_site(site)
            }
            Identity::Operator { name, .. } => validate_operator_name(name),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

/// The DNS name a witness' certificate carries and a client verifies when it
/// dials witness `node` of `cluster`: `witness-<node>.<cluster>.palisade`.
/// Pass it as the TLS server name whatever address you connect to.
pub fn server_name_for(cluster: &str, node: u64) -> String {
    format!("witness-{node}.{cluster}.palisade")
}

/// The identity in a DER certificate: its one `palisade://` URI SAN.
///
/// Errors when the bytes are not a certificate, or it carries no or several
/// palisade URI SANs (the message lists the SANs found), or the URI is
/// malformed. This does not verify the certificate: call it on peer
/// certificates rustls has already verified.
pub fn identity_of(cert_der: &[u8]) -> Result<Identity, TlsError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(cert_der).map_err(|e| TlsError::BadCertificate {
            reason: e.to_string(),
        })?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| TlsError::BadCertificate {
            reason: format!("subject alternative name extension: {e}"),
        })?;
    let names = san
        .map(|ext| ext.value.general_names.as_slice())
        .unwrap_or(&[]);
    let ours: Vec<&str> = names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) if is_palisade_uri(u) => Some(*u),
            _ => None,
        })
        .collect();
    match ours.as_slice() {
        [one] => parse_identity_uri(one),
        [] => Err(TlsError::Identity {
            reason: format!(
                "no {URI_PREFIX} URI SAN; found SANs: [{}]",
                describe_sans(names)
            ),
        }),
        many => Err(TlsError::Identity {
            reason: format!(
                "{} {URI_PREFIX} URI SANs ({}); exactly one is required",
                many.len(),
                many.join(", ")
            ),
        }),
    }
}

fn is_palisade_uri(u: &str) -> bool {
    u.len() >= URI_PREFIX.len()
        && u.is_char_boundary(URI_PREFIX.len())
        && u[..URI_PREFIX.len()].eq_ignore_ascii_case(URI_PREFIX)
}

fn describe_sans(names: &[GeneralName<'_>]) -> String {
    names
        .iter()
        .map(|n| match n {
            GeneralName::URI(u) => format!("URI:{u}"),
            GeneralName::DNSName(d) => format!("DNS:{d}"),
            GeneralName::RFC822Name(m) => format!("email:{m}"),
            other => format!("{other:?}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses `palisade://<cluster>/<kind>/<name>?<key>=<value>` strictly.
pub fn parse_identity_uri(uri: &str) -> Result<Identity, TlsError> {
    let bad = |reason: String| TlsError::Identity {
        reason: format!("malformed identity URI {uri:?}: {reason}"),
    };
    if !uri.starts_with(URI_PREFIX) {
        return Err(bad(format!("must start with {URI_PREFIX}")));
    }
    let rest = &uri[URI_PREFIX.len()..];
    let (path, query) = rest
        .split_once('?')
        .ok_or_else(|| bad("missing ?site= or ?role= query".into()))?;
    let parts: Vec<&str> = path.split('/').collect();
    let [cluster, kind, name] = parts.as_slice() else {
        return Err(bad(format!(
            "path must be <cluster>/<kind>/<name>, found {} segment(s)",
            parts.len()
        )));
    };
    validate_cluster(cluster).map_err(|e| bad(e.to_string()))?;
    let (key, value) = query
        .split_once('=')
        .ok_or_else(|| bad(format!("query {query:?} is not key=value")))?;
    match *kind {
        "witness" => {
            if key != "site" {
                return Err(bad(format!(
                    "witness query key must be site, found {key:?}"
                )));
            }
            let node = parse_node(name).map_err(|e| bad(e.to_string()))?;
            validate_site(value).map_err(|e| bad(e.to_string()))?;
            Ok(Identity::Witness {
                cluster: (*cluster).to_owned(),
                node,
                site: value.to_owned(),
            })
        }
        "operator" => {
            if key != "role" {
                return Err(bad(format!(
                    "operator query key must be role, found {key:?}"
                )));
            }
            validate_operator_name(name).map_err(|e| bad(e.to_string()))?;
            let role = value.parse::<Role>().map_err(|e| bad(e.to_string()))?;
            Ok(Identity::Operator {
                cluster: (*cluster).to_owned(),
                name: (*name).to_owned(),
                role,
            })
        }
        other => Err(bad(format!(
            "unknown kind {other:?} (expected witness or operator)"
        ))),
    }
}

fn parse_node(s: &str) -> Result<u64, TlsError> {
    let invalid = |reason: &str| TlsError::InvalidName {
        what: "node id",
        value: s.to_owned(),
        reason: reason.to_owned(),
    };
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("must be a decimal number"));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(invalid("must not have leading zeros"));
    }
    let node = s
        .parse::<u64>()
        .map_err(|_| invalid("does not fit in u64"))?;
    validate_node(node)?;
    Ok(node)
}

/// A node id must be > 0 (raft ids start at 1).
pub fn validate_node(node: u64) -> Result<(), TlsError> {
    if node == 0 {
        return Err(TlsError::InvalidName {
            what: "node id",
            value: node.to_string(),
            reason: "must be greater than 0".into(),
        });
    }
    Ok(())
}

/// A cluster name must be a DNS label (it is part of [`server_name_for`]):
/// 1–63 of `a-z`, `0-9`, `-`, not starting or ending with `-`.
pub fn validate_cluster(cluster: &str) -> Result<(), TlsError> {
    let invalid = |reason: String| TlsError::InvalidName {
        what: "cluster",
        value: cluster.to_owned(),
        reason,
    };
    common_checks(cluster, 63).map_err(invalid)?;
    if let Some(c) = cluster
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(invalid(format!(
            "contains {c:?}; a cluster name is a DNS label: a-z, 0-9 and '-'"
        )));
    }
    if cluster.starts_with('-') || cluster.ends_with('-') {
        return Err(invalid("must not start or end with '-'".into()));
    }
    Ok(())
}

/// A site: 1–64 of ASCII letters, digits, `.`, `_`, `-`.
pub fn validate_site(site: &str) -> Result<(), TlsError> {
    validate_plain("site", site)
}

/// An operator name: like a site, and also not `ca` and not starting with
/// `witness-` or `.`, since it names the `<name>.crt`/`<name>.key` files
/// written beside the CA and the witnesses' files.
pub fn validate_operator_name(name: &str) -> Result<(), TlsError> {
    validate_plain("operator name", name)?;
    let reserved = name == "ca" || name.starts_with("witness-");
    if reserved {
        return Err(TlsError::InvalidName {
            what: "operator name",
            value: name.to_owned(),
            reason: "is reserved: it would clash with the CA's or a witness' files".into(),
        });
    }
    Ok(())
}

fn validate_plain(what: &'static str, value: &str) -> Result<(), TlsError> {
    let invalid = |reason: String| TlsError::InvalidName {
        what,
        value: value.to_owned(),
        reason,
    };
    common_checks(value, MAX_NAME_LEN).map_err(invalid)?;
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(invalid(format!(
            "contains {c:?}; allowed are ASCII letters, digits, '.', '_' and '-'"
        )));
    }
    if value.starts_with('.') {
        return Err(invalid("must not start with '.'".into()));
    }
    Ok(())
}

/// The checks whose reasons the brief asks to spell out.
fn common_checks(value: &str, max: usize) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.contains('/') {
        return Err("contains '/'".into());
    }
    if value.contains('?') {
        return Err("contains '?'".into());
    }
    if value.chars().any(char::is_whitespace) {
        return Err("contains whitespace".into());
    }
    if value.len() > max {
        return Err(format!(
            "is {} bytes long, at most {max} allowed",
            value.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn witness(node: u64) -> Identity {
        Identity::Witness {
            cluster: "prod".into(),
            node,
            site: "eu-1".into(),
        }
    }

    #[test]
    fn witness_and_operator_uris_round_trip() {
        let w = witness(3);
        assert_eq!(w.uri(), "palisade://prod/witness/3?site=eu-1");
        assert_eq!(parse_identity_uri(&w.uri()).unwrap(), w);
        let o = Identity::Operator {
            cluster: "prod".into(),
            name: "alice".into(),
            role: Role::Viewer,
        };
        assert_eq!(o.uri(), "palisade://prod/operator/alice?role=viewer");
        assert_eq!(parse_identity_uri(&o.uri()).unwrap(), o);
    }

    #[test]
    fn server_name_is_a_dns_name_under_the_cluster() {
        assert_eq!(server_name_for("prod", 2), "witness-2.prod.palisade");
    }

    #[test]
    fn malformed_uris_are_refused_with_the_reason() {
        for (uri, needle) in [
            ("palisade://prod/witness/0?site=a", "greater than 0"),
            ("palisade://prod/witness/01?site=a", "leading zeros"),
            ("palisade://prod/witness/x?site=a", "decimal"),
            ("palisade://prod/witness/1?role=a", "must be site"),
            ("palisade://prod/witness/1", "missing"),
            ("palisade://prod/witness/1?site=", "empty"),
            ("palisade://prod/operator/bob?role=admin", "viewer"),
            ("palisade://prod/ca/x?role=viewer", "unknown kind"),
            ("palisade://Prod/operator/bob?role=viewer", "DNS label"),
            ("palisade://prod/operator/a/b?role=viewer", "segment"),
            ("palisade://prod/operator/a b?role=viewer", "whitespace"),
            ("palisade://prod/operator/ca?role=viewer", "reserved"),
            ("https://prod/operator/bob?role=viewer", "must start"),
        ] {
            let err = parse_identity_uri(uri).expect_err(uri).to_string();
            assert!(err.contains(needle), "{uri}: {err} lacks {needle:?}");
        }
    }

    #[test]
    fn name_validation_names_input_and_reason() {
        let e = validate_site("a/b").unwrap_err().to_string();
        assert!(
            e.contains("site") && e.contains("\"a/b\"") && e.contains("'/'"),
            "{e}"
        );
        let e = validate_operator_name("who?").unwrap_err().to_string();
        assert!(e.contains("operator name") && e.contains("'?'"), "{e}");
        let e = validate_cluster("my cluster").unwrap_err().to_string();
        assert!(e.contains("cluster") && e.contains("whitespace"), "{e}");
        let e = validate_node(0).unwrap_err().to_string();
        assert!(e.contains("node id") && e.contains("greater than 0"), "{e}");
        assert!(validate_cluster("-x").is_err());
        assert!(validate_cluster(&"a".repeat(64)).is_err());
        assert!(validate_cluster("prod-2").is_ok());
    }

    #[test]
    fn control_role_treats_witnesses_as_operators() {
        assert_eq!(witness(1).control_role(), Role::Operator);
        assert!(Role::Viewer < Role::Operator);
    }

    proptest! {
        #[test]
        fn parse_identity_uri_never_panics(s in ".*") {
            let _ = parse_identity_uri(&s);
            let _ = parse_identity_uri(&format!("{URI_PREFIX}{s}"));
        }

        #[test]
        fn valid_witness_identities_round_trip(
            cluster in "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?",
            node in 1u64..,
            site in "[A-Za-z0-9_-][A-Za-z0-9._-]{0,30}",
        ) {
            let id = Identity::Witness { cluster, node, site };
            prop_assert!(id.validate().is_ok());
            prop_assert_eq!(parse_identity_uri(&id.uri()).unwrap(), id);
        }
    }
}
