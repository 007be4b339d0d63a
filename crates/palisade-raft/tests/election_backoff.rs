//! openraft 0.9's sticky smaller-log backoff, reproduced on a real
//! in-process cluster of three palisade Raft nodes (durable redb logs in
//! temporary directories, the tonic peer service on loopback), and the
//! proof that palisade's own elections (`election::campaign`, after a
//! pre-vote) are not held back by it.
//!
//! The mechanism, in openraft 0.9.25:
//!
//! * `engine/engine_impl.rs:388-396` (`Engine::handle_vote_resp`): a
//!   candidate whose vote request is refused by a peer with a greater last
//!   log id sets `seen_greater_log`.
//! * `core/raft_core.rs:1481-1483` (`RaftCore::handle_tick_election`): while
//!   that flag is set, the election timer waits `smaller_log_timeout`
//!   (`engine/engine_config.rs:55`: 2 × `election_timeout_max`) longer.
//! * `core/raft_core.rs:1503`: the flag is cleared only when that timer
//!   fires and the node stands again. A follower that caught up and follows
//!   a leader keeps it: at every later leader loss its timer runs
//!   `leader_lease + election_timeout + smaller_log_timeout`, at least
//!   `3 × max + min`, and the other survivor's `leader_lease +
//!   election_timeout`, below `2 × max`, always runs out first. So it never
//!   stands, never clears the flag, and never wins, until it restarts.
//!   openraft pull request 2087 (in 0.10.0-alpha.37) applies the backoff
//!   only while the node's log is still behind the one it saw.
//!
//! palisade runs openraft with `enable_elect = false`: `handle_tick_election`
//! returns before it reads (or clears) the flag, and `campaign` starts
//! elections through `Raft::trigger().elect()` (`ExternalCommand::Elect` →
//! `Engine::elect`), which never reads it. The test pins that.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::ServerState;
use palisade_api::v1::raft_peer_server::RaftPeerServer;
use palisade_core::{Command, NodeId, Topology, Witness};
use palisade_raft::election::{self, LeaderContact};
use palisade_raft::network::{PeerContacts, PeerNetwork};
use palisade_raft::server::PeerService;
use palisade_raft::store::{self, LogStore};
use palisade_raft::transport::Transport;
use palisade_raft::Raft;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

