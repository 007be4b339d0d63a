//! `wait-ready`: waits until the cluster can take requests, for scripts
//! that start witnesses and then use them (the README's by-hand block):
//! the answering witness knows a leader, and that leader has heard from a
//! quorum of the witnesses (itself included) within the election timeout.
//!
//! Until then every failure is retried: a witness that does not listen
//! yet, one that knows no leader, a leader without a quorum. At the
//! deadline the last of them is the result, with its own exit code (3, 4
//! or 8), so a script can tell "nothing listens" from "no quorum".

use std::time::Duration;

use palisade_api::v1::control_client::ControlClient;
use palisade_api::v1::{Role, StatusReply, StatusRequest};
use serde::Serialize;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::client::{Failure, Target};
use crate::durations::{human, human_ms};
use crate::json;
use crate::output::Out;

/// How often the witness is asked again: starting witnesses elect a leader
/// within a second or two.
const POLL: Duration = Duration::from_millis(200);

/// What `wait-ready --output json` prints once the cluster is ready.
#[derive(Debug, Serialize)]
pub struct ReadyJson {
    /// Always `true` (not ready is an exit code and a message on stderr).
    pub ready: bool,
    /// The witness that answered.
    pub node_id: u64,
    /// The leader it knows.
    pub leader_id: u64,
    /// The leader's site, when the answering witness lists it.
    pub leader_site: Option<String>,
    /// The leader's Raft term.
    pub term: u64,
    /// Witnesses (the leader included) that answered the leader within the
    /// election timeout; `null` from servers that do not report it.
    pub quorum_acked: Option<u32>,
    /// How many make a quorum.
    pub quorum_needed: u32,
    /// How many witnesses the cluster has.
    pub witnesses: usize,
    /// How long palisadectl waited.
    pub waited_ms: u64,
}

