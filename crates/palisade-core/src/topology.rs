//! The static shape of a palisade cluster: three (or more, odd) witnesses,
//! one per site, each with the addresses its peers and operators use.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A witness's Raft node id. Stable for the life of the cluster; never reused.
pub type NodeId = u64;

/// A site's short name (`a`, `b`, `dc-east`), as operators write it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SiteId(pub String);

impl fmt::Display for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One witness process: a Raft voter and its site's agent.
///
/// This is also the openraft `Node` type, so it is stored in every membership
/// entry of the log: fields are only ever added, with serde defaults.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Witness {
    /// The site this witness stands for.
    pub site: String,
    /// `host:port` its peers reach its `RaftPeer` gRPC service on.
    pub raft_addr: String,
    /// `host:port` operators reach its `Control` gRPC service on.
    pub control_addr: String,
}

impl fmt::Display for Witness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "site {} (raft {}, control {})",
            self.site, self.raft_addr, self.control_addr
        )
    }
}

/// Why a topology is not usable. `key` names the configuration key at fault
/// in the form the config file uses (`witness[2].raft_addr`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct TopologyError {
    /// The configuration key at fault.
    pub key: String,
    /// Why its value is rejected.
    pub reason: String,
}

impl TopologyError {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// All witnesses of the cluster, by node id, and which one this process is.
///
/// The configured `[[witness]]` list is only the first one: once the cluster
/// runs, the voters are those of the Raft log's membership
/// ([`Topology::from_membership`]), which `palisadectl member` changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// This process's node id.
    pub own_id: NodeId,
    /// Every voter, by node id. This process is among them unless it is
    /// joining (a learner) or was removed.
    pub witnesses: BTreeMap<NodeId, Witness>,
    own: Witness,
}

impl Topology {
    /// Checks a list of `(id, witness)` as written in the config (in file
    /// order, so errors name the entry by its position) and builds the
    /// topology.
    ///
    /// Rules: at least three witnesses and an odd number of them (so that any
    /// majority is a quorum and a two-site split has a tie-breaker); ids
    /// non-zero and unique; sites non-empty and unique; every address a
    /// `host:port` socket address, unique across all witnesses and both
    /// services; `own_id` among them.
    pub fn new(own_id: NodeId, entries: &[(NodeId, Witness)]) -> Result<Self, TopologyError> {
        Self::checked(own_id, entries, true)
    }

    /// [`Topology::new`] for a witness that joins a running cluster
    /// (`raft.join`): its list is the cluster as it will be once this
    /// witness is added, which may be an even number of voters on the way
    /// to the next odd one (`palisadectl member add` twice). It bootstraps
    /// nothing, so the list decides no quorum.
    pub fn joining(own_id: NodeId, entries: &[(NodeId, Witness)]) -> Result<Self, TopologyError> {
        Self::checked(own_id, entries, false)
    }

