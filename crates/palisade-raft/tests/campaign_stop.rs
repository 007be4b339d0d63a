//! A stopping witness stands for nothing: `election::campaign` returns as
//! soon as it is cancelled, even in the middle of a pre-vote round whose
//! peers have not answered yet, instead of finishing the round (up to the
//! minimum election timeout) and maybe starting an election on the way
//! out (issue 11: a witness that was shutting down won an election while
//! it served nothing).

use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_core::{NodeId, Topology, Witness};
use palisade_raft::election::{self, LeaderContact};
use palisade_raft::network::{PeerContacts, PeerNetwork};
use palisade_raft::transport::Transport;
use palisade_raft::{store, Raft};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The campaign's election timeout: its first pre-vote round starts after
/// about this long, and waits this long for an answer.
const ELECTION: Duration = Duration::from_millis(1500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_campaign_returns_at_once_in_the_middle_of_a_pre_vote() {
    // Two peers that take connections and never answer: the round waits.
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
    }
    let mut witnesses: Vec<(NodeId, Witness)> = vec![(
        1,
        Witness {
            site: "a".into(),
            raft_addr: "127.0.0.1:9".into(),
            // Never served: the control API takes no part here.
            control_addr: "127.0.0.2:9".into(),
        },
    )];
    for (i, l) in silent.iter().enumerate() {
        let addr = l.local_addr().expect("addr");
        witnesses.push((
            i as NodeId + 2,
            Witness {
                site: format!("site-{}", i + 2),
                raft_addr: addr.to_string(),
                control_addr: format!("127.0.0.2:{}", addr.port()),
            },
        ));
    }
    let topology = Topology::new(1, &witnesses).expect("three witnesses");
    let dir = tempfile::tempdir().expect("temp dir");
    let identity = store::StoreIdentity {
        cluster: "test".into(),
        node: 1,
    };
    let (log, sm) = store::open(dir.path(), &identity).expect("store opens");
    let network = PeerNetwork::new(
        PeerContacts::default(),
        Transport::plaintext(),
        Duration::from_millis(500),
        ELECTION,
    );
    let config = openraft::Config {
        enable_elect: false,
        ..Default::default()
    };
    let raft = Raft::new(
        1,
        Arc::new(config.validate().expect("config")),
        network,
        log.clone(),
        sm,
    )
    .await
    .expect("raft starts");
    let term = raft.metrics().borrow().current_term;

    let cancel = CancellationToken::new();
    let campaign = tokio::spawn(election::campaign(
        raft.clone(),
        log,
        palisade_raft::members::Members::new(topology),
        LeaderContact::default(),
        ELECTION,
        ELECTION + Duration::from_millis(1),
        Transport::plaintext(),
        Duration::from_millis(500),
        cancel.clone(),
    ));

    // The round is under way once a pre-vote reached a peer.
    let (held, _) = tokio::time::timeout(ELECTION * 3, silent[0].accept())
        .await
        .expect("a pre-vote round within three election timeouts")
        .expect("accept");
    tokio::time::sleep(Duration::from_millis(100)).await;

    let cancelled_at = Instant::now();
    cancel.cancel();
    tokio::time::timeout(ELECTION, campaign)
        .await
        .expect("the campaign ends")
        .expect("the campaign task does not panic");
    let took = cancelled_at.elapsed();
    assert!(
        took < Duration::from_millis(200),
        "the campaign took {took:?} to stop: it finished its pre-vote round first"
    );
    assert_eq!(
        raft.metrics().borrow().current_term,
        term,
        "no election was started"
    );
    drop(held);
    raft.shutdown().await.expect("raft stops");
}
