//! Reused gRPC channels to every other witness's peer port, and the calls
//! the daemon makes over them (beyond openraft's own), each a typed method.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_api::v1 as pb;
use palisade_api::v1::witness_peer_client::WitnessPeerClient;
use palisade_core::lease::{Expiry, Grant, Voters};
use palisade_core::{NodeId, SiteId};
use palisade_raft::members::Members;
use palisade_raft::transport::Transport;
use tonic::transport::Channel;

use crate::peer_msgs::{Report, SiteAction, SiteActionDone, SiteActionError};
use crate::peer_pb;

/// Why a peer call failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// No answer in time.
    #[error("witness {0} did not answer within {1:?}")]
    Timeout(NodeId, Duration),
    /// The transport failed or the peer answered with an error status.
    #[error("witness {0}: {1}")]
    Status(NodeId, String),
    /// Not a voter of the cluster.
    #[error("witness {0} is not a voter of the cluster")]
    Unknown(NodeId),
}

/// Channels to every peer's `raft_addr` (where `WitnessPeer` is served):
/// the voters of the current membership, or a fixed list.
#[derive(Clone)]
pub struct Peers {
    inner: Arc<PeersInner>,
}

struct PeersInner {
    /// Where the peers are: the membership, or fixed addresses.
    source: Source,
    transport: Transport,
    connect_timeout: Duration,
    /// Lazily connected channels, by peer and the address they were made for.
    channels: Mutex<BTreeMap<NodeId, (String, Channel)>>,
}

enum Source {
    Members(Members),
    Fixed(BTreeMap<NodeId, String>),
}

impl Peers {
    /// Channels to every other voter of `members`, made when first used
    /// and again when a peer's address changes.
    pub fn new(members: &Members, transport: &Transport, connect_timeout: Duration) -> Self {
        Self::from_source(Source::Members(members.clone()), transport, connect_timeout)
    }

    /// Lazily connected channels to the witnesses at `addrs` (id, peer
    /// address), knowing no sites: the lease guard's renewals.
    pub fn with_addresses<'a>(
        addrs: impl Iterator<Item = (NodeId, &'a str)>,
        transport: &Transport,
        connect_timeout: Duration,
    ) -> Result<Self, tonic::transport::Error> {
        let mut fixed = BTreeMap::new();
        let peers_channels = {
            let mut channels = BTreeMap::new();
            for (id, addr) in addrs {
                channels.insert(
                    id,
                    (
                        addr.to_owned(),
                        transport.channel(id, addr, connect_timeout)?,
                    ),
                );
                fixed.insert(id, addr.to_owned());
            }
            channels
        };
        let peers = Self::from_source(Source::Fixed(fixed), transport, connect_timeout);
        *peers
            .inner
            .channels
            .lock()
            .expect("peer channels lock poisoned") = peers_channels;
        Ok(peers)
    }

