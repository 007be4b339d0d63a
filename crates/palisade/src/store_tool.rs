//! `palisade store backup | restore | rebuild`: a stopped witness's Raft
//! store, offline (docs/store.md, "Backups, restores and rebuilds").
//!
//! Restore and rebuild ask the other witnesses (on their peer port, as this
//! witness, with its own certificate) whom they follow, let
//! [`palisade_core::store_restore::vote_floor`] decide whether that makes
//! putting a store back safe, and only then touch the data directory
//! ([`palisade_raft::store::replace`]). Every refusal changes nothing.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Subcommand;
use openraft::{LogId, Vote};
use palisade::config::Config;
use palisade_api::v1::raft_peer_client::RaftPeerClient;
use palisade_api::v1::{NodeStatusRequest, Role};
use palisade_core::store_restore::{self, PeerAnswer, PeerView, Restoring, VoteFloor};
use palisade_core::NodeId;
use palisade_raft::store::{self, Current, Replaced, StoreIdentity, StoreSummary};
use serde_json::{json, Value};

use crate::Output;

/// How long each other witness has to answer `NodeStatus`.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a refusal that may resolve itself (an election, a witness
/// catching up) is asked again before it is final, and how often.
const SETTLE_FOR: Duration = Duration::from_secs(10);
const ASK_AGAIN: Duration = Duration::from_millis(500);

#[derive(Subcommand)]
pub enum StoreCmd {
    /// Backs up a stopped witness's store to a file.
    ///
    /// Copies the store (`<storage.data_dir>/raft.redb`) of the STOPPED
    /// witness to PATH: a consistent copy, written beside PATH, fsynced and renamed
    /// into place (never half written). Prints whose it is (cluster, node
    /// id), its vote and its log position. Refused while the witness (or
    /// `palisade inspect`) holds the store, naming the process.
    Backup {
        /// The witness's config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Where to write the backup (a file).
        #[arg(long)]
        to: PathBuf,
        /// Replace an existing file at PATH.
        #[arg(long)]
        force: bool,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Puts this witness's own backup back, safely.
    ///
    /// With the witness STOPPED, checks that the backup is this witness's (cluster and node
    /// id), asks the other witnesses whom they follow, and refuses unless
    /// they follow one leader at one term (both others; or, of three
    /// witnesses, the leader itself, acknowledged by a quorum since this
    /// witness last wrote its store). Then moves the current store to
    /// `<data_dir>.replaced-<unix time>/`, writes the backup in its place
    /// and raises its vote to that leader and term, so that the witness
    /// can never vote again as it may have after the backup was taken.
    /// Start the witness afterwards: the leader sends it what it missed.
    Restore {
        /// The witness's config file.
        #[arg(long, short)]
        config: PathBuf,
        /// The backup (`palisade store backup --to`).
        #[arg(long)]
        from: PathBuf,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Rebuilds this witness empty from its peers, safely.
    ///
    /// Like `restore`, with an empty store instead of a backup. For a store that is lost or
    /// refused as damaged. The others must follow one leader (as for
    /// `restore`); the current store moves to
    /// `<data_dir>.replaced-<unix time>/` and a new one is created with
    /// this witness's identity and that leader's vote. Start the witness
    /// afterwards: the leader sends it the log, or a snapshot.
    Rebuild {
        /// The witness's config file.
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
}

/// Runs one `palisade store` command.
pub async fn run(cmd: StoreCmd) -> anyhow::Result<()> {
    match cmd {
        StoreCmd::Backup {
            config,
            to,
            force,
            output,
        } => {
            let c = Config::load(&config)?;
            let s = store::backup(&c.data_dir, &to, force)
                .await
                .with_context(|| {
                    format!(
                        "backing up witness {} (nothing was written to {})",
                        c.topology.own_id,
                        to.display()
                    )
                })?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&summary_json(&s))?),
                Output::Table => {
                    println!("backup:        {}", s.file.display());
                    print_summary(&s);
                }
            }
            Ok(())
        }
        StoreCmd::Restore {
            config,
            from,
            output,
        } => put_back(&config, Some(&from), output).await,
        StoreCmd::Rebuild { config, output } => put_back(&config, None, output).await,
    }
}