const HEARTBEAT: Duration = Duration::from_millis(50);
const ELECTION_MIN: Duration = Duration::from_millis(300);
const ELECTION_MAX: Duration = Duration::from_millis(600);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Deadline for anything the cluster must reach (an election, a restart, a
/// catch-up); generous for a loaded 2-core machine.
const SETTLE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(10);
/// The witness that initializes the cluster.
const BOOTSTRAP: NodeId = 1;
/// Leader losses under openraft's own elections, each of which the flagged
/// node loses (a fair race would let it win one of four with p = 15/16).
const STUCK_ROUNDS: usize = 4;
/// Leader losses under palisade's elections before the flagged node must
/// have won one. Each is close to a fair race between two survivors, so
/// the chance of losing them all is about 2^-20.
const MAX_FAIR_ROUNDS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_witness_that_saw_a_longer_log_still_wins_later_elections_under_pre_vote() {
    let trace = Trace::install();
    let mut c = Cluster::new(Elections::Openraft).await;

    step("three witnesses with openraft's own elections (enable_elect = true)");
    for id in c.ids() {
        c.start(id).await;
    }
    let (leader, _) = c.wait_settled("the first leader").await;
    let a = c
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("3 nodes");
    for id in c.ids() {
        assert!(!trace.flagged(id), "witness {id} flagged at bootstrap");
    }
    step(&format!(
        "witness {leader} leads; witness {a} is the one to strand"
    ));

    step(&format!(
        "stop witness {a}; the others commit an entry it does not have"
    ));
    c.stop(a).await;
    c.write(leader).await;

    step(&format!(
        "witness {a} comes back and stands for election before it hears from anyone: its log is shorter"
    ));
    let raft_a = c.boot(a).await;
    raft_a
        .trigger()
        .elect()
        .await
        .expect("the election trigger reaches a running core");
    wait_for(
        &format!("a peer's vote reply shows witness {a} a longer log"),
        || trace.flagged(a).then_some(()),
    )
    .await;
    c.serve(a).await;
    let (leader, term) = c.wait_settled("a leader after the shorter log lost").await;
    assert_ne!(leader, a, "a shorter log cannot win");
    assert!(
        trace.flagged(a),
        "witness {a} keeps openraft's backoff flag"
    );
    step(&format!(
        "witness {leader} leads at term {term}; witness {a} caught up and follows, flagged"
    ));

    step("openraft's elections: every leader loss is won by the other survivor");
    let ticks_before = trace.tick_elections(a);
    for round in 1..=STUCK_ROUNDS {
        for id in c.ids().into_iter().filter(|id| *id != a) {
            assert!(
                !trace.flagged(id),
                "witness {id} is flagged too: the race is not the one this test means"
            );
        }
        let (old, new, term) = c.depose_leader().await;
        step(&format!(
            "openraft round {round}: witness {old} stopped, witness {new} won term {term}"
        ));
        assert_ne!(
            new, a,
            "witness {a} won an election under openraft 0.9's own timer: the sticky backoff this test reproduces is gone (an openraft upgrade?)"
        );
    }
    assert_eq!(
        trace.tick_elections(a),
        ticks_before,
        "witness {a}'s own election timer never ran out: the backoff kept it from standing"
    );
    assert!(
        trace.flagged(a),
        "witness {a} is still flagged after {STUCK_ROUNDS} leader changes it took no part in: stuck"
    );

    step("switch every witness to palisade's elections: enable_elect = false, campaign with a pre-vote");
    c.switch_to_pre_vote();
    let mut won = None;
    for round in 1..=MAX_FAIR_ROUNDS {
        let (old, new, term) = c.depose_leader().await;
        step(&format!(
            "pre-vote round {round}: witness {old} stopped, witness {new} won term {term}"
        ));
        if new == a {
            won = Some(round);
            break;
        }
    }
    let round = won.unwrap_or_else(|| {
        panic!(
            "witness {a} won none of {MAX_FAIR_ROUNDS} elections under the pre-vote: openraft's smaller-log backoff still holds it back"
        )
    });
    assert!(
        trace.flagged(a),
        "witness {a} won with openraft's backoff flag still set: palisade's elections never read it"
    );
    step(&format!("witness {a} won in pre-vote round {round}"));
    c.shutdown().await;
}

/// Who starts elections.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Elections {
    /// openraft's own election timer (`enable_elect = true`), no pre-vote:
    /// openraft 0.9 as it comes.
    Openraft,
    /// palisade's: `enable_elect = false`, `election::campaign` with a
    /// pre-vote, as the daemon runs it.
    PreVote,
}

/// One witness: its data directory and address outlive its restarts.
struct Node {
    dir: TempDir,
    addr: SocketAddr,
    up: Option<Up>,
}

/// A running witness.
struct Up {
    raft: Raft,
    log: LogStore,
    contact: LeaderContact,
    contacts: PeerContacts,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

struct Cluster {
    elections: Elections,
    witnesses: Vec<(NodeId, Witness)>,
    nodes: BTreeMap<NodeId, Node>,
}

impl Cluster {
    async fn new(elections: Elections) -> Self {
        let mut witnesses = Vec::new();
        let mut nodes = BTreeMap::new();
        for id in 1..=3u64 {
            // An ephemeral port, kept for the node's restarts.
            let probe = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = probe.local_addr().expect("local addr");
            drop(probe);
            witnesses.push((
                id,
                Witness {
                    site: format!("site-{id}"),
                    raft_addr: addr.to_string(),
                    // Never served: the control API takes no part here.
                    control_addr: format!("127.0.0.2:{}", addr.port()),
                },
            ));
            let dir = tempfile::tempdir().expect("temp dir");
            nodes.insert(
                id,
                Node {
                    dir,
                    addr,
                    up: None,
                },
            );
        }
        Self {
            elections,
            witnesses,
            nodes,
        }
    }

    fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    fn up_ids(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.up.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    fn topology(&self, id: NodeId) -> Topology {
        Topology::new(id, &self.witnesses).expect("a valid three-witness topology")
    }

    fn raft(&self, id: NodeId) -> &Raft {
        &self.nodes[&id].up.as_ref().expect("witness is up").raft
    }

    fn raft_config(&self) -> Arc<openraft::Config> {
        let c = openraft::Config {
            cluster_name: "election-backoff".into(),
            heartbeat_interval: HEARTBEAT.as_millis() as u64,
            election_timeout_min: ELECTION_MIN.as_millis() as u64,
            election_timeout_max: ELECTION_MAX.as_millis() as u64,
            enable_elect: self.elections == Elections::Openraft,
            ..Default::default()
        };
        Arc::new(c.validate().expect("valid raft config"))
    }

    /// Opens the witness's store and starts its Raft core, without serving
    /// its peer RPCs yet: it hears from nobody until [`Cluster::serve`].
    async fn boot(&mut self, id: NodeId) -> Raft {
        let dir = self.nodes[&id].dir.path().to_path_buf();
        // The previous incarnation's last handles on the redb file may be
        // released a moment after its tasks end.
        let identity = store::StoreIdentity {
            cluster: "test".into(),
            node: id,
        };
        let (log, sm) = wait_for("the witness's store opens", || {
            store::open(&dir, &identity).ok()
        })
        .await;
        let contacts = PeerContacts::default();
        let network = PeerNetwork::new(
            contacts.clone(),
            Transport::plaintext(),
            CONNECT_TIMEOUT,
            ELECTION_MIN,
        );
        let raft = Raft::new(id, self.raft_config(), network, log.clone(), sm)
            .await
            .expect("raft starts");
        if id == BOOTSTRAP && !raft.is_initialized().await.expect("raft state readable") {
            // One witness bootstraps: were all three to (as the daemon
            // does), the losers of the first election could come out of
            // it flagged, and the race this test watches would be unfair
            // from the start.
            let members: BTreeMap<_, _> = self.witnesses.iter().cloned().collect();
            raft.initialize(members)
                .await
                .expect("a new cluster initializes");
        }
        self.nodes.get_mut(&id).expect("known node").up = Some(Up {
            raft: raft.clone(),
            log,
            contact: LeaderContact::default(),
            contacts,
            cancel: CancellationToken::new(),
            tasks: Vec::new(),
        });
        raft
    }

    /// Serves the booted witness's peer RPCs (with the pre-vote answer, as
    /// the daemon does) and, under [`Elections::PreVote`], runs its
    /// campaign.
    async fn serve(&mut self, id: NodeId) {
        let topology = self.topology(id);
        let elections = self.elections;
        let node = self.nodes.get_mut(&id).expect("known node");
        let addr = node.addr;
        let up = node.up.as_mut().expect("booted");
        let listener = wait_for_async("the witness's port is free again", || async {
            TcpListener::bind(addr).await.ok()
        })
        .await;
        let service = PeerService::new(
            up.raft.clone(),
            palisade_raft::members::Members::new(topology.clone()),
            up.contacts.clone(),
        )
        .with_pre_vote(up.contact.clone(), up.log.clone(), ELECTION_MAX);
        let server = tonic::transport::Server::builder()
            .add_service(RaftPeerServer::new(service))
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                up.cancel.clone().cancelled_owned(),
            );
        up.tasks.push(tokio::spawn(async move {
            if let Err(e) = server.await {
                eprintln!("peer server of witness {id} ended: {e}");
            }
        }));
        if elections == Elections::PreVote {
            up.tasks.push(spawn_campaign(up, topology));
        }
    }

    async fn start(&mut self, id: NodeId) {
        self.boot(id).await;
        self.serve(id).await;
    }

    /// Stops the witness as a crash would look to its peers: it stops
    /// answering, and its core stops.
    async fn stop(&mut self, id: NodeId) {
        let up = self
            .nodes
            .get_mut(&id)
            .expect("known node")
            .up
            .take()
            .expect("witness is up");
        up.cancel.cancel();
        up.raft.shutdown().await.expect("raft core shuts down");
        for task in up.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(SETTLE, task).await.is_err() {
                abort.abort();
            }
        }
    }

    async fn shutdown(&mut self) {
        for id in self.up_ids() {
            self.stop(id).await;
        }
    }

    /// From now on, elections are palisade's: openraft's timer off, a
    /// campaign with a pre-vote on every witness (and on every restart).
    fn switch_to_pre_vote(&mut self) {
        self.elections = Elections::PreVote;
        for id in self.up_ids() {
            let topology = self.topology(id);
            let up = self
                .nodes
                .get_mut(&id)
                .expect("known node")
                .up
                .as_mut()
                .expect("up");
            up.raft.runtime_config().elect(false);
            let campaign = spawn_campaign(up, topology);
            up.tasks.push(campaign);
        }
    }

