//! The peer RPC client: openraft's `RaftNetwork` over tonic gRPC.
//!
//! One lazily connected channel per peer (mutual TLS unless the cluster
//! is configured insecure, see [`crate::transport`]), reused for every RPC
//! and reconnected by tonic when the peer comes back. Payloads are the serde_json
//! of openraft's own request and reply types; palisade witnesses of one
//! version talk to each other only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use palisade_api::v1::raft_peer_client::RaftPeerClient;
use palisade_api::v1::RaftPayload;
use palisade_core::{NodeId, Witness};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;

use crate::transport::Transport;
use crate::TypeConfig;

/// How long to wait before retrying a peer that was unreachable. Short, so a
/// restarted witness rejoins quickly; each attempt is one cheap RPC.
const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(200);

/// When the leader last heard back from each peer; read by the status report.
#[derive(Clone, Default)]
pub struct PeerContacts {
    inner: Arc<Mutex<HashMap<NodeId, Instant>>>,
}

impl PeerContacts {
    fn touch(&self, peer: NodeId) {
        self.inner
            .lock()
            .expect("contacts lock poisoned")
            .insert(peer, Instant::now());
    }

    /// Time since the last reply from `peer`, if any was ever received.
    pub fn since_last(&self, peer: NodeId) -> Option<Duration> {
        self.inner
            .lock()
            .expect("contacts lock poisoned")
            .get(&peer)
            .map(|t| t.elapsed())
    }
}

/// Builds one [`PeerClient`] per target, reusing channels.
#[derive(Clone)]
pub struct PeerNetwork {
    channels: Arc<Mutex<HashMap<NodeId, (String, Channel)>>>,
    contacts: PeerContacts,
    transport: Transport,
    connect_timeout: Duration,
    rpc_timeout_floor: Duration,
}

impl PeerNetwork {
    /// A network whose RPC replies are recorded in `contacts`. No RPC
    /// times out sooner than `rpc_timeout_floor`.
    pub fn new(
        contacts: PeerContacts,
        transport: Transport,
        connect_timeout: Duration,
        rpc_timeout_floor: Duration,
    ) -> Self {
        Self {
            channels: Arc::default(),
            contacts,
            transport,
            connect_timeout,
            rpc_timeout_floor,
        }
    }

    fn channel(&self, target: NodeId, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut map = self.channels.lock().expect("channels lock poisoned");
        if let Some((a, ch)) = map.get(&target) {
            if a == addr {
                return Ok(ch.clone());
            }
        }
        let ch = self.transport.channel(target, addr, self.connect_timeout)?;
        map.insert(target, (addr.to_string(), ch.clone()));
        Ok(ch)
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Witness) -> Self::Network {
        let channel = self.channel(target, &node.raft_addr).map_err(|e| {
            tracing::warn!(peer = target, addr = %node.raft_addr, error = %e, "bad peer address");
            e.to_string()
        });
        PeerClient {
            target,
            channel,
            contacts: self.contacts.clone(),
            rpc_timeout_floor: self.rpc_timeout_floor,
        }
    }
}

/// RPCs to one peer.
pub struct PeerClient {
    target: NodeId,
    rpc_timeout_floor: Duration,
    /// `Err` when the peer's address could not be turned into an endpoint.
    channel: Result<Channel, String>,
    contacts: PeerContacts,
}

#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("bad peer address: {0}")]
    Address(String),
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Status(#[from] tonic::Status),
    #[error("cannot encode request: {0}")]
    Encode(serde_json::Error),
    #[error("cannot decode reply: {0}")]
    Decode(serde_json::Error),
}

impl CallError {
    /// Unreachable makes openraft back off before retrying; anything else is
    /// retried at once.
    fn into_rpc<E: std::error::Error>(self) -> RPCError<NodeId, Witness, E> {
        match &self {
            CallError::Address(_) | CallError::Timeout(_) => {
                RPCError::Unreachable(Unreachable::new(&self))
            }
            CallError::Status(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                ) =>
            {
                RPCError::Unreachable(Unreachable::new(&self))
            }
            _ => RPCError::Network(NetworkError::new(&self)),
        }
    }
}

enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        ttl: Duration,
    ) -> Result<Result<Resp, E>, CallError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: DeserializeOwned,
    {
        let channel = self.channel.clone().map_err(CallError::Address)?;
        let json = serde_json::to_vec(req).map_err(CallError::Encode)?;
        let mut client = RaftPeerClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
        let payload = RaftPayload { json };
        let fut = async {
            match rpc {
                Rpc::AppendEntries => client.append_entries(payload).await,
                Rpc::Vote => client.vote(payload).await,
                Rpc::InstallSnapshot => client.install_snapshot(payload).await,
            }
        };
        // openraft's deadline follows the heartbeat interval (tens of ms);
        // a busy but healthy peer must not look dead, so never wait less
        // than the floor.
        let ttl = ttl.max(self.rpc_timeout_floor);
        let reply = tokio::time::timeout(ttl, fut)
            .await
            .map_err(|_| CallError::Timeout(ttl))??;
        self.contacts.touch(self.target);
        serde_json::from_slice(&reply.into_inner().json).map_err(CallError::Decode)
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Witness, RaftError<NodeId>>> {
        match self.call(Rpc::AppendEntries, &rpc, option.hard_ttl()).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(self.target, remote))),
            Err(e) => Err(e.into_rpc()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Witness, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self
            .call(Rpc::InstallSnapshot, &rpc, option.hard_ttl())
            .await
        {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(self.target, remote))),
            Err(e) => Err(e.into_rpc()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Witness, RaftError<NodeId>>> {
        match self.call(Rpc::Vote, &rpc, option.hard_ttl()).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(self.target, remote))),
            Err(e) => Err(e.into_rpc()),
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(UNREACHABLE_BACKOFF))
    }
}