/// `restore` (with a backup) or `rebuild` (without).
async fn put_back(config: &Path, from: Option<&Path>, output: Output) -> anyhow::Result<()> {
    let c = Config::load(config)?;
    let own = c.topology.own_id;
    let verb = if from.is_some() { "restore" } else { "rebuild" };
    let refuse = || format!("refusing to {verb} witness {own} (nothing was changed)");
    let identity = StoreIdentity {
        cluster: c.cluster_name.clone(),
        node: own,
    };
    let backup = match from {
        Some(path) => {
            if same_file(path, &c.data_dir.join(store::STORE_FILE)) {
                anyhow::bail!(
                    "{}: {} is this witness's current store, not a backup",
                    refuse(),
                    path.display()
                );
            }
            Some(
                store::read_backup(path, &identity)
                    .await
                    .with_context(refuse)?,
            )
        }
        None => None,
    };
    let held = store::hold(&c.data_dir).with_context(refuse)?;
    if let Current::Readable {
        identity: Some(found),
        ..
    } = &held.current
    {
        if found != &identity {
            anyhow::bail!(
                "{}: the store in {} belongs to witness {} of cluster {:?}, not to this witness ({} of {:?}): check storage.data_dir in {}",
                refuse(),
                c.data_dir.display(),
                found.node,
                found.cluster,
                own,
                identity.cluster,
                config.display()
            );
        }
    }

    // An election or a replication under way among witnesses that answer
    // ends within moments: ask again for a while before refusing.
    let deadline = tokio::time::Instant::now() + SETTLE_FOR;
    let (answers, floor) = loop {
        let asked_at = SystemTime::now();
        let answers = ask_others(&c).await.with_context(refuse)?;
        let restoring = Restoring {
            own,
            cluster_size: c.topology.witnesses.len(),
            last_write_age_ms: held
                .last_write
                .and_then(|t| asked_at.duration_since(t).ok())
                .map(ms),
            // The leader's metrics, where its quorum acknowledgement is
            // read, are refreshed at least every 1.5 heartbeats.
            ack_staleness_ms: ms(c.raft.heartbeat * 3) + 1000,
        };
        match store_restore::vote_floor(&restoring, &answers) {
            Ok(floor) => break (answers, floor),
            Err(r) if r.transient && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(ASK_AGAIN).await;
            }
            Err(r) => anyhow::bail!("{}: {r}", refuse()),
        }
    };

    let current = held.current.clone();
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let done = store::replace(held, &identity, from, floor, now_unix)
        .await
        .with_context(|| format!("{verb} of witness {own}"))?;

    match output {
        Output::Json => {
            let v = json!({
                "action": verb,
                "backup": backup.as_ref().map(summary_json),
                "answers": answers.iter().map(answer_json).collect::<Vec<_>>(),
                "floor": { "term": floor.term, "leader": floor.leader },
                "replaced": current_json(&current),
                "replaced_dir": done.moved_to.as_ref().map(|d| d.display().to_string()),
                "vote_before": done.vote_before.as_ref().map(vote_json),
                "vote_after": vote_json(&done.vote_after),
                "store": summary_json(&done.store),
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Output::Table => print_put_back(backup.as_ref(), &answers, floor, &current, &done),
    }
    Ok(())
}

/// Whether `a` and `b` are the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Asks every other witness for its status, all at once, as this witness
/// (its own certificate, from the config).
async fn ask_others(c: &Config) -> anyhow::Result<Vec<PeerAnswer>> {
    let tls = palisade::tls::setup(c, &palisade_raft::members::Members::new(c.topology.clone()))?;
    let mut asking = tokio::task::JoinSet::new();
    for (id, w) in &c.topology.witnesses {
        if *id == c.topology.own_id {
            continue;
        }
        let (id, addr) = (*id, w.raft_addr.clone());
        let channel = tls.transport.channel(id, &addr, c.raft.connect_timeout);
        asking.spawn(async move {
            PeerAnswer {
                node: id,
                reply: ask(id, channel, &addr).await,
            }
        });
    }
    let mut answers = asking.join_all().await;
    answers.sort_by_key(|a| a.node);
    Ok(answers)
}

async fn ask(
    id: NodeId,
    channel: Result<tonic::transport::Channel, tonic::transport::Error>,
    addr: &str,
) -> Result<PeerView, String> {
    let channel = channel.map_err(|e| format!("bad address {addr}: {e}"))?;
    let mut client = RaftPeerClient::new(channel);
    let reply = tokio::time::timeout(ASK_TIMEOUT, client.node_status(NodeStatusRequest {}))
        .await
        .map_err(|_| format!("{addr}: no answer within {} s", ASK_TIMEOUT.as_secs()))?
        .map_err(|s| format!("{addr}: {}", status_text(&s)))?
        .into_inner();
    if reply.id != id {
        return Err(format!("{addr}: answered as witness {}", reply.id));
    }
    Ok(PeerView {
        term: reply.term,
        leader: reply.leader_id,
        leading: reply.role == Role::Leader as i32,
        last_applied_index: reply.last_applied_index,
        quorum_ack_age_ms: reply.millis_since_quorum_ack,
        matched: reply
            .replication
            .iter()
            .map(|p| (p.id, p.matched_index))
            .collect(),
    })
}

/// A gRPC status with its causes (a refused connection is "transport
/// error" on its own).
fn status_text(s: &tonic::Status) -> String {
    let mut text = s.message().to_string();
    let mut cause = std::error::Error::source(s);
    while let Some(c) = cause {
        let c_text = c.to_string();
        // tonic repeats the innermost cause in the outer messages.
        if !text.contains(&c_text) {
            text.push_str(": ");
            text.push_str(&c_text);
        }
        cause = c.source();
    }
    text
}

fn log_index(l: &Option<LogId<NodeId>>) -> Option<u64> {
    l.map(|l| l.index)
}

fn vote_json(v: &Vote<NodeId>) -> Value {
    json!({
        "term": v.leader_id.term,
        "voted_for": v.leader_id.node_id,
        "committed": v.committed,
    })
}

fn summary_json(s: &StoreSummary) -> Value {
    json!({
        "file": s.file.display().to_string(),
        "bytes": s.bytes,
        "cluster": s.identity.as_ref().map(|i| i.cluster.clone()),
        "node": s.identity.as_ref().map(|i| i.node),
        "vote_term": s.vote.map(|v| v.leader_id.term).unwrap_or(0),
        "voted_for": s.vote.map(|v| v.leader_id.node_id),
        "vote_committed": s.vote.is_some_and(|v| v.committed),
        "last_log_index": log_index(&s.last_log),
        "last_purged_index": log_index(&s.last_purged),
        "committed_index": log_index(&s.committed),
        "last_applied_index": log_index(&s.last_applied),
    })
}

fn answer_json(a: &PeerAnswer) -> Value {
    match &a.reply {
        Ok(v) => json!({
            "node": a.node,
            "term": v.term,
            "leader": v.leader,
            "leading": v.leading,
            "last_applied_index": v.last_applied_index,
            "quorum_ack_age_ms": v.quorum_ack_age_ms,
        }),
        Err(e) => json!({ "node": a.node, "error": e }),
    }
}

fn current_json(c: &Current) -> Value {
    match c {
        Current::Missing => json!({ "store": "missing" }),
        Current::Readable { vote, .. } => {
            json!({ "store": "readable", "vote": vote.as_ref().map(vote_json) })
        }
        Current::Unreadable(why) => json!({ "store": "unreadable", "reason": why }),
    }
}

fn vote_text(v: &Option<Vote<NodeId>>) -> String {
    match v {
        None => "none".into(),
        Some(v) => store::vote_record(v).to_string(),
    }
}

fn index_text(l: &Option<LogId<NodeId>>) -> String {
    match l {
        None => "none".into(),
        Some(l) => format!("index {}", l.index),
    }
}

fn print_summary(s: &StoreSummary) {
    match &s.identity {
        Some(i) => println!("witness:       {} of cluster {:?}", i.node, i.cluster),
        None => println!("witness:       (no identity recorded)"),
    }
    println!("size:          {} bytes", s.bytes);
    println!("vote:          {}", vote_text(&s.vote));
    println!(
        "last log:      {} (purged up to {})",
        index_text(&s.last_log),
        index_text(&s.last_purged)
    );
    println!("committed:     {}", index_text(&s.committed));
    println!("last applied:  {}", index_text(&s.last_applied));
}

fn print_put_back(
    backup: Option<&StoreSummary>,
    answers: &[PeerAnswer],
    floor: VoteFloor,
    current: &Current,
    done: &Replaced,
) {
    if let Some(b) = backup {
        println!(
            "backup:        {} (vote {}; last log {}; last applied {})",
            b.file.display(),
            vote_text(&b.vote),
            index_text(&b.last_log),
            index_text(&b.last_applied)
        );
    }
    println!("the others:    {}", store_restore::describe(answers));
    println!(
        "vote floor:    term {} for witness {} (the leader they follow)",
        floor.term, floor.leader
    );
    match (&done.moved_to, current) {
        (None, _) => println!("replaced:      nothing (there was no store)"),
        (Some(dir), Current::Unreadable(why)) => println!(
            "replaced:      the store (unreadable: {why}) moved to {}",
            dir.join(store::STORE_FILE).display()
        ),
        (Some(dir), _) => println!(
            "replaced:      the store moved to {}",
            dir.join(store::STORE_FILE).display()
        ),
    }
    let what = if backup.is_some() {
        "the backup"
    } else {
        "an empty store"
    };
    let done_verb = if backup.is_some() {
        "restored:     "
    } else {
        "rebuilt:      "
    };
    println!("{done_verb} {what} at {}", done.store.file.display());
    if Some(done.vote_after) == done.vote_before {
        println!(
            "vote:          {} (kept: already at or above the floor)",
            vote_text(&Some(done.vote_after))
        );
    } else {
        println!(
            "vote:          {} (was {}): it can grant no vote it may have granted before",
            vote_text(&Some(done.vote_after)),
            vote_text(&done.vote_before)
        );
    }
    let missing = match done.store.last_log {
        Some(l) => format!("the entries after index {}", l.index),
        None => "its log (or a snapshot)".into(),
    };
    println!(
        "next:          start the witness: it follows witness {}, which sends it {missing}",
        floor.leader
    );
}
