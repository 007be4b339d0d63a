//! Who may talk to whom, decided from a verified peer identity.

use std::collections::BTreeMap;

use crate::error::TlsError;
use crate::identity::{Identity, Role};

/// What a listener or dialer expects of its peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// A witness' peer port: only witnesses of `cluster` whose (node, site)
    /// is in `members` (from the witness' configuration).
    WitnessPeer {
        /// Our cluster.
        cluster: String,
        /// Allowed node ids and the site each must be at.
        members: BTreeMap<u64, String>,
    },
    /// Exactly one witness: what a client expects of the node it dialed.
    Witness {
        /// Our cluster.
        cluster: String,
        /// The node dialed.
        node: u64,
        /// The site that node must be at.
        site: String,
    },
    /// A control port: operators of `cluster` with at least `min_role`, and
    /// witnesses of `cluster`, which count as [`Role::Operator`] because
    /// followers forward control calls to the leader.
    Control {
        /// Our cluster.
        cluster: String,
        /// The least role accepted (per call: `Viewer` for reads,
        /// `Operator` for changes).
        min_role: Role,
    },
}

/// Accepts `identity` if it is what `expected` allows; the error says why not.
pub fn authorize_peer(identity: &Identity, expected: &Expect) -> Result<(), TlsError> {
    let refuse = |reason: String| {
        Err(TlsError::Unauthorized {
            peer: identity.uri(),
            reason,
        })
    };
    let cluster = match expected {
        Expect::WitnessPeer { cluster, .. }
        | Expect::Witness { cluster, .. }
        | Expect::Control { cluster, .. } => cluster,
    };
    if identity.cluster() != cluster {
        return refuse(format!(
            "belongs to cluster {}, not {cluster}",
            identity.cluster()
        ));
    }
    match (expected, identity) {
        (Expect::WitnessPeer { members, .. }, Identity::Witness { node, site, .. }) => {
            match members.get(node) {
                None => refuse(format!("node {node} is not a configured member")),
                Some(want) if want != site => {
                    refuse(format!("node {node} must be at site {want}, not {site}"))
                }
                Some(_) => Ok(()),
            }
        }
        (
            Expect::Witness {
                node: want_node,
                site: want_site,
                ..
            },
            Identity::Witness { node, site, .. },
        ) => {
            if node != want_node {
                refuse(format!("expected witness {want_node}, got witness {node}"))
            } else if site != want_site {
                refuse(format!(
                    "witness {node} must be at site {want_site}, not {site}"
                ))
            } else {
                Ok(())
            }
        }
        (Expect::WitnessPeer { .. } | Expect::Witness { .. }, Identity::Operator { .. }) => {
            refuse("not a witness: operators may use only the control port".into())
        }
        (Expect::Control { min_role, .. }, id) => {
            let role = id.control_role();
            if role < *min_role {
                refuse(format!("role {role} is below the required {min_role}"))
            } else {
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn witness(cluster: &str, node: u64, site: &str) -> Identity {
        Identity::Witness {
            cluster: cluster.into(),
            node,
            site: site.into(),
        }
    }

    fn operator(cluster: &str, role: Role) -> Identity {
        Identity::Operator {
            cluster: cluster.into(),
            name: "alice".into(),
            role,
        }
    }

    fn members() -> Expect {
        Expect::WitnessPeer {
            cluster: "prod".into(),
            members: BTreeMap::from([(1, "a".into()), (2, "b".into()), (3, "c".into())]),
        }
    }

    fn refusal(id: &Identity, e: &Expect) -> String {
        authorize_peer(id, e)
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn peer_port_accepts_configured_witnesses_only() {
        assert!(authorize_peer(&witness("prod", 2, "b"), &members()).is_ok());
        assert!(refusal(&witness("prod", 2, "a"), &members()).contains("must be at site b"));
        assert!(refusal(&witness("prod", 4, "d"), &members()).contains("not a configured member"));
        assert!(refusal(&witness("test", 2, "b"), &members()).contains("cluster test"));
        assert!(refusal(&operator("prod", Role::Operator), &members()).contains("not a witness"));
    }

    #[test]
    fn dialer_accepts_only_the_witness_it_dialed() {
        let want1 = Expect::Witness {
            cluster: "prod".into(),
            node: 1,
            site: "a".into(),
        };
        assert!(authorize_peer(&witness("prod", 1, "a"), &want1).is_ok());
        assert!(refusal(&witness("prod", 2, "b"), &want1).contains("expected witness 1"));
    }

    #[test]
    fn control_port_checks_cluster_and_role() {
        let write = Expect::Control {
            cluster: "prod".into(),
            min_role: Role::Operator,
        };
        let read = Expect::Control {
            cluster: "prod".into(),
            min_role: Role::Viewer,
        };
        assert!(authorize_peer(&operator("prod", Role::Operator), &write).is_ok());
        assert!(authorize_peer(&operator("prod", Role::Viewer), &read).is_ok());
        assert!(refusal(&operator("prod", Role::Viewer), &write).contains("below"));
        assert!(authorize_peer(&witness("prod", 3, "c"), &write).is_ok());
        assert!(refusal(&operator("other", Role::Operator), &read).contains("cluster other"));
        assert!(refusal(&witness("other", 3, "c"), &read).contains("cluster other"));
    }
}