    /// Commits one entry through `leader`.
    async fn write(&self, leader: NodeId) {
        self.raft(leader)
            .client_write(Command::Annotate {
                at_unix_ms: palisade_raft::unix_ms_now(),
                author: "election_backoff test".into(),
                text: "an entry the stopped witness misses".into(),
            })
            .await
            .expect("the leader commits with the one follower it has");
    }

    /// Waits until `among` (every running witness when `None`) agree on one
    /// leader and term, and that leader has applied its whole log; returns
    /// the leader and term.
    async fn wait_leader(&self, what: &str, among: &[NodeId], caught_up: bool) -> (NodeId, u64) {
        wait_for(what, || {
            let ms: Vec<_> = among
                .iter()
                .map(|id| self.raft(*id).metrics().borrow().clone())
                .collect();
            let leader = ms[0].current_leader?;
            let term = ms[0].current_term;
            let lm = ms.iter().find(|m| m.id == leader)?;
            let agree = ms
                .iter()
                .all(|m| m.current_leader == Some(leader) && m.current_term == term);
            let applied = lm.last_applied.map(|l| l.index) == lm.last_log_index;
            let same_log = ms.iter().all(|m| m.last_log_index == lm.last_log_index);
            (agree && lm.state == ServerState::Leader && applied && (!caught_up || same_log))
                .then_some((leader, term))
        })
        .await
    }

    /// All three up, one leader, every log caught up with it.
    async fn wait_settled(&self, what: &str) -> (NodeId, u64) {
        self.wait_leader(what, &self.up_ids(), true).await
    }

    /// Stops the leader, waits for the two survivors to elect one, starts
    /// the old leader again and waits until all three follow one leader.
    /// Returns (old leader, new leader, its term). Under the pre-vote, also
    /// checks that the comeback caused no election.
    async fn depose_leader(&mut self) -> (NodeId, NodeId, u64) {
        let (old, _) = self.wait_settled("a settled cluster").await;
        self.stop(old).await;
        let survivors = self.up_ids();
        let (new, term) = self
            .wait_leader("the survivors elect a leader", &survivors, false)
            .await;
        self.start(old).await;
        let (after, term_after) = self.wait_settled("the old leader rejoins").await;
        if self.elections == Elections::PreVote {
            assert_eq!(
                (after, term_after),
                (new, term),
                "witness {old}'s comeback caused an election"
            );
        }
        (old, after, term_after)
    }
}

fn spawn_campaign(up: &Up, topology: Topology) -> JoinHandle<()> {
    tokio::spawn(election::campaign(
        up.raft.clone(),
        up.log.clone(),
        palisade_raft::members::Members::new(topology),
        up.contact.clone(),
        ELECTION_MIN,
        ELECTION_MAX,
        Transport::plaintext(),
        CONNECT_TIMEOUT,
        up.cancel.clone(),
    ))
}

fn step(what: &str) {
    eprintln!("--- {what}");
}