/// Waits up to `within` for the cluster to be ready, then prints one line
/// (or [`ReadyJson`]) and succeeds; otherwise fails with what it saw last.
pub async fn wait_ready(target: &Target, out: &Out, within: Duration) -> Result<(), Failure> {
    let started = Instant::now();
    let deadline = started + within;
    let mut client = None;
    loop {
        let last = match tokio::time::timeout_at(deadline, ask(target, &mut client)).await {
            Ok(Ok(reply)) => match readiness(&reply, target) {
                Ok(ready) => {
                    let waited_ms =
                        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    return print_ready(out, &reply, ready, waited_ms);
                }
                Err(not_yet) => not_yet,
            },
            // Waiting cannot fix a wrong endpoint (e.g. a Raft peer port).
            Ok(Err(f @ Failure::Usage(_))) => return Err(f),
            Ok(Err(f)) => {
                // A fresh connection next time: the witness may have been
                // restarted under us.
                client = None;
                f
            }
            Err(_) => Failure::Unreachable(format!(
                "status request to {} did not answer before the deadline",
                target.shown()
            )),
        };
        if Instant::now() + POLL >= deadline {
            return Err(not_ready(last, within));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One `Status`, connecting first when there is no channel yet.
async fn ask(
    target: &Target,
    client: &mut Option<ControlClient<Channel>>,
) -> Result<StatusReply, Failure> {
    let c = match client {
        Some(c) => c,
        None => client.insert(target.connect().await?),
    };
    Ok(c.status(StatusRequest {})
        .await
        .map_err(|s| target.rpc_failure("status", &s))?
        .into_inner())
}

/// What made the cluster ready: the quorum count, when the server
/// reports one.
struct Ready {
    leader: u64,
    acked: Option<u32>,
    needed: u32,
}

/// Ready when a leader is known and holds a quorum. Servers that do not
/// report `quorum` (older ones) count as ready when a majority of the
/// witnesses answered the answering one.
fn readiness(r: &StatusReply, target: &Target) -> Result<Ready, Failure> {
    let needed = if r.quorum_needed > 0 {
        r.quorum_needed
    } else {
        u32::try_from(r.nodes.len() / 2 + 1).unwrap_or(u32::MAX)
    };
    let Some(leader) = r.leader_id else {
        return Err(Failure::NoLeader(format!(
            "no leader known: node {} at {} sees none in term {}",
            r.node_id,
            target.shown(),
            r.term
        )));
    };
    match r.quorum.as_str() {
        "ok" => Ok(Ready {
            leader,
            acked: Some(r.quorum_acked),
            needed,
        }),
        "" => {
            let answered = r
                .nodes
                .iter()
                .filter(|n| n.error.is_empty() && Role::try_from(n.role) != Ok(Role::Unreachable))
                .count();
            let answered = u32::try_from(answered).unwrap_or(u32::MAX);
            if answered >= needed {
                Ok(Ready {
                    leader,
                    acked: None,
                    needed,
                })
            } else {
                Err(Failure::NoQuorum(format!(
                    "leader {leader} is known, but only {answered} of {} witnesses answer node {} \
                     at {} ({needed} needed)",
                    r.nodes.len(),
                    r.node_id,
                    target.shown()
                )))
            }
        }
        "lost" => Err(Failure::NoQuorum(format!(
            "no quorum: leader {leader} has heard from {} of {} witnesses (itself included; \
             {needed} needed) within the {} ms election timeout, as node {} at {} sees it",
            r.quorum_acked,
            r.nodes.len(),
            r.quorum_timeout_ms,
            r.node_id,
            target.shown()
        ))),
        other => Err(Failure::NoQuorum(format!(
            "leader {leader} is known, but node {} at {} cannot tell whether it holds a quorum \
             (quorum: {other})",
            r.node_id,
            target.shown()
        ))),
    }
}

/// The last failure, as the result of the whole wait: the same class (so
/// the same exit code), saying how long palisadectl waited.
fn not_ready(last: Failure, within: Duration) -> Failure {
    let say = |m: &str| format!("not ready after {}: {m}", human(within));
    match last {
        Failure::Unreachable(m) => Failure::Unreachable(say(&m)),
        Failure::NoLeader(m) => Failure::NoLeader(say(&m)),
        Failure::NoQuorum(m) => Failure::NoQuorum(say(&m)),
        Failure::Rejected(m) => Failure::Rejected(say(&m)),
        other => other,
    }
}

fn print_ready(out: &Out, r: &StatusReply, ready: Ready, waited_ms: u64) -> Result<(), Failure> {
    let leader_site = r
        .nodes
        .iter()
        .find(|n| n.id == ready.leader)
        .map(|n| n.site.clone())
        .filter(|s| !s.is_empty());
    if out.json() {
        return out.emit(&json::to_json(&ReadyJson {
            ready: true,
            node_id: r.node_id,
            leader_id: ready.leader,
            leader_site,
            term: r.term,
            quorum_acked: ready.acked,
            quorum_needed: ready.needed,
            witnesses: r.nodes.len(),
            waited_ms,
        }));
    }
    let site = leader_site
        .map(|s| format!(" (site {s})"))
        .unwrap_or_default();
    let quorum = match ready.acked {
        Some(acked) => format!(
            "{acked} of {} witnesses answer it ({} needed)",
            r.nodes.len(),
            ready.needed
        ),
        None => format!(
            "a quorum of the {} witnesses answers ({} needed)",
            r.nodes.len(),
            ready.needed
        ),
    };
    out.emit(&format!(
        "ready: leader {}{site}, term {}; {quorum}; waited {}\n",
        ready.leader,
        r.term,
        human_ms(i64::try_from(waited_ms).unwrap_or(i64::MAX))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_api::v1::NodeStatus;

    fn target() -> Target {
        Target::new("http://127.0.0.1:7401", Duration::from_secs(1)).expect("valid endpoint")
    }

    fn node(id: u64, role: Role, error: &str) -> NodeStatus {
        NodeStatus {
            id,
            site: format!("s{id}"),
            role: role as i32,
            error: error.to_owned(),
            ..Default::default()
        }
    }

    fn reply(leader: Option<u64>, quorum: &str, acked: u32) -> StatusReply {
        StatusReply {
            node_id: 2,
            leader_id: leader,
            term: 4,
            nodes: vec![
                node(1, Role::Leader, ""),
                node(2, Role::Follower, ""),
                node(3, Role::Unreachable, "connection refused"),
            ],
            quorum: quorum.to_owned(),
            quorum_acked: acked,
            quorum_needed: 2,
            quorum_timeout_ms: 400,
            ..Default::default()
        }
    }

    #[test]
    fn ready_needs_a_leader_that_holds_a_quorum() {
        let t = target();
        let ok = readiness(&reply(Some(1), "ok", 2), &t).map_err(|f| f.exit_code());
        assert!(matches!(
            ok,
            Ok(Ready {
                leader: 1,
                acked: Some(2),
                needed: 2
            })
        ));

        let none = readiness(&reply(None, "unknown", 0), &t)
            .err()
            .expect("no leader");
        assert_eq!(none.exit_code(), 4, "{}", none.message());

        let lost = readiness(&reply(Some(1), "lost", 1), &t)
            .err()
            .expect("lost");
        assert_eq!(lost.exit_code(), 8);
        assert!(
            lost.message().contains("1 of 3 witnesses"),
            "{}",
            lost.message()
        );

        let unknown = readiness(&reply(Some(1), "unknown", 0), &t)
            .err()
            .expect("unknown");
        assert_eq!(unknown.exit_code(), 8);
    }

    #[test]
    fn servers_without_a_quorum_field_count_the_witnesses_that_answer() {
        let t = target();
        assert!(
            readiness(&reply(Some(1), "", 0), &t).is_ok(),
            "2 of 3 answer"
        );
        let mut r = reply(Some(1), "", 0);
        r.nodes[1].error = "timed out".to_owned();
        let f = readiness(&r, &t).err().expect("1 of 3");
        assert_eq!(f.exit_code(), 8);
    }

    #[test]
    fn giving_up_keeps_the_class_of_what_was_seen_last() {
        let within = Duration::from_secs(30);
        for (last, code) in [
            (Failure::Unreachable("refused".into()), 3),
            (Failure::NoLeader("none".into()), 4),
            (Failure::NoQuorum("lost".into()), 8),
        ] {
            let f = not_ready(last, within);
            assert_eq!(f.exit_code(), code);
            assert!(
                f.message().starts_with("not ready after 30s: "),
                "{}",
                f.message()
            );
        }
    }
}
