//! Reused gRPC channels to every other witness's peer port, and the calls
//! the daemon makes over them (beyond openraft's own).

use std::collections::BTreeMap;
use std::time::Duration;

use palisade_api::v1 as pb;
use palisade_api::v1::witness_peer_client::WitnessPeerClient;
use palisade_api::v1::RaftPayload;
use palisade_core::lease::{Expiry, Grant};
use palisade_core::{NodeId, SiteId, Topology};
use palisade_raft::network::peer_channel;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;

/// Why a peer call failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// No answer in time.
    #[error("witness {0} did not answer within {1:?}")]
    Timeout(NodeId, Duration),
    /// The transport failed or the peer answered with an error status.
    #[error("witness {0}: {1}")]
    Status(NodeId, String),
    /// Not a configured witness.
    #[error("no witness {0} configured")]
    Unknown(NodeId),
    /// Payload encoding.
    #[error("witness {0}: bad payload: {1}")]
    Payload(NodeId, String),
}

/// Channels to every peer's `raft_addr` (where `WitnessPeer` is served).
#[derive(Clone)]
pub struct Peers {
    channels: BTreeMap<NodeId, Channel>,
    sites: BTreeMap<SiteId, NodeId>,
}

/// Which `WitnessPeer` RPC to call.
#[derive(Clone, Copy, Debug)]
pub enum Rpc {
    /// `Report`.
    Report,
    /// `SiteAction`.
    SiteAction,
}

impl Peers {
    /// Lazily connected channels to every peer of `topology`.
    pub fn new(
        topology: &Topology,
        connect_timeout: Duration,
    ) -> Result<Self, tonic::transport::Error> {
        let mut channels = BTreeMap::new();
        for (id, w) in topology.peers() {
            channels.insert(id, peer_channel(&w.raft_addr, connect_timeout)?);
        }
        let sites = topology
            .witnesses
            .iter()
            .map(|(id, w)| (SiteId(w.site.clone()), *id))
            .collect();
        Ok(Self { channels, sites })
    }

    /// Lazily connected channels to the witnesses at `addrs` (id, peer
    /// address), knowing no sites: the lease guard's renewals.
    pub fn with_addresses<'a>(
        addrs: impl Iterator<Item = (NodeId, &'a str)>,
        connect_timeout: Duration,
    ) -> Result<Self, tonic::transport::Error> {
        let mut channels = BTreeMap::new();
        for (id, addr) in addrs {
            channels.insert(id, peer_channel(addr, connect_timeout)?);
        }
        Ok(Self {
            channels,
            sites: BTreeMap::new(),
        })
    }

    /// The witness (and site agent) of `site`.
    pub fn witness_of(&self, site: &SiteId) -> Option<NodeId> {
        self.sites.get(site).copied()
    }

    /// Every other witness.
    pub fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.channels.keys().copied()
    }

    /// Calls `rpc` on witness `to` with `req`, within `timeout`.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        to: NodeId,
        rpc: Rpc,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let ch = self
            .channels
            .get(&to)
            .ok_or(PeerError::Unknown(to))?
            .clone();
        let json = serde_json::to_vec(req).map_err(|e| PeerError::Payload(to, e.to_string()))?;
        let mut client = WitnessPeerClient::new(ch);
        let payload = RaftPayload { json };
        let fut = async {
            match rpc {
                Rpc::Report => client.report(payload).await,
                Rpc::SiteAction => client.site_action(payload).await,
            }
        };
        let reply = tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| PeerError::Timeout(to, timeout))?
            .map_err(|s| PeerError::Status(to, s.message().to_string()))?;
        serde_json::from_slice(&reply.into_inner().json)
            .map_err(|e| PeerError::Payload(to, e.to_string()))
    }

    fn client(&self, to: NodeId) -> Result<WitnessPeerClient<Channel>, PeerError> {
        self.channels
            .get(&to)
            .map(|ch| WitnessPeerClient::new(ch.clone()))
            .ok_or(PeerError::Unknown(to))
    }

    /// Asks witness `to` to renew `site`'s lease for `epoch`.
    pub async fn renew_lease(
        &self,
        to: NodeId,
        site: &SiteId,
        epoch: u64,
        timeout: Duration,
    ) -> Result<Grant, PeerError> {
        let mut client = self.client(to)?;
        let req = pb::LeaseRenewal {
            site: site.0.clone(),
            epoch,
        };
        let reply = tokio::time::timeout(timeout, client.renew_lease(req))
            .await
            .map_err(|_| PeerError::Timeout(to, timeout))?
            .map_err(|s| PeerError::Status(to, s.message().to_string()))?;
        Ok(crate::lease::grant_from_pb(reply.into_inner()))
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
}
