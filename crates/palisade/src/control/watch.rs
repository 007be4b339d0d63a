//! `Watch`: the events of the applied state, streamed.

use palisade_api::v1 as pb;
use palisade_raft::store::StateView;
use palisade_raft::Raft;
use tokio::sync::mpsc::Sender;
use tokio::sync::watch::Receiver;
use tonic::Status;

use super::views::snapshot_event;
use super::WATCH_POLL;

type Metrics = Receiver<openraft::RaftMetrics<palisade_core::NodeId, palisade_core::Witness>>;

/// Whether this witness is stopping: its Raft node has shut down (the
/// daemon shuts Raft down first thing on SIGTERM) or is gone.
fn stopping(metrics: &Metrics) -> bool {
    metrics.has_changed().is_err() || metrics.borrow().state == openraft::ServerState::Shutdown
}

/// The status a stream ends with when its witness stops: UNAVAILABLE,
/// naming the witness, which `palisadectl watch` prints (exit 3).
pub(super) fn shutting_down(id: palisade_core::NodeId) -> Status {
    Status::unavailable(format!("witness {id} is shutting down"))
}

/// Returns once this witness stops (see [`stopping`]); cancel-safe. Other
/// metrics changes (every heartbeat's) wake only this, not the stream.
async fn until_stopping(metrics: &mut Metrics) {
    while !stopping(metrics) {
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// How a send went.
enum Sent {
    Delivered,
    /// The client went away, or this witness stops: the stream is over.
    Over,
}

/// Sends `event`, unless the witness stops first (a client that does not
/// read must not hold its stream, or the shutdown, open).
async fn deliver(
    tx: &Sender<Result<pb::Event, Status>>,
    metrics: &mut Metrics,
    event: pb::Event,
) -> Sent {
    tokio::select! {
        biased;
        _ = until_stopping(metrics) => Sent::Over,
        sent = tx.send(Ok(event)) => if sent.is_ok() { Sent::Delivered } else { Sent::Over },
    }
}

/// Streams the events of the applied state until the client goes away or
/// this witness stops; then the stream ends with [`shutting_down`] (when
/// the client still reads: one that does not is cut when the server's
/// bounded drain ends, see `daemon::run`). Sampling the applied state (not
/// the log) is enough: `events::between` reports every step once whatever
/// the sampling.
pub(super) async fn stream_events(
    view: StateView,
    raft: Raft,
    tx: tokio::sync::mpsc::Sender<Result<pb::Event, Status>>,
) {
    let mut metrics = raft.metrics();
    let id = metrics.borrow().id;
    let end = |tx: &Sender<Result<pb::Event, Status>>| {
        // Never waits: a full queue means the client stopped reading.
        let _ = tx.try_send(Err(shutting_down(id)));
    };
    let mut prev = view.cluster_state();
    let mut leader = metrics.borrow().current_leader;
    if let Sent::Over = deliver(&tx, &mut metrics, snapshot_event(&prev, leader)).await {
        return end(&tx);
    }
    let mut tick = tokio::time::interval(WATCH_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = until_stopping(&mut metrics) => return end(&tx),
            _ = tx.closed() => return,
            _ = tick.tick() => {}
        }
        let now_leader = metrics.borrow().current_leader;
        if now_leader != leader {
            leader = now_leader;
            let text = match leader {
                Some(l) => format!("witness {l} leads"),
                None => "no leader known (election in progress)".into(),
            };
            let e = pb::Event {
                at_ms: palisade_raft::unix_ms_now(),
                kind: "leader".into(),
                epoch: prev.epoch,
                text,
            };
            if let Sent::Over = deliver(&tx, &mut metrics, e).await {
                return end(&tx);
            }
        }
        let cur = view.cluster_state();
        if cur == prev {
            continue;
        }
        for e in palisade_core::events::between(&prev, &cur) {
            let e = pb::Event {
                at_ms: if e.at_ms == 0 {
                    palisade_raft::unix_ms_now()
                } else {
                    e.at_ms
                },
                kind: e.kind.into(),
                epoch: e.epoch,
                text: e.text,
            };
            if let Sent::Over = deliver(&tx, &mut metrics, e).await {
                return end(&tx);
            }
        }
        prev = cur;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shutdown_status_names_the_witness() {
        let s = shutting_down(2);
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert_eq!(s.message(), "witness 2 is shutting down");
    }
}