async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + SETTLE;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {SETTLE:?}: {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn wait_for_async<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + SETTLE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {SETTLE:?}: {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Reads openraft's backoff flag from its own log events: a
/// `tracing::Subscriber` that attributes each openraft event to the node
/// whose `RaftCore` span (field `id`) it happens under (openraft's own
/// spans, down from `RaftCore`, inherit its node).
///
/// * "seen a greater log id" (`engine_impl.rs:390`) is logged where
///   `seen_greater_log` is set;
/// * "do trigger election" (`raft_core.rs:1505`) right after it is cleared
///   (`raft_core.rs:1503`), the only place it is cleared.
///
/// A node is flagged when its last event of the first kind came after its
/// last of the second.
#[derive(Clone)]
struct Trace(Arc<TraceInner>);

#[derive(Default)]
struct TraceInner {
    next_span: AtomicU64,
    /// `RaftCore` spans alive: node id, handles held.
    spans: Mutex<HashMap<u64, (NodeId, usize)>>,
    /// Per node, what its core logged.
    seen: Mutex<HashMap<NodeId, Seen>>,
    /// Orders the events of all nodes.
    seq: AtomicU64,
}

/// One node's backoff events, by sequence number.
#[derive(Default)]
struct Seen {
    /// The last "seen a greater log id".
    last_greater: Option<u64>,
    /// Every "do trigger election".
    tick_elections: Vec<u64>,
}

thread_local! {
    static ENTERED: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Trace {
    fn install() -> Self {
        let t = Trace(Arc::default());
        tracing::subscriber::set_global_default(t.clone()).expect("the only subscriber");
        t
    }

    /// openraft's `seen_greater_log` is set on `node`.
    fn flagged(&self, node: NodeId) -> bool {
        let seen = self.0.seen.lock().expect("trace lock");
        seen.get(&node)
            .is_some_and(|s| s.last_greater > s.tick_elections.last().copied())
    }

    /// How many elections `node`'s own openraft timer started.
    fn tick_elections(&self, node: NodeId) -> usize {
        let seen = self.0.seen.lock().expect("trace lock");
        seen.get(&node).map_or(0, |s| s.tick_elections.len())
    }

    fn wants(meta: &tracing::Metadata<'_>) -> bool {
        let max = if meta.is_span() {
            tracing::Level::DEBUG
        } else {
            tracing::Level::INFO
        };
        meta.target().starts_with("openraft") && *meta.level() <= max
    }
}

/// Collects one field as text.
struct Field<'a>(&'a str, Option<String>);

impl tracing::field::Visit for Field<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == self.0 {
            self.1 = Some(format!("{value:?}"));
        }
    }
}

impl tracing::Subscriber for Trace {
    fn register_callsite(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if Self::wants(meta) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        Self::wants(meta)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::DEBUG)
    }

    fn new_span(&self, attrs: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let id = self.0.next_span.fetch_add(1, Ordering::Relaxed) + 1;
        let mut spans = self.0.spans.lock().expect("trace lock");
        let node = if attrs.metadata().name() == "RaftCore" {
            let mut field = Field("id", None);
            attrs.record(&mut field);
            field.1.and_then(|s| s.parse::<NodeId>().ok())
        } else {
            // Inherited from the parent: explicit, or the span entered now.
            let parent = match attrs.parent() {
                Some(p) => Some(p.into_u64()),
                None if attrs.is_contextual() => ENTERED.with(|e| e.borrow().last().copied()),
                None => None,
            };
            parent.and_then(|p| spans.get(&p)).map(|(node, _)| *node)
        };
        if let Some(node) = node {
            spans.insert(id, (node, 1));
        }
        tracing::span::Id::from_u64(id)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let Some(span) = ENTERED.with(|e| e.borrow().last().copied()) else {
            return;
        };
        let Some((node, _)) = self.0.spans.lock().expect("trace lock").get(&span).copied() else {
            return;
        };
        let mut message = Field("message", None);
        event.record(&mut message);
        let Some(message) = message.1 else { return };
        let greater = message.starts_with("seen a greater log id");
        let tick = message == "do trigger election";
        if greater || tick {
            let seq = self.0.seq.fetch_add(1, Ordering::SeqCst);
            let mut seen = self.0.seen.lock().expect("trace lock");
            let entry = seen.entry(node).or_default();
            if greater {
                entry.last_greater = Some(seq);
            } else {
                entry.tick_elections.push(seq);
            }
        }
    }

    fn enter(&self, span: &tracing::span::Id) {
        ENTERED.with(|e| e.borrow_mut().push(span.into_u64()));
    }

    fn exit(&self, span: &tracing::span::Id) {
        ENTERED.with(|e| {
            let mut e = e.borrow_mut();
            if let Some(i) = e.iter().rposition(|s| *s == span.into_u64()) {
                e.remove(i);
            }
        });
    }

    fn clone_span(&self, span: &tracing::span::Id) -> tracing::span::Id {
        if let Some((_, refs)) = self
            .0
            .spans
            .lock()
            .expect("trace lock")
            .get_mut(&span.into_u64())
        {
            *refs += 1;
        }
        span.clone()
    }

    fn try_close(&self, span: tracing::span::Id) -> bool {
        let mut spans = self.0.spans.lock().expect("trace lock");
        if let Some((_, refs)) = spans.get_mut(&span.into_u64()) {
            *refs -= 1;
            if *refs == 0 {
                spans.remove(&span.into_u64());
                return true;
            }
        }
        false
    }
}