    fn from_source(source: Source, transport: &Transport, connect_timeout: Duration) -> Self {
        Self {
            inner: Arc::new(PeersInner {
                source,
                transport: transport.clone(),
                connect_timeout,
                channels: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Every other voter now, with its peer address.
    fn addresses(&self) -> BTreeMap<NodeId, String> {
        match &self.inner.source {
            Source::Members(m) => m
                .topology()
                .peers()
                .map(|(id, w)| (id, w.raft_addr.clone()))
                .collect(),
            Source::Fixed(f) => f.clone(),
        }
    }

    /// The witness (and site agent) of `site`.
    pub fn witness_of(&self, site: &SiteId) -> Option<NodeId> {
        match &self.inner.source {
            Source::Members(m) => m.topology().witness_of(&site.0),
            Source::Fixed(_) => None,
        }
    }

    /// Every other voter.
    pub fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.addresses().into_keys()
    }

    fn client(&self, to: NodeId) -> Result<WitnessPeerClient<Channel>, PeerError> {
        let addr = self.addresses().remove(&to).ok_or(PeerError::Unknown(to))?;
        let mut channels = self
            .inner
            .channels
            .lock()
            .expect("peer channels lock poisoned");
        if let Some((a, ch)) = channels.get(&to) {
            if *a == addr {
                return Ok(WitnessPeerClient::new(ch.clone()));
            }
        }
        let ch = self
            .inner
            .transport
            .channel(to, &addr, self.inner.connect_timeout)
            .map_err(|e| PeerError::Status(to, format!("bad peer address {addr}: {e}")))?;
        channels.insert(to, (addr, ch.clone()));
        Ok(WitnessPeerClient::new(ch))
    }

    /// Asks witness `to` to renew `site`'s lease for `epoch`; its answer,
    /// and the membership it reported with it.
    pub async fn renew_lease(
        &self,
        to: NodeId,
        site: &SiteId,
        epoch: u64,
        timeout: Duration,
    ) -> Result<(Grant, Option<Voters>), PeerError> {
        let mut client = self.client(to)?;
        let req = pb::LeaseRenewal {
            site: site.0.clone(),
            epoch,
        };
        let reply = tokio::time::timeout(timeout, client.renew_lease(req))
            .await
            .map_err(|_| PeerError::Timeout(to, timeout))?
            .map_err(|s| PeerError::Status(to, s.message().to_string()))?;
        let reply = reply.into_inner();
        let voters = crate::lease::voters_from_pb(&reply);
        Ok((crate::lease::grant_from_pb(reply), voters))
    }

    /// Asks witness `to` whether it vouches that `site`'s lease ended, for
    /// the failover of `epoch`.
    pub async fn lease_expiry(
        &self,
        to: NodeId,
        site: &SiteId,
        epoch: u64,
        timeout: Duration,
    ) -> Result<Expiry, PeerError> {
        let mut client = self.client(to)?;
        let req = pb::LeaseExpiryQuery {
            site: site.0.clone(),
            epoch,
        };
        let reply = tokio::time::timeout(timeout, client.lease_expiry(req))
            .await
            .map_err(|_| PeerError::Timeout(to, timeout))?
            .map_err(|s| PeerError::Status(to, s.message().to_string()))?;
        Ok(crate::lease::expiry_from_pb(reply.into_inner()))
    }

    /// Sends this witness's `report` to witness `to` (the leader).
    pub async fn report(
        &self,
        to: NodeId,
        report: &Report,
        timeout: Duration,
    ) -> Result<(), PeerError> {
        let mut client = self.client(to)?;
        tokio::time::timeout(timeout, client.report(peer_pb::report_to_pb(report)))
            .await
            .map_err(|_| PeerError::Timeout(to, timeout))?
            .map_err(|s| PeerError::Status(to, s.message().to_string()))?;
        Ok(())
    }

    /// Asks the site agent of witness `to` to carry out `action`, waiting
    /// at most `timeout` for its answer. The agent finishes an action it
    /// started even when the caller gives up (a fence never stops half-way).
    pub async fn site_action(
        &self,
        to: NodeId,
        action: &SiteAction,
        timeout: Duration,
    ) -> Result<SiteActionDone, SiteActionError> {
        let mut client = self.client(to).map_err(|e| SiteActionError::Protocol {
            witness: to,
            reason: e.to_string(),
        })?;
        let reply =
            tokio::time::timeout(timeout, client.site_action(peer_pb::action_to_pb(action)))
                .await
                .map_err(|_| SiteActionError::Timeout {
                    witness: to,
                    after: timeout,
                })?
                .map_err(|s| site_action_status(to, s))?;
        match peer_pb::reply_from_pb(reply.into_inner()) {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(failure)) => Err(SiteActionError::Agent {
                witness: to,
                failure,
            }),
            Err(e) => Err(SiteActionError::Protocol {
                witness: to,
                reason: format!("unreadable reply: {e}"),
            }),
        }
    }
}

/// A gRPC status in answer to a site action: the witness answers every
/// action it could read with a reply message, so a status is either the
/// transport's or says the request did not fit (a version mismatch).
fn site_action_status(witness: NodeId, s: tonic::Status) -> SiteActionError {
    use tonic::Code;
    match s.code() {
        Code::InvalidArgument | Code::Unimplemented => SiteActionError::Protocol {
            witness,
            reason: format!("request refused as malformed: {}", s.message()),
        },
        code => SiteActionError::Unreachable {
            witness,
            reason: format!("{code:?}: {}", s.message()),
        },
    }
}