    fn checked(
        own_id: NodeId,
        entries: &[(NodeId, Witness)],
        odd: bool,
    ) -> Result<Self, TopologyError> {
        if entries.len() < 3 {
            return Err(TopologyError::new(
                "witness",
                format!("{} witness(es) configured; palisade needs at least 3 (one per site, including the tie-breaker)", entries.len()),
            ));
        }
        if odd && entries.len().is_multiple_of(2) {
            return Err(TopologyError::new(
                "witness",
                format!("{} witnesses configured; use an odd number so that a split always leaves one side with a majority", entries.len()),
            ));
        }
        let mut witnesses = BTreeMap::new();
        let mut sites: BTreeMap<&str, usize> = BTreeMap::new();
        let mut addrs: BTreeMap<SocketAddr, String> = BTreeMap::new();
        for (i, (id, w)) in entries.iter().enumerate() {
            let key = |field: &str| format!("witness[{i}].{field}");
            if *id == 0 {
                return Err(TopologyError::new(
                    key("id"),
                    "must be a positive integer (0 is reserved)",
                ));
            }
            if witnesses.contains_key(id) {
                return Err(TopologyError::new(key("id"), format!("duplicate id {id}")));
            }
            if w.site.trim().is_empty() {
                return Err(TopologyError::new(key("site"), "must not be empty"));
            }
            if !w
                .site
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(TopologyError::new(
                    key("site"),
                    format!("{:?} may only contain letters, digits, '-' and '_'", w.site),
                ));
            }
            if let Some(j) = sites.insert(w.site.as_str(), i) {
                return Err(TopologyError::new(
                    key("site"),
                    format!(
                        "site {:?} is already used by witness[{j}]; one witness per site",
                        w.site
                    ),
                ));
            }
            for (field, value) in [
                ("raft_addr", &w.raft_addr),
                ("control_addr", &w.control_addr),
            ] {
                let addr: SocketAddr = value.parse().map_err(|_| {
                    TopologyError::new(key(field), format!("{value:?} is not an IP:port socket address (e.g. \"198.18.1.10:7301\")"))
                })?;
                if addr.port() == 0 {
                    return Err(TopologyError::new(
                        key(field),
                        format!("{value:?}: port 0 is not allowed"),
                    ));
                }
                if let Some(prev) = addrs.insert(addr, key(field)) {
                    return Err(TopologyError::new(
                        key(field),
                        format!("address {addr} is already used by {prev}"),
                    ));
                }
            }
            witnesses.insert(*id, w.clone());
        }
        if !witnesses.contains_key(&own_id) {
            let ids: Vec<String> = witnesses.keys().map(|k| k.to_string()).collect();
            return Err(TopologyError::new(
                "node_id",
                format!(
                    "{own_id} is not the id of any [[witness]] (configured ids: {})",
                    ids.join(", ")
                ),
            ));
        }
        let own = witnesses[&own_id].clone();
        Ok(Self {
            own_id,
            witnesses,
            own,
        })
    }

    /// The voters of a membership read from the Raft log, seen by witness
    /// `own_id` (whose own entry is `own` when it is not among them). Not
    /// checked like [`Topology::new`]: the log is what the cluster agreed on.
    pub fn from_membership(
        own_id: NodeId,
        own: Witness,
        voters: BTreeMap<NodeId, Witness>,
    ) -> Self {
        let own = voters.get(&own_id).cloned().unwrap_or(own);
        Self {
            own_id,
            witnesses: voters,
            own,
        }
    }

    /// This process's own witness entry.
    pub fn own(&self) -> &Witness {
        &self.own
    }

    /// Whether this process is a voter.
    pub fn is_voter(&self) -> bool {
        self.witnesses.contains_key(&self.own_id)
    }

    /// How many voters make a majority.
    pub fn majority(&self) -> usize {
        self.witnesses.len() / 2 + 1
    }

    /// The voter standing for `site`.
    pub fn witness_of(&self, site: &str) -> Option<NodeId> {
        self.witnesses
            .iter()
            .find(|(_, w)| w.site == site)
            .map(|(id, _)| *id)
    }

    /// Every witness but this one.
    pub fn peers(&self) -> impl Iterator<Item = (NodeId, &Witness)> {
        self.witnesses
            .iter()
            .filter(move |(id, _)| **id != self.own_id)
            .map(|(id, w)| (*id, w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(site: &str, port: u16) -> Witness {
        Witness {
            site: site.into(),
            raft_addr: format!("127.0.0.1:{}", 7300 + port),
            control_addr: format!("127.0.0.1:{}", 7400 + port),
        }
    }

    fn three() -> Vec<(NodeId, Witness)> {
        vec![(1, w("a", 1)), (2, w("b", 2)), (3, w("c", 3))]
    }

    #[test]
    fn accepts_three_sites() {
        let t = Topology::new(2, &three()).expect("valid");
        assert_eq!(t.own().site, "b");
        assert_eq!(t.peers().map(|(id, _)| id).collect::<Vec<_>>(), vec![1, 3]);
    }

    #[test]
    fn rejects_own_id_not_among_witnesses() {
        let e = Topology::new(9, &three()).unwrap_err();
        assert_eq!(e.key, "node_id");
        assert!(e.reason.contains("9 is not the id"), "{e}");
    }

    #[test]
    fn rejects_duplicate_id() {
        let mut t = three();
        t[2].0 = 1;
        let e = Topology::new(1, &t).unwrap_err();
        assert_eq!(e.key, "witness[2].id");
        assert!(e.reason.contains("duplicate id 1"));
    }

    #[test]
    fn rejects_duplicate_address_across_services() {
        let mut t = three();
        t[1].1.control_addr = t[0].1.raft_addr.clone();
        let e = Topology::new(1, &t).unwrap_err();
        assert_eq!(e.key, "witness[1].control_addr");
        assert!(e.reason.contains("witness[0].raft_addr"), "{e}");
    }

    #[test]
    fn rejects_bad_address() {
        for bad in [
            "localhost",
            "127.0.0.1",
            "127.0.0.1:99999",
            "nohost:80",
            "127.0.0.1:0",
        ] {
            let mut t = three();
            t[0].1.raft_addr = bad.into();
            let e = Topology::new(1, &t).unwrap_err();
            assert_eq!(e.key, "witness[0].raft_addr", "{bad}");
        }
    }

    #[test]
    fn rejects_duplicate_site_and_even_counts() {
        let mut t = three();
        t[1].1.site = "a".into();
        assert_eq!(Topology::new(1, &t).unwrap_err().key, "witness[1].site");
        let t = three()[..2].to_vec();
        assert!(Topology::new(1, &t)
            .unwrap_err()
            .reason
            .contains("at least 3"));
        let mut t = three();
        t.push((4, w("d", 4)));
        assert!(Topology::new(1, &t)
            .unwrap_err()
            .reason
            .contains("odd number"));
    }
}
